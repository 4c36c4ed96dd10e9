"""Faults, tried for real: sync through spark-submit against the capacity emulator.

Each run ends with a read-back that proves the table holds exactly the source set
(or, for the endpoint that stays down, that the job failed loudly instead).
"""
import os
import signal
import subprocess
import threading
import time
import uuid

import boto3
import pytest

from idstore_tools.local_submit import spark_submit_command
from idstore_tools.testing.emulator import DynamoDBEmulator

from .conftest import MOTO_ENV, create_source_table, run_here, run_job

pytestmark = pytest.mark.integration

SOURCE_IDS = [f"F{i:07d}" for i in range(4000)]


@pytest.fixture(scope="module")
def emulator():
    with DynamoDBEmulator(latency_s=0.002, seed=11) as emu:
        yield emu


@pytest.fixture(scope="module")
def fault_source(stack):
    from idstore_tools.local.stack import connect_postgres

    conn = connect_postgres(stack)
    conn.autocommit = True
    create_source_table(conn, "src_faults", [(v, None, None, None) for v in SOURCE_IDS])
    conn.close()
    return "select product_id from src_faults"


@pytest.fixture
def emu_table(emulator):
    emulator.set_faults(unprocessed_fraction=0, error_5xx_fraction=0, throttle_fraction=0,
                        drop_connection_fraction=0)
    emulator.set_latency(0.002)
    emulator.set_down(False)
    name = f"faults-{uuid.uuid4().hex[:8]}"
    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=emulator.endpoint_url,
                          aws_access_key_id="x", aws_secret_access_key="x")
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "product_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "product_id", "AttributeType": "S"}],
    )
    return name


def _stored(emulator, table):
    return {item["product_id"]["S"] for item in emulator.items(table)}


def _args(emulator, table, query, *extra):
    return ["--set", f"dynamodb.endpoint_url={emulator.endpoint_url}", "--set", f"dynamodb.table={table}",
            "--set", f"source.query={query}", *extra]


FAULTS = {
    "unprocessed items": dict(unprocessed_fraction=0.3),
    "ProvisionedThroughputExceeded": dict(
        throttle_fraction=0.2, throttle_error="ProvisionedThroughputExceededException"
    ),
    "ThrottlingException": dict(throttle_fraction=0.2, throttle_error="ThrottlingException"),
    "RequestLimitExceeded": dict(throttle_fraction=0.2, throttle_error="RequestLimitExceeded"),
    "5xx burst": dict(error_5xx_fraction=0.15),
    "dropped connections": dict(drop_connection_fraction=0.1),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_no_loss_under_fault(fault, spark, emulator, emu_table, fault_source, job_conf):
    # on the suite's session: the writer's tasks meet the faults as they would under spark-submit,
    # which the slow-endpoint and deadline tests below go through
    emulator.set_faults(**FAULTS[fault])
    report = run_here(spark, job_conf, *_args(emulator, emu_table, fault_source))
    assert _stored(emulator, emu_table) == set(SOURCE_IDS)
    assert report.counts["written"] == len(SOURCE_IDS)
    writer = report.details["writer"]
    retried = sum(writer[k] for k in ("unprocessed_resent", "retries_throttle", "retries_5xx", "retries_connection"))
    assert retried > 0, "the fault never fired: this test would prove nothing"


def test_no_loss_with_a_slow_endpoint(emulator, emu_table, fault_source, job_conf):
    emulator.set_latency(0.15)
    code, output, _ = run_job("sync", job_conf, *_args(emulator, emu_table, fault_source))
    assert code == 0, output
    assert _stored(emulator, emu_table) == set(SOURCE_IDS)


def test_an_endpoint_down_past_the_deadline_fails_loudly(emulator, emu_table, fault_source, job_conf):
    # every write's connection is dropped; DescribeTable still answers so the write starts
    emulator.set_faults(drop_connection_fraction=1.0)
    code, output, report = run_job(
        "sync", job_conf, *_args(emulator, emu_table, fault_source, "--set", "dynamodb.no_progress_timeout_s=4"),
    )
    assert code == 1, output
    assert report["outcome"] == "failed"
    # the one line a user reads, in the report and the summary: what failed, why, and what is not written
    error = report["error"]
    assert error.startswith(f"WriteFailed: DynamoDB write to {emu_table} failed in partition ")
    assert "nothing written for" in error and "(dynamodb.no_progress_timeout_s = 4)" in error
    assert "Not written: " in error and "Spark retries the task" in error
    assert f"  error: {error}" in output
    assert "written" not in report["counts"]


def _python_workers(root_pid):
    """pids of the PySpark worker processes below `root_pid` (forked by pyspark.daemon)."""
    parents, commands = {}, {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                commands[int(pid)] = f.read().replace(b"\0", b" ").decode()
            with open(f"/proc/{pid}/stat") as f:
                parents[int(pid)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue

    def below_root(pid):
        while pid > 1:
            if pid == root_pid:
                return True
            pid = parents.get(pid, 0)
        return False

    daemons = {p for p, cmd in commands.items() if "pyspark.daemon" in cmd and below_root(p)}
    return [p for p in daemons if parents.get(p) in daemons]


def test_a_python_worker_killed_mid_partition_is_retried_without_loss(emulator, emu_table, fault_source, job_conf):
    emulator.set_latency(0.02)
    args = _args(emulator, emu_table, fault_source, "--set", "dynamodb.write_rate=800")
    command = spark_submit_command(
        "sync", ["--conf", str(job_conf), *args],
        master="local[2,4]",  # local mode retries a failed task only with maxFailures > 1
    )
    env = {**os.environ, **MOTO_ENV, "SPARK_LOCAL_IP": "127.0.0.1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    killed = None
    written_before = emulator.metrics()["items_written"]
    deadline = time.time() + 120
    while time.time() < deadline and killed is None and proc.poll() is None:
        if emulator.metrics()["items_written"] > written_before + 200:
            workers = _python_workers(proc.pid)
            if workers:
                killed = workers[0]
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.1)
    code = proc.wait(timeout=300)
    reader.join(timeout=5)
    text = "".join(output)
    assert killed is not None, "no worker was running mid-write: the test proved nothing\n" + text
    assert code == 0, text
    assert "Lost task" in text, "the killed worker was not running a task: nothing was retried\n" + text
    assert _stored(emulator, emu_table) == set(SOURCE_IDS)
