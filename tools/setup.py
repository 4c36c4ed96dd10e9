"""idstore-tools: what runs on a developer's machine or in CI, never on the cluster.

The local stack (PostgreSQL + moto), the DynamoDB capacity emulator, the demo, the deploy
tooling (package, render, deploy, submit, validate) and the `idstore` command.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

# idstore's version, read where it is written once (lib/idstore/__init__.py): the tools and the
# jobs they deploy are one release
VERSION = re.search(r'^__version__ = "([^"]+)"$', (Path(__file__).resolve().parents[1] / "lib" / "idstore" /
                                                   "__init__.py").read_text(), re.M).group(1)

setup(
    name="idstore-tools",
    version=VERSION,
    description="Local stack, emulator, demo and EMR deploy tooling for idstore",
    packages=find_packages(include=["idstore_tools", "idstore_tools.*"]),
    # the defaults of the tooling's config sections ([deploy], [emr], [schedule], [serverless])
    package_data={"idstore_tools.deploy": ["defaults.toml"]},
    python_requires=">=3.9",
    install_requires=[
        f"idstore=={VERSION}",
        "moto[server]>=5.0",
        "pg8000>=1.30",
        # package: resolves the cluster wheelhouse (uv pip compile --python-version --python-platform)
        "uv>=0.13,<0.14",
    ],
    entry_points={"console_scripts": ["idstore=idstore_tools.cli:main"]},
)
