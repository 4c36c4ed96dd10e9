"""Fixtures for the deploy tests: production-like configs, a moto server over HTTP, and dist/
built once per session (quick, and with a real wheelhouse)."""
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pytest

from idstore_tools.deploy.config import ToolingConfig, load_tooling_config

ACCOUNT = "123456789012"
KMS_KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:idstore-alarms"

# Everything a production deployment names, with EMR Serverless and CloudWatch on.
PROD_TOML = f"""
[source]
url = "jdbc:redshift://analytics.abc123.us-east-1.redshift.amazonaws.com:5439/dev"
query = "select product_id from program_products where program = 'FFA'"
secret_id = "idstore/redshift-etl"

[dynamodb]
table = "IdentifierStore"

[snapshot]
path = "s3://example-idstore/snapshots"

[events]
path = "s3://example-failure-events/events"

[output]
path = "s3://example-idstore/filtered"
quarantine_path = "s3://example-idstore/quarantine"

[report]
path = "s3://example-idstore/reports"

[deploy]
bucket = "example-idstore-artifacts"
account_id = "{ACCOUNT}"
kms_key_arn = "{KMS_KEY}"

[emr]
log_uri = "s3://example-idstore-logs/emr"
subnet_id = "subnet-0123456789abcdef0"
python = "python3.11"

[schedule]
enabled = true
filter_days = 2

[cloudwatch]
enabled = true
alarm_topic_arn = "{TOPIC}"

[serverless]
application_id = "00fabcdexample01"
"""


def _write_conf(directory: Path, text: str = PROD_TOML, name: str = "prod.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def _suite_session_first(spark):
    """render, deploy, submit and validate parse events.schema on a local JVM (preflight): the
    suite's session, which names the JDBC drivers, must be the first this process starts."""


@pytest.fixture
def prod_conf(tmp_path) -> Path:
    """The production config as a file, as `--conf` takes it."""
    return _write_conf(tmp_path)


@pytest.fixture
def make_config(tmp_path):
    """make_config(overrides=(), text=PROD_TOML) -> ToolingConfig, through load_tooling_config like
    the CLI; its .run is the Config the jobs load from the same file."""

    def make(overrides: Sequence[str] = (), text: str = PROD_TOML) -> ToolingConfig:
        return load_tooling_config(str(_write_conf(tmp_path, text, "config-under-test.toml")), overrides)

    return make


@pytest.fixture
def config(make_config) -> ToolingConfig:
    return make_config()


@pytest.fixture
def aws_env(monkeypatch):
    """moto accepts any credentials; none from the caller's environment are used."""
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture
def moto_overrides(tmp_path, moto_endpoint, aws_env):
    """--set overrides pointing the config at the moto server, with an artifacts bucket per test."""
    bucket = "artifacts-" + "".join(c for c in tmp_path.name.lower() if c.isalnum())[-40:]
    return [f"aws.endpoint_url={moto_endpoint}", f"dynamodb.endpoint_url={moto_endpoint}", f"deploy.bucket={bucket}"]


@pytest.fixture
def moto_config(make_config, moto_overrides) -> ToolingConfig:
    return make_config(moto_overrides)


@pytest.fixture
def aws(moto_endpoint):
    """aws(service) -> a boto3 client of the moto server."""
    import boto3

    def make(service: str):
        return boto3.client(service, region_name="us-east-1", endpoint_url=moto_endpoint,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    return make


# -- dist/, built once per session --------------------------------------------------------------
def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def quick_build(tmp_path_factory) -> subprocess.CompletedProcess:
    """`python -m idstore_tools.deploy.package --no-wheelhouse`, as `make package` runs it; its
    output goes to quick_build.out (the dist/ folder)."""
    out = tmp_path_factory.mktemp("quick") / "dist"
    result = subprocess.run([sys.executable, "-m", "idstore_tools.deploy.package", "--out", str(out), "--no-wheelhouse"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    result.out = out
    return result


@pytest.fixture(scope="session")
def quick_dist(quick_build) -> Path:
    """dist/ without the wheelhouse (quick: no download)."""
    return quick_build.out


@pytest.fixture(scope="session")
def online() -> None:
    """The package index is reachable (uv resolves against it, pip downloads from it)."""
    if not pypi_reachable():
        pytest.skip("no package index reachable: the wheelhouse is downloaded")


@pytest.fixture(scope="session")
def cluster_dist(tmp_path_factory, online) -> Path:
    """dist/ with a real wheelhouse, resolved by uv and downloaded from the index, for CPython 3.9
    and 3.11 on this machine's CPU (the cluster's two CPUs take twice as long), and the EMR
    Serverless archive for 3.9. Built once for every test that installs from it."""
    from idstore_tools.deploy import package

    out = tmp_path_factory.mktemp("cluster") / "dist"
    package.build(out, targets=[package.Target(python, platform.machine()) for python in ("3.9", "3.11")])
    return out
