"""Where each artifact lives, in dist/ and under the versioned S3 prefix: one layout for both.

package writes it, deploy uploads it as is, render and the bootstrap action read it.
"""
from typing import List, Optional, Tuple

from idstore import __version__
from idstore.config import ConfigError
from idstore_tools.deploy.config import ToolingConfig

MANIFEST = "manifest.json"
WHEELHOUSE = "wheelhouse"
BOOTSTRAP = "bootstrap/install-idstore.sh"
JOBS = {"sync": "jobs/sync_product_ids.py", "filter": "jobs/filter_failure_events.py"}
# the order a run takes: sync writes the id set that filter reads
JOB_ORDER = tuple(JOBS)
CONF_DIR = "conf"
SERVERLESS_DIR = "serverless"
# EMR 7 and EMR Serverless 7 run Amazon Linux 2023 (glibc 2.34); EMR Serverless runs python3 (3.9).
SERVERLESS_PYTHON = "3.9"
ARCHITECTURES = {"X86_64": "x86_64", "ARM64": "aarch64"}


def serverless_archive(python: str, arch: str) -> str:
    """The dependencies of idstore for EMR Serverless, unpacked as ./deps on every container."""
    return f"{SERVERLESS_DIR}/deps-cp{python.replace('.', '')}-{arch}.tar.gz"


def deployed_version(config: ToolingConfig, version: Optional[str] = None) -> str:
    return version or config.deploy.version or __version__


def release_uri(config: ToolingConfig, version: Optional[str] = None) -> str:
    """s3://bucket/prefix/<version>: everything `idstore deploy` uploaded for one version."""
    if not config.deploy.bucket:
        raise ConfigError("deploy.bucket: not set; the artifacts bucket is needed to deploy or render")
    parts = [config.deploy.bucket, config.deploy.prefix.strip("/"), deployed_version(config, version)]
    return "s3://" + "/".join(p for p in parts if p)


def artifact_uri(config: ToolingConfig, relative: str, version: Optional[str] = None) -> str:
    return f"{release_uri(config, version)}/{relative}"


def conf_uri(config: ToolingConfig, conf_name: str, version: Optional[str] = None) -> str:
    """Where `idstore deploy --conf FILE` puts FILE, and so where the jobs read it on AWS."""
    return artifact_uri(config, f"{CONF_DIR}/{conf_name}", version)


def data_locations(config: ToolingConfig) -> List[Tuple[str, str, bool]]:
    """(config key, path, read only?) of every data location the jobs touch: the one list
    that the IAM policy and the preflight checks both go through."""
    run = config.run
    return [
        ("events.path", run.events.path, True),
        ("snapshot.path", run.snapshot.path, False),
        ("output.path", run.output.path, False),
        ("output.quarantine_path", run.output.quarantine_path, False),
        ("report.path", run.report.path, False),
        ("source.unload_tempdir", run.source.unload_tempdir, False),
        # staged by the sync, read by DynamoDB's import as the caller, then removed
        ("dynamodb.import_path", run.dynamodb.import_path if run.dynamodb.imports else "", False),
        ("emr.log_uri", config.emr.log_uri, False),
    ]
