"""idstore: Redshift id sets into DynamoDB, and S3 event archives filtered by them.

This is the package that ships to the cluster. The tooling that runs on a laptop or in CI
(the local stack, the capacity emulator, the demo, package/render/deploy/submit/validate and
the `idstore` command) is the package `idstore-tools` in tools/.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

# the one place the version is written: the package's __version__, which the tooling reads too
VERSION = re.search(r'^__version__ = "([^"]+)"$', (Path(__file__).parent / "lib" / "idstore" / "__init__.py")
                    .read_text(), re.M).group(1)

setup(
    name="idstore",
    version=VERSION,
    description="PySpark jobs for EMR: sync a Redshift id set into DynamoDB, filter S3 events by it",
    license="Apache-2.0",
    package_dir={"": "lib"},
    packages=find_packages("lib"),
    # the defaults travel with the package to the cluster (a link to conf/base.toml here), and
    # idstore's jar (built from jvm/src by make setup: scripts/build-jvm.sh)
    package_data={"idstore": ["base.toml", "jars/*.jar"]},
    python_requires=">=3.9",
    install_requires=[
        # the first release with every parameter idstore passes: put_object(IfMatch=...) for the run
        # lock; boto3 1.35.69 requires botocore 1.35.69, where S3's model gained it
        # (tests/test_dependency_floor.py runs the lock on exactly these)
        "boto3>=1.35.69",
        "pyarrow>=14",
        # pyspark 3.5's mapInArrow checks for pandas on the driver, though Arrow alone is used
        "pandas>=1.0.5,<3",
        'tomli>=2.0; python_version < "3.11"',
    ],
    extras_require={
        # pyspark comes with EMR; locally it is pinned to EMR 7's line.
        "spark": ["pyspark==3.5.*"],
        "test": [
            "pyspark==3.5.*",
            "pytest>=8",
            "pytest-xdist>=3.5",  # make test runs the suite on every core (the spark-submit runs are CPU-bound)
            "chispa>=0.10",
            "jsonata-python>=0.5",  # evaluates the rendered state machine's JSONata
        ],
        "dev": [
            "ruff>=0.5",
            "vermin>=1.6",
            "matplotlib>=3.8",
            "cfn-lint>=1.0",
            "uv>=0.13,<0.14",  # make package: resolves the wheelhouse for each cluster Python and CPU
        ],
    },
)
