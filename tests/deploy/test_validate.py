"""`idstore validate` against moto: a checklist that fails on what is wrong and never shows a secret."""
import json
import uuid

import pytest

from idstore_tools.deploy import cli
from idstore_tools.deploy.validate import run_checks

SECRET = "idstore/redshift-etl"


@pytest.fixture
def password():
    return "pw-" + uuid.uuid4().hex


@pytest.fixture
def deployed(moto_config, aws, password, tmp_path):
    """Everything the production config names, as it should be."""
    s3 = aws("s3")
    for bucket in ("example-idstore", "example-failure-events", "example-idstore-logs", moto_config.deploy.bucket):
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
    s3.put_object(Bucket="example-failure-events", Key="events/dt=2024-05-01/part-0.json.gz", Body=b"x")
    release = f"idstore/releases/{moto_config.deploy.version or '0.1.0'}"
    manifest = {"version": "0.1.0", "wheelhouse": {"complete": True},
                "files": {f: {} for f in ("bootstrap/install-idstore.sh", "jobs/sync_product_ids.py",
                                          "jobs/filter_failure_events.py")}}
    s3.put_object(Bucket=moto_config.deploy.bucket, Key=f"{release}/manifest.json", Body=json.dumps(manifest))
    s3.put_object(Bucket=moto_config.deploy.bucket, Key=f"{release}/conf/prod.toml", Body=b"")
    dynamodb = aws("dynamodb")
    table = f"Ids{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "product_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "product_id", "AttributeType": "S"}],
    )
    secrets = aws("secretsmanager")
    secret = json.dumps({"username": "etl", "password": password})
    try:
        secrets.create_secret(Name=SECRET, SecretString=secret)
    except secrets.exceptions.ResourceExistsException:
        secrets.put_secret_value(SecretId=SECRET, SecretString=secret)
    return table


def validate_cli(moto_overrides, prod_conf, *extra):
    sets = [arg for override in (*moto_overrides, *extra) for arg in ("--set", override)]
    return cli.main(["validate", "--conf", str(prod_conf), *sets])


def test_everything_in_place_passes_and_the_secret_is_not_printed(moto_overrides, prod_conf, deployed, password,
                                                                  capsys):
    code = validate_cli(moto_overrides, prod_conf, f"dynamodb.table={deployed}",
                        "deploy.table_billing_mode=PAY_PER_REQUEST")
    out = capsys.readouterr().out
    assert code == 0, out
    assert "FAIL" not in out and out.strip().endswith("checks passed")
    assert f"DynamoDB table {deployed}: HASH product_id, PAY_PER_REQUEST, ACTIVE" in out
    assert "secret idstore/redshift-etl: readable; has username and password" in out
    assert "events.path: s3://example-failure-events/events: reachable, holds data" in out
    assert password not in out


def test_a_table_with_another_key_or_billing_mode_fails(make_config, moto_overrides, deployed, aws):
    dynamodb = aws("dynamodb")
    dynamodb.create_table(
        TableName="WrongKey", BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"} for name in ("id", "sk")],
    )
    config = make_config([*moto_overrides, "dynamodb.table=WrongKey", "deploy.table_billing_mode=PAY_PER_REQUEST"])
    [table] = [c for c in run_checks(config) if c.name.startswith("DynamoDB table")]
    assert not table.ok
    assert "expected only HASH product_id" in table.detail and "billing mode PROVISIONED" in table.detail
    config = make_config([*moto_overrides, "dynamodb.table=NoSuchTable"])
    [missing] = [c for c in run_checks(config) if c.name.startswith("DynamoDB table")]
    assert not missing.ok and "not found" in missing.detail
    config = make_config([*moto_overrides, "dynamodb.table=NoSuchTable", "dynamodb.create=import",
                          "dynamodb.import_path=s3://example-staging/imports"])
    [created_later] = [c for c in run_checks(config) if c.name.startswith("DynamoDB table")]
    assert created_later.ok and "the first sync creates it by import" in created_later.detail


def test_a_secret_without_a_password_fails_without_showing_its_value(make_config, moto_overrides, deployed, aws):
    user = "user-" + uuid.uuid4().hex
    aws("secretsmanager").create_secret(Name="idstore/no-password", SecretString=json.dumps({"username": user}))
    config = make_config([*moto_overrides, f"dynamodb.table={deployed}", "source.secret_id=idstore/no-password"])
    [secret] = [c for c in run_checks(config) if c.name.startswith("secret")]
    assert not secret.ok and secret.detail == "readable, but password missing or empty"
    assert user not in secret.line()


def test_empty_input_prefix_missing_bucket_and_missing_release_fail(make_config, moto_overrides, deployed, capsys,
                                                                    prod_conf):
    config = make_config([*moto_overrides, f"dynamodb.table={deployed}", "events.path=s3://example-failure-events/none",
                          "output.path=s3://no-such-bucket/out", "deploy.version=9.9.9"])
    checks = {c.name: c for c in run_checks(config)}
    assert not checks["events.path"].ok and "nothing under the prefix" in checks["events.path"].detail
    assert not checks["output.path"].ok
    assert checks["output.path"].detail == "s3://no-such-bucket/out: bucket no-such-bucket does not exist"
    assert not checks["deployed release"].ok and "run `idstore deploy`" in checks["deployed release"].detail
    assert checks["report.path"].ok
    code = validate_cli(moto_overrides, prod_conf, f"dynamodb.table={deployed}", "deploy.version=9.9.9")
    assert code == 1
    assert "checks failed" in capsys.readouterr().out


def test_local_paths_and_an_env_password(make_config, tmp_path, monkeypatch, moto_overrides, deployed):
    (tmp_path / "events").mkdir()
    config = make_config([*moto_overrides, f"dynamodb.table={deployed}", "source.secret_id=",
                          "source.password_env=IDSTORE_TEST_PASSWORD", f"events.path={tmp_path / 'events'}",
                          f"output.path={tmp_path / 'new' / 'out'}", "deploy.bucket="])
    monkeypatch.delenv("IDSTORE_TEST_PASSWORD", raising=False)
    checks = {c.name: c for c in run_checks(config, environ={})}
    assert checks["events.path"].ok and checks["output.path"].ok
    credentials = checks["source credentials"]
    assert not credentials.ok and "IDSTORE_TEST_PASSWORD is not set" in credentials.detail
    assert "deployed release" not in checks  # nothing deployed to check without deploy.bucket
    checks = {c.name: c for c in run_checks(config, environ={"IDSTORE_TEST_PASSWORD": "x"})}
    assert checks["source credentials"].ok


def test_check_source_reports_an_unreachable_database_without_the_password(make_config, moto_overrides, deployed):
    pytest.importorskip("pyspark")
    from idstore_tools.local.stack import free_port
    from idstore_tools.local_submit import jdbc_driver_jars

    password = "pw-" + uuid.uuid4().hex
    config = make_config([*moto_overrides, f"dynamodb.table={deployed}", "source.secret_id=",
                          f"source.url=jdbc:postgresql://127.0.0.1:{free_port()}/idstore", "source.user=idstore",
                          "source.password_env=IDSTORE_TEST_PASSWORD", "deploy.bucket=",
                          f"spark.spark.jars={jdbc_driver_jars()}"])  # this JVM may serve the suite's session next
    checks = {c.name: c for c in run_checks(config, environ={"IDSTORE_TEST_PASSWORD": password}, check_source=True)}
    source = checks["JDBC source"]
    assert not source.ok
    assert "Connection" in source.detail or "connect" in source.detail
    assert password not in source.detail
