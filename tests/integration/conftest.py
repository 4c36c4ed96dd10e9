"""The local stack (PostgreSQL + moto server) and spark-submit helpers for end-to-end tests."""
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from idstore_tools.local.stack import MOTO_ENV, aws_client, write_local_config
from idstore_tools.local_submit import REPO, spark_submit


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


def with_set(*settings):
    """`key=value` settings as the command line takes them: --set key=value ..."""
    return [part for setting in settings for part in ("--set", setting)]


def run_here(spark, job_conf, *args, full=False):
    """One sync on the suite's SparkSession (PostgreSQL and moto as ever, no spark-submit); its report.

    `args` are `--set key=value` pairs, as run_job takes them. For the runs a test needs but
    does not test: each spark-submit costs a JVM start.
    """
    from idstore.config import load_config
    from idstore.pipeline.options import SyncOptions
    from idstore.pipeline.report import RunReport, redacted_config
    from idstore.pipeline.sync import run_sync

    assert set(args[0::2]) <= {"--set"}, args
    config = load_config(str(job_conf), list(args[1::2]))
    report = RunReport(job="sync", run_id=f"p-{uuid.uuid4().hex[:8]}", config=redacted_config(config))
    run_sync(spark, config, report, {}, SyncOptions(full=full))
    return report


def assert_password_nowhere(password, output, root):
    """`password` (or any secret) is in no output and no file the runs wrote (reports, quarantine, snapshots)."""
    assert password and password not in output
    for path in Path(root).rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path


def create_source_table(pg, name, rows):
    """A source table of (product_id, title, price, active) rows."""
    cur = pg.cursor()
    cur.execute(f"drop table if exists {name}")
    cur.execute(f"create table {name} (product_id text, title text, price numeric, active boolean)")
    cur.executemany(f"insert into {name} values (%s, %s, %s, %s)", rows)


def start_job(job, conf, *args, log_path, env=None):
    """Start a job's spark-submit in a process group of its own; output goes to `log_path`."""
    from idstore_tools.local_submit import spark_submit_command

    environ = {
        **os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1", **MOTO_ENV, **(env or {}),
    }
    with open(log_path, "wb") as out:
        return subprocess.Popen(
            spark_submit_command(job, ["--conf", str(conf), *args]), env=environ, cwd=str(REPO),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


def kill_job(proc, timeout_s=30.0):
    """SIGKILL a started job and everything it started (Spark's Python daemon has its own group)."""
    from idstore_tools.local.stack import descendants

    children = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    while True:
        alive = {pid: started for pid, started in children.items() if _same_process(pid, started)}
        if not alive:
            return
        if time.monotonic() > deadline:
            for pid in alive:
                os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.1)


def _same_process(pid, started):
    try:
        fields_ = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return fields_[0] not in ("Z", "X") and fields_[19] == started
