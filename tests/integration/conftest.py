"""The local stack (PostgreSQL + moto server) and spark-submit helpers for end-to-end tests."""
import json
import uuid
from pathlib import Path

import pytest

from idstore.local.stack import LocalStack, aws_client, connect_postgres, write_local_config
from idstore.local_submit import spark_submit

MOTO_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def stack():
    with LocalStack() as info:
        yield info


@pytest.fixture
def pg(stack):
    conn = connect_postgres(stack)
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture
def ddb(stack):
    return aws_client("dynamodb", stack.moto_endpoint)


@pytest.fixture
def new_table(ddb):
    """A fresh on-demand table per test, so tests never see each other's items."""
    name = f"ids-{uuid.uuid4().hex[:8]}"
    ddb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "product_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "product_id", "AttributeType": "S"}],
    )
    return name


@pytest.fixture
def job_conf(stack, tmp_path):
    return write_local_config(stack, tmp_path / "job.toml", tmp_path / "data")


def run_job(job, conf, *args, env=None):
    """spark-submit a job; returns (exit code, stdout + stderr, the run report)."""
    run_id = f"t-{uuid.uuid4().hex[:8]}"
    result = spark_submit(job, ["--conf", str(conf), "--run-id", run_id, *args], env={**MOTO_ENV, **(env or {})})
    output = result.stdout + result.stderr
    reports = list(Path(conf).parent.glob(f"data/reports/{job}/run_id={run_id}.json"))
    report = json.loads(reports[0].read_text()) if reports else None
    return result.returncode, output, report


def create_source_table(pg, name, rows):
    """A source table of (product_id, title, price, active) rows."""
    cur = pg.cursor()
    cur.execute(f"drop table if exists {name}")
    cur.execute(f"create table {name} (product_id text, title text, price numeric, active boolean)")
    cur.executemany(f"insert into {name} values (%s, %s, %s, %s)", rows)
