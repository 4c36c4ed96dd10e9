"""`idstore deploy`: upload dist/ to s3://bucket/prefix/<version>/, checked, manifest last.

A version prefix is written once: uploading a different build over it needs --force, so a
cluster bootstrapping from it never mixes two builds. Unchanged files are not re-sent.
"""
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from idstore import io
from idstore.config import Config, load_config
from idstore_tools.deploy import layout
from idstore_tools.deploy.config import ToolingConfig
from idstore_tools.deploy.package import sha256_of, verify_dist

log = logging.getLogger(__name__)


class DeployError(RuntimeError):
    """The upload was refused or failed; the message says why."""


@dataclass
class DeployResult:
    release_uri: str
    version: str
    uploaded: List[str] = field(default_factory=list)
    unchanged: List[str] = field(default_factory=list)
    conf_uris: List[str] = field(default_factory=list)


def s3_client(config: Config):
    import boto3

    return boto3.client("s3", region_name=config.aws.region, endpoint_url=config.aws.endpoint_url or None)


def deploy(dist: Path, config: ToolingConfig, version: Optional[str] = None, conf_files: Sequence[Path] = (),
           force: bool = False, client=None) -> DeployResult:
    """Upload `dist` (and the config files the jobs will read) under the release prefix."""
    manifest = verify_dist(dist)
    version = version or config.deploy.version or manifest["version"]
    release = layout.release_uri(config, version)
    bucket, prefix = io.split_s3(release)
    client = client or s3_client(config.run)
    for conf in conf_files:
        load_config(str(conf))  # a config the jobs would reject is not shipped (they skip the tooling's sections)
    remote = _remote_manifest(client, bucket, f"{prefix}/{layout.MANIFEST}")
    if remote is not None and remote.get("files") != manifest["files"] and not force:
        changed = sorted(k for k in set(remote.get("files", {})) | set(manifest["files"])
                         if remote.get("files", {}).get(k) != manifest["files"].get(k))
        raise DeployError(
            f"{release} already holds another build ({len(changed)} files differ, e.g. {', '.join(changed[:3])}); "
            "bump the version, deploy with --version, or pass --force to replace it"
        )
    extra = _encryption(config)
    result = DeployResult(release_uri=release, version=version)
    for relative, entry in sorted(manifest["files"].items()):
        key = f"{prefix}/{relative}"
        if _remote_sha256(client, bucket, key) == entry["sha256"]:
            result.unchanged.append(relative)
            continue
        _upload(client, Path(dist) / relative, bucket, key, entry["sha256"], extra)
        result.uploaded.append(relative)
    for conf in conf_files:
        relative = f"{layout.CONF_DIR}/{Path(conf).name}"
        _upload(client, Path(conf), bucket, f"{prefix}/{relative}", sha256_of(Path(conf)), extra)
        result.conf_uris.append(f"{release}/{relative}")
    # the manifest goes last: its presence says the release is complete
    manifest_path = Path(dist) / layout.MANIFEST
    _upload(client, manifest_path, bucket, f"{prefix}/{layout.MANIFEST}", sha256_of(manifest_path), extra)
    log.info("deployed %s: %d files uploaded, %d unchanged", release, len(result.uploaded), len(result.unchanged))
    return result


def _upload(client, path: Path, bucket: str, key: str, sha256: str, extra: Dict[str, Any]) -> None:
    client.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {"sha256": sha256}, **extra})


def _encryption(config: ToolingConfig) -> Dict[str, Any]:
    if not config.deploy.kms_key_arn:
        return {}
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": config.deploy.kms_key_arn}


def _remote_manifest(client, bucket: str, key: str) -> Optional[Dict[str, Any]]:
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        return None
    return json.loads(body)


def _remote_sha256(client, bucket: str, key: str) -> Optional[str]:
    from botocore.exceptions import ClientError

    try:
        return client.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("sha256")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
