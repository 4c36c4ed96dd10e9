"""`idstore deploy` against moto S3: a versioned prefix, written once, manifest last."""
import hashlib
import json

import pytest

from idstore import __version__
from idstore_tools.deploy import cli
from idstore_tools.deploy.publish import DeployError, deploy


@pytest.fixture
def dist(quick_dist):
    """The session's quick dist/ (deploy reads it, never changes it)."""
    return quick_dist


@pytest.fixture
def bucket(moto_config, aws):
    s3 = aws("s3")
    s3.create_bucket(Bucket=moto_config.deploy.bucket)
    return s3, moto_config.deploy.bucket


def keys_under(s3, bucket, prefix):
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def test_deploy_uploads_every_file_of_dist_under_the_version(dist, moto_config, bucket, prod_conf):
    s3, name = bucket
    result = deploy(dist, moto_config, conf_files=[prod_conf])
    prefix = f"idstore/releases/{__version__}"
    assert result.release_uri == f"s3://{name}/{prefix}"
    manifest = json.loads((dist / "manifest.json").read_text())
    expected = {f"{prefix}/{rel}" for rel in manifest["files"]} | {f"{prefix}/manifest.json",
                                                                   f"{prefix}/conf/prod.toml"}
    assert keys_under(s3, name, prefix) == expected
    for relative, entry in manifest["files"].items():
        body = s3.get_object(Bucket=name, Key=f"{prefix}/{relative}")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]
    assert s3.get_object(Bucket=name, Key=f"{prefix}/conf/prod.toml")["Body"].read() == prod_conf.read_bytes()
    assert result.conf_uris == [f"s3://{name}/{prefix}/conf/prod.toml"]


def test_deploying_the_same_build_again_sends_nothing_but_the_manifest(dist, moto_config, bucket):
    deploy(dist, moto_config)
    again = deploy(dist, moto_config)
    files = json.loads((dist / "manifest.json").read_text())["files"]
    assert again.uploaded == [] and len(again.unchanged) == len(files)


def test_another_build_under_the_same_version_needs_force(dist, moto_config, bucket, tmp_path):
    import shutil

    deploy(dist, moto_config)
    other = tmp_path / "other"
    shutil.copytree(dist, other)
    (other / "jobs/sync_product_ids.py").write_text("# another build\n")
    manifest = json.loads((other / "manifest.json").read_text())
    data = (other / "jobs/sync_product_ids.py").read_bytes()
    manifest["files"]["jobs/sync_product_ids.py"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DeployError, match="another build"):
        deploy(other, moto_config)
    result = deploy(other, moto_config, force=True)
    assert result.uploaded == ["jobs/sync_product_ids.py"]
    assert deploy(other, moto_config, version="0.1.0-rc2").release_uri.endswith("/0.1.0-rc2")


def test_deploy_cli_prints_the_release_and_the_config_location(dist, moto_overrides, bucket, prod_conf, capsys):
    sets = [arg for override in moto_overrides for arg in ("--set", override)]
    code = cli.main(["deploy", "--conf", str(prod_conf), *sets, "--dist", str(dist)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"/idstore/releases/{__version__} (" in out and f"/{__version__}/conf/prod.toml" in out


def test_a_config_the_jobs_would_reject_is_not_deployed(dist, moto_config, bucket, tmp_path):
    from idstore.config import ConfigError

    broken = tmp_path / "broken.toml"
    broken.write_text("[dynamodb]\nmode = 'sometimes'\n")
    with pytest.raises(ConfigError, match="dynamodb.mode"):
        deploy(dist, moto_config, conf_files=[broken])
