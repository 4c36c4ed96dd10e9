"""`idstore validate`: a preflight checklist, as Data Pipeline validated its components.

The table and its key schema and billing mode, the S3 locations, the source credentials, the
deployed release and, on request, the JDBC source itself. Prints what it checked, never a secret.
"""
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Mapping, Optional

from idstore import io
from idstore.config import Config, ConfigError
from idstore_tools.deploy import layout
from idstore_tools.deploy.config import ToolingConfig


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    skipped: bool = False

    def line(self) -> str:
        mark = "skip" if self.skipped else (" ok " if self.ok else "FAIL")
        return f"[{mark}] {self.name}: {self.detail}"


def run_checks(config: ToolingConfig, environ: Mapping[str, str] = os.environ, check_source: bool = False,
               version: Optional[str] = None, conf_uri: Optional[str] = None) -> List[Check]:
    checks = [
        *check_config(config),
        _guard("DynamoDB table", lambda: check_table(config)),
        *check_locations(config),
        _guard("source credentials", lambda: check_credentials(config.run, environ)),
    ]
    if config.deploy.bucket:
        checks.append(_guard("deployed release", lambda: check_release(config, version, conf_uri)))
    if check_source:
        checks.append(_guard("JDBC source", lambda: check_jdbc_source(config.run, environ)))
    return checks


def checklist(checks: List[Check]) -> str:
    failed = sum(1 for c in checks if not c.ok)
    verdict = f"{failed} of {len(checks)} checks failed" if failed else f"all {len(checks)} checks passed"
    return "\n".join([c.line() for c in checks] + [verdict])


def _guard(name: str, check: Callable[[], Check]) -> Check:
    try:
        return check()
    except ConfigError as exc:
        return Check(name, False, str(exc))
    except Exception as exc:  # noqa: BLE001 - a check that cannot run has failed, with its reason
        return Check(name, False, _reason(exc))


def _client(service: str, config: Config, endpoint_url: str = "", region: str = ""):
    import boto3

    return boto3.client(service, region_name=region or config.aws.region,
                        endpoint_url=endpoint_url or config.aws.endpoint_url or None)


# -- the config itself, no AWS ------------------------------------------------------------------
def check_config(config: ToolingConfig) -> List[Check]:
    """What the jobs and the schedule need of the config: one failed check per problem."""
    from idstore_tools.deploy.preflight import config_problems

    problems = config_problems(config)
    return [Check("config", False, problem) for problem in problems] or [
        Check("config", True, "both jobs and the schedule can run on it")]


# -- DynamoDB ---------------------------------------------------------------------------------
def check_table(config: ToolingConfig) -> Check:
    cfg = config.run.dynamodb
    name = f"DynamoDB table {cfg.table}"
    client = _client("dynamodb", config.run, cfg.endpoint_url, cfg.region)
    try:
        table = client.describe_table(TableName=cfg.table)["Table"]
    except client.exceptions.ResourceNotFoundException:
        if cfg.imports:  # the first sync creates it
            return Check(name, True, f"not found in {cfg.region}: the first sync creates it by import "
                                     f"(dynamodb.create = import, staged under {cfg.import_path})")
        return Check(name, False, f"not found in {cfg.region}")
    problems = []
    key_schema = [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]]
    if key_schema != [(cfg.key_attribute, "HASH")]:
        problems.append(f"key schema {key_schema}, expected only HASH {cfg.key_attribute} (dynamodb.key_attribute)")
    types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
    if types.get(cfg.key_attribute, "S") != "S":
        problems.append(f"{cfg.key_attribute} is of type {types[cfg.key_attribute]}, expected S (string ids)")
    billing = table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
    expected = config.deploy.table_billing_mode
    if expected and billing != expected:
        problems.append(f"billing mode {billing}, expected {expected} (deploy.table_billing_mode)")
    if table.get("TableStatus") != "ACTIVE":
        problems.append(f"status {table.get('TableStatus')}, expected ACTIVE")
    wcu = table.get("ProvisionedThroughput", {}).get("WriteCapacityUnits", 0)
    if billing == "PROVISIONED" and not cfg.write_rate and not wcu:
        problems.append("provisioned with 0 WCU and dynamodb.write_rate = 0: nothing to write with")
    summary = f"HASH {cfg.key_attribute}, {billing}" + (f" {wcu} WCU" if billing == "PROVISIONED" else "")
    return Check(name, not problems, "; ".join(problems) if problems else f"{summary}, ACTIVE")


# -- S3 and local paths -----------------------------------------------------------------------
def check_locations(config: ToolingConfig) -> List[Check]:
    """Inputs must hold data; outputs must be writable places (a reachable bucket, a writable folder)."""
    checks = []
    for key, path, is_input in layout.data_locations(config):
        if not path:
            checks.append(Check(key, True, "not set", skipped=True))
            continue
        checks.append(_guard(key, lambda key=key, path=path, is_input=is_input: _check_location(
            config.run, key, path, is_input)))
    return checks


def _check_location(config: Config, key: str, path: str, is_input: bool) -> Check:
    if not io.is_s3(path):
        return _check_local(key, Path(path), is_input)
    from botocore.exceptions import ClientError

    bucket, prefix = io.split_s3(path)
    client = _client("s3", config)
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        reasons = {"404": "does not exist", "NoSuchBucket": "does not exist", "403": "is not accessible (403)"}
        return Check(key, False, f"{path}: bucket {bucket} {reasons.get(code, f'cannot be reached ({code})')}")
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix.rstrip("/") + "/" if prefix else "", MaxKeys=1)
    has_data = listed.get("KeyCount", 0) > 0
    if is_input and not has_data:
        return Check(key, False, f"{path}: bucket reachable, but nothing under the prefix")
    return Check(key, True, f"{path}: reachable" + (", holds data" if has_data else ", empty"))


def _check_local(key: str, path: Path, is_input: bool) -> Check:
    if is_input:
        return Check(key, path.exists(), f"{path}: " + ("exists" if path.exists() else "does not exist"))
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    writable = existing.is_dir() and os.access(existing, os.W_OK)
    return Check(key, writable, f"{path}: " + ("writable" if writable else f"{existing} is not a writable folder"))


# -- credentials ------------------------------------------------------------------------------
def check_credentials(config: Config, environ: Mapping[str, str]) -> Check:
    from idstore.source.credentials import uses_iam

    source = config.source
    name = "source credentials"
    if uses_iam(source.url):
        return Check(name, True, "IAM authentication (jdbc:redshift:iam://): no secret needed")
    if source.secret_id:
        return _check_secret(config)
    if source.password_env:
        present = bool(environ.get(source.password_env))
        state = "set" if present else "not set"
        return Check(name, present, f"environment variable {source.password_env} is {state}")
    return Check(name, False, "none configured: set source.secret_id or source.password_env")


def _check_secret(config: Config) -> Check:
    secret_id = config.source.secret_id
    name = f"secret {secret_id}"
    client = _client("secretsmanager", config)
    value = client.get_secret_value(SecretId=secret_id).get("SecretString")
    try:
        payload = json.loads(value) if value else None
    except ValueError:
        payload = None  # the parser's message quotes the text: not shown
    if not isinstance(payload, dict):
        return Check(name, False, "readable, but not a JSON object with username and password")
    missing = [k for k in ("username", "password") if not isinstance(payload.get(k), str) or not payload[k]]
    if missing:
        return Check(name, False, f"readable, but {' and '.join(missing)} missing or empty")
    return Check(name, True, "readable; has username and password")


# -- the deployed release ---------------------------------------------------------------------
def check_release(config: ToolingConfig, version: Optional[str] = None, conf_uri: Optional[str] = None) -> Check:
    release = layout.release_uri(config, version)
    bucket, prefix = io.split_s3(release)
    client = _client("s3", config.run)
    name = "deployed release"
    try:
        manifest = json.loads(client.get_object(Bucket=bucket, Key=f"{prefix}/{layout.MANIFEST}")["Body"].read())
    except client.exceptions.NoSuchKey:
        return Check(name, False, f"{release}/{layout.MANIFEST} not found: run `idstore deploy`")
    missing = [rel for rel in (layout.BOOTSTRAP, *layout.JOBS.values()) if rel not in manifest.get("files", {})]
    if not manifest.get("wheelhouse", {}).get("complete"):
        missing.append("the wheelhouse (built with --no-wheelhouse)")
    if conf_uri and io.is_s3(conf_uri):
        conf_bucket, conf_key = io.split_s3(conf_uri)
        if client.list_objects_v2(Bucket=conf_bucket, Prefix=conf_key, MaxKeys=1).get("KeyCount", 0) == 0:
            missing.append(conf_uri)
    if missing:
        return Check(name, False, f"{release}: missing {', '.join(missing)}")
    return Check(name, True, f"{release}: idstore {manifest.get('version')}")


# -- the source -------------------------------------------------------------------------------
def check_jdbc_source(config: Config, environ: Mapping[str, str]) -> Check:
    """Run the source query with WHERE 1 = 0 on a local SparkSession: reachable, valid, has the id column."""
    from pyspark.sql import SparkSession

    from idstore.source.credentials import resolve_credentials
    from idstore.source.jdbc import jdbc_properties
    from idstore.spark import build_session

    source = config.source
    credentials = resolve_credentials(source, config.aws, environ)
    started_here = SparkSession.getActiveSession() is None  # a caller's session is the caller's to stop
    spark = build_session("idstore-validate", {**config.spark, "spark.ui.enabled": "false"}, master="local[1]")
    try:
        probe = f"select * from ({source.query}) idstore_probe where 1 = 0"
        columns = spark.read.jdbc(source.url, f"({probe}) idstore_check",
                                  properties=jdbc_properties(source, credentials)).columns
    except Exception as exc:  # noqa: BLE001 - any failure of the probe is the check's answer
        return Check("JDBC source", False, _reason(exc, credentials.password))
    finally:
        if started_here:
            spark.stop()
    if source.id_column not in columns:
        return Check("JDBC source", False,
                     f"query runs, but has no column {source.id_column} (source.id_column): {columns}")
    return Check("JDBC source", True, f"query runs; columns {', '.join(columns)}")


def _reason(exc: BaseException, *secrets: str) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    java = getattr(exc, "java_exception", None)  # Py4J: the JVM's own message says what went wrong
    if java is not None:
        try:
            text = str(java.toString())
        except Exception:  # noqa: BLE001 - keep the Python message then
            pass
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return f"{type(exc).__name__}: {text}"[:500]
