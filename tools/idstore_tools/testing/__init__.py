"""Test and benchmark helpers (a local DynamoDB capacity emulator)."""
