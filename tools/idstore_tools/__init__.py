"""Tooling around idstore that runs on a laptop or in CI: local stack, emulator, demo, deploy."""
