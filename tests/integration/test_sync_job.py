"""The sync job against PostgreSQL and moto, checked against plain Python and plain boto3.

spark-submit runs (each costs ~15-20 s here) cover what only a real submit shows: exit
codes, the summary, reports, a killed process. The rest runs run_sync in-process.
"""
import calendar
import json
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from idstore.config import load_config
from idstore.errors import RunFailed, RunRefused
from idstore.pipeline.options import SyncOptions
from idstore.pipeline.report import RunReport, redacted_config
from idstore.pipeline.sync import run_sync
from idstore.snapshot import POINTER
from idstore_tools.local.stack import aws_client
from idstore_tools.testing.readback import scan_items

from .conftest import assert_password_nowhere, create_source_table, kill_job, run_job, start_job

integration = pytest.mark.integration
STAMPS = ("synced_at", "run_id")


def reference_valid_ids(values):
    """What should reach the table: non-null, non-blank, at most 2048 UTF-8 bytes, once each."""
    return {
        v for v in values
        if v is not None and v.strip(" \t\n\r\f\v") != "" and len(v.encode("utf-8")) <= 2048
    }


def items_by_key(ddb, table):
    return {item["product_id"]["S"]: item for item in scan_items(ddb, table)}


def without_stamps(items):
    return {key: {k: v for k, v in item.items() if k not in STAMPS} for key, item in items.items()}


def seed_table(ddb, table, keys, **attributes):
    keys = list(keys)
    for start in range(0, len(keys), 25):
        requests = [
            {"PutRequest": {"Item": {"product_id": {"S": key}, **{k: {"S": v} for k, v in attributes.items()}}}}
            for key in keys[start:start + 25]
        ]
        ddb.batch_write_item(RequestItems={table: requests})


def in_process_config(job_conf, *overrides):
    return load_config(str(job_conf), list(overrides))


def run_in_process(spark, config, **flags):
    report = RunReport(job="sync", run_id=f"p-{uuid.uuid4().hex[:8]}", config=redacted_config(config))
    run_sync(spark, config, report, {}, SyncOptions(**flags))
    return report


# -- in-process runs on the local stack ------------------------------------------------------
@integration
def test_too_many_rejected_ids_refuse_the_run_but_quarantine_them(spark, pg, ddb, new_table, job_conf):
    values = ["a", "", "", None, "b" * 2049]
    create_source_table(pg, "src_mostly_bad", [(v, None, None, None) for v in values])
    config = in_process_config(job_conf, f"dynamodb.table={new_table}",
                               "source.query=select product_id from src_mostly_bad")
    with pytest.raises(RunRefused, match="max_rejected_fraction"):
        run_in_process(spark, config)
    assert scan_items(ddb, new_table) == []
    files = Path(config.output.quarantine_path, "sync").rglob("*.json")
    quarantined = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    assert Counter(q["reason"] for q in quarantined) == {"empty": 2, "null": 1, "key_too_long": 1}
    assert {q["id"] for q in quarantined if q["reason"] == "null"} == {None}


@integration
def test_force_overrides_the_guard_and_a_second_run_leaves_the_same_table(spark, pg, ddb, new_table, job_conf):
    source = [f"S{i:04d}" for i in range(40)]
    create_source_table(pg, "src_force", [(v, f"t{v}", None, True) for v in source])
    seed_table(ddb, new_table, [*source[:10], *(f"GONE{i}" for i in range(30))])
    config = in_process_config(job_conf, f"dynamodb.table={new_table}", "dynamodb.mode=mirror",
                               "source.query=select product_id, title from src_force",
                               "source.attribute_columns=title")
    with pytest.raises(RunRefused, match="30 of the 40 keys"):
        run_in_process(spark, config)
    first = run_in_process(spark, config, force=True)
    assert "30 of the 40 keys" in first.details["guard_overridden"]
    assert first.counts["deleted"] == 30 and first.counts["written"] == 40
    after_first = items_by_key(ddb, new_table)
    assert set(after_first) == set(source)
    assert all(item["title"] == {"S": f"t{key}"} for key, item in after_first.items())
    second = run_in_process(spark, config)
    after_second = items_by_key(ddb, new_table)
    assert second.counts["stale"] == 0 and second.counts["deleted"] == 0
    assert without_stamps(after_second) == without_stamps(after_first)
    # a delta run: nothing changed, nothing written; the items name the run that last wrote them
    assert second.details["strategy"] == "delta" and second.counts["written"] == 0
    assert {item["run_id"]["S"] for item in after_second.values()} == {first.run_id}
    third = run_in_process(spark, config, full=True)  # a full run writes every item again
    assert third.counts["written"] == 40 and without_stamps(items_by_key(ddb, new_table)) == without_stamps(after_first)
    assert {item["run_id"]["S"] for item in items_by_key(ddb, new_table).values()} == {third.run_id}


@integration
def test_an_empty_upsert_changes_nothing_and_a_missing_table_is_a_config_error(spark, pg, ddb, new_table, job_conf):
    create_source_table(pg, "src_none", [])
    seed_table(ddb, new_table, ["KEEP"])
    config = in_process_config(job_conf, f"dynamodb.table={new_table}", "source.query=select product_id from src_none")
    report = run_in_process(spark, config)
    assert report.counts["source_rows"] == 0 and report.counts["written"] == 0
    assert set(items_by_key(ddb, new_table)) == {"KEEP"}
    assert not Path(config.snapshot.path, POINTER).exists()  # the pointer keeps naming the last real set
    missing = in_process_config(job_conf, "dynamodb.table=no-such-table",
                                "source.query=select product_id from src_none")
    with pytest.raises(RunFailed, match="DescribeTable: no table 'no-such-table'.*dynamodb.table"):
        run_in_process(spark, missing)


# -- spark-submit -----------------------------------------------------------------------------
@integration
def test_upsert_writes_the_valid_set_with_typed_attributes_and_reports_it(stack, pg, ddb, new_table, job_conf):
    good = [f"B{i:08d}" for i in range(3000)]
    bad = [None, "", "   ", "x" * 2049]
    dupes = good[:25]
    values = good + bad + dupes
    rows = [(v, None if i == 100 else f"title {i}", Decimal(i) / 4, i % 2 == 0) for i, v in enumerate(values)]
    create_source_table(pg, "src_basic", rows)
    before = time.time()
    code, output, report = run_job(
        "sync", job_conf,
        "--set", f"dynamodb.table={new_table}",
        "--set", "source.query=select product_id, title, price, active from src_basic",
        "--set", "source.attribute_columns=title,price,active",
        "--set", "dynamodb.ttl_attribute=expires_at", "--set", "dynamodb.ttl_days=7",
        "--set", "validation.max_rejected_fraction=0.5",
    )
    after = time.time()
    assert code == 0, output
    assert "SUCCEEDED" in output
    items = items_by_key(ddb, new_table)
    assert set(items) == reference_valid_ids(values)

    # every item is one of its source rows, typed; plus the run's stamps and the TTL
    source_rows = {}
    for v, title, price, active in rows:
        source_rows.setdefault(v, set()).add((title, price, active))
    for key, item in items.items():
        title = item["title"]["S"] if "title" in item else None
        assert (title, Decimal(item["price"]["N"]), item["active"]["BOOL"]) in source_rows[key]
        assert item["run_id"] == {"S": report["run_id"]}
        synced = calendar.timegm(time.strptime(item["synced_at"]["S"], "%Y-%m-%dT%H:%M:%SZ"))
        assert before - 1 <= synced <= after
        assert synced + 7 * 86400 <= int(item["expires_at"]["N"]) <= after + 7 * 86400
    assert "title" not in items[values[100]]

    counts = report["counts"]
    assert counts["source_rows"] == len(values)
    assert counts["rejected"] == len(bad)
    assert counts["duplicates"] == len(dupes)
    assert counts["written"] == len(good)
    assert report["outcome"] == "succeeded" and report["error"] == ""
    assert report["details"]["rejected_by_reason"] == {"null": 1, "empty": 1, "blank": 1, "key_too_long": 1}
    assert report["details"]["consumed_wcu"] >= len(good)
    assert report["details"]["put_items_per_s"] > 0 and isinstance(report["details"]["retries"], int)
    # the CloudWatch figures the run publishes, against the inputs
    metrics = report["metrics"]
    assert (metrics["ItemsPut"], metrics["ItemsRejected"]) == (len(good), len(bad))
    assert metrics["ConsumedWCU"] >= len(good) and metrics["Throttles"] == 0
    assert {"read_validate", "write", "snapshot", "total"} <= set(report["durations_s"])
    assert report["config"]["source"]["secret_id"] == stack.secret_id

    data = Path(job_conf).parent / "data"
    quarantined = [json.loads(line) for path in (data / "quarantine" / "sync" / f"run_id={report['run_id']}").glob(
        "*.json") for line in path.read_text().splitlines()]
    assert Counter(q["reason"] for q in quarantined) == report["details"]["rejected_by_reason"]
    pointer = json.loads((data / "snapshots" / POINTER).read_text())
    assert pointer["run_id"] == report["run_id"]
    valid = reference_valid_ids(values)
    assert (pointer["keys"], pointer["key_bytes"]) == (len(valid), sum(len(v.encode()) for v in valid))
    assert set(pq.read_table(pointer["path"]).column("product_id").to_pylist()) == reference_valid_ids(values)
    assert_password_nowhere(stack.pg_password, output, Path(job_conf).parent)


@integration
def test_a_dry_run_writes_nothing_then_mirror_deletes_exactly_the_stale_ids(stack, pg, ddb, new_table, job_conf):
    source = [f"M{i:05d}" for i in range(300)]
    create_source_table(pg, "src_mirror", [(v, None, None, None) for v in [*source, ""]])
    stale = [f"STALE{i:03d}" for i in range(20)]
    seed_table(ddb, new_table, [*source[:250], *stale], origin="seed")
    before = items_by_key(ddb, new_table)
    s3 = aws_client("s3", stack.moto_endpoint)
    bucket = f"reports-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    common = ["--set", f"dynamodb.table={new_table}", "--set", "dynamodb.mode=mirror",
              "--set", "source.query=select product_id from src_mirror"]
    data = Path(job_conf).parent / "data"

    code, output, _ = run_job("sync", job_conf, *common, "--dry-run", "--set", f"report.path=s3://{bucket}/idstore")
    assert code == 0, output
    assert items_by_key(ddb, new_table) == before
    assert not (data / "snapshots").exists() and not (data / "quarantine").exists()
    assert "would put 300 ids, delete 20 stale of 270 keys" in output
    key = s3.list_objects_v2(Bucket=bucket, Prefix="idstore/sync/")["Contents"][0]["Key"]
    report = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert report["outcome"] == "dry_run"
    planned = report["details"]["planned"]
    assert (planned["puts"], planned["deletes"], planned["rejected"], planned["table_keys"]) == (300, 20, 1, 270)
    assert planned["estimated_write_s"] > 0

    code, output, report = run_job("sync", job_conf, *common)
    assert code == 0, output
    items = items_by_key(ddb, new_table)
    assert set(items) == set(source)
    assert all("origin" not in item for item in items.values())  # puts replace whole items
    assert report["counts"]["table_keys_before"] == 270
    assert report["counts"]["stale"] == report["counts"]["deleted"] == len(stale)
    assert (report["metrics"]["ItemsPut"], report["metrics"]["ItemsDeleted"]) == (len(source), len(stale))
    assert json.loads((data / "snapshots" / POINTER).read_text())["run_id"] == report["run_id"]
    assert_password_nowhere(stack.pg_password, output, Path(job_conf).parent)


@integration
def test_the_guard_refuses_an_empty_source_and_only_a_real_refusal_raises_an_alarm(stack, pg, ddb, new_table,
                                                                                      job_conf):
    create_source_table(pg, "src_empty", [])
    seed_table(ddb, new_table, [f"K{i}" for i in range(50)])
    before = items_by_key(ddb, new_table)
    namespace = f"idstore-refusal-{uuid.uuid4().hex[:8]}"
    args = ["--set", f"dynamodb.table={new_table}", "--set", "dynamodb.mode=mirror",
            "--set", "source.query=select product_id from src_empty",
            "--set", "cloudwatch.enabled=true", "--set", f"cloudwatch.namespace={namespace}"]
    cloudwatch = aws_client("cloudwatch", stack.moto_endpoint)

    code, output, report = run_job("sync", job_conf, *args, "--dry-run")
    assert code == 3 and report["outcome"] == "refused" and report["dry_run"], output
    assert cloudwatch.list_metrics(Namespace=namespace)["Metrics"] == []  # a rehearsal raises no alarm

    code, output, report = run_job("sync", job_conf, *args)
    assert code == 3, output
    assert report["outcome"] == "refused"
    assert "no valid ids" in report["error"] and "all 50 keys" in report["error"]
    assert "REFUSED" in output and "--force" in output
    assert items_by_key(ddb, new_table) == before
    assert_password_nowhere(stack.pg_password, output, Path(job_conf).parent)
    now = datetime.now(timezone.utc)

    def published(metric):
        return [point["Sum"] for point in cloudwatch.get_metric_statistics(
            Namespace=namespace, MetricName=metric, Dimensions=[{"Name": "Job", "Value": "sync"}],
            StartTime=now - timedelta(minutes=10), EndTime=now + timedelta(minutes=10), Period=1200,
            Statistics=["Sum"])["Datapoints"]]

    assert (published("RunsRefused"), published("RunsFailed")) == ([1.0], [0.0])


@integration
def test_the_guard_refuses_an_over_threshold_delete_before_any_put(stack, pg, ddb, new_table, job_conf):
    table_keys = [f"K{i:03d}" for i in range(100)]
    source = [*table_keys[:60], *(f"NEW{i}" for i in range(40))]
    create_source_table(pg, "src_shrunk", [(v, None, None, None) for v in source])
    seed_table(ddb, new_table, table_keys)
    before = items_by_key(ddb, new_table)
    code, output, report = run_job(
        "sync", job_conf, "--set", f"dynamodb.table={new_table}", "--set", "dynamodb.mode=mirror",
        "--set", "source.query=select product_id from src_shrunk",
    )
    assert code == 3, output
    assert "40 of the 100 keys" in report["error"] and "max_delete_fraction 0.1" in report["error"]
    assert items_by_key(ddb, new_table) == before  # not even the 40 new ids were put
    assert "written" not in report["counts"]


@integration
def test_a_run_killed_mid_write_converges_when_run_again(stack, pg, ddb, new_table, job_conf, tmp_path):
    source = [f"R{i:05d}" for i in range(3000)]
    cur = pg.cursor()
    cur.execute("drop table if exists src_kill")
    cur.execute("create table src_kill as select 'R' || lpad(i::text, 5, '0') as product_id "
                "from generate_series(0, 2999) as i")
    stale = [f"OLD{i}" for i in range(15)]
    seed_table(ddb, new_table, [*source[:200], *stale])
    args = ["--set", f"dynamodb.table={new_table}", "--set", "dynamodb.mode=mirror",
            "--set", "source.query=select product_id from src_kill"]

    log_path = tmp_path / "killed.log"
    proc = start_job("sync", job_conf, *args, "--set", "dynamodb.write_rate=100", "--set", "dynamodb.lock_lease_s=4",
                     log_path=log_path)
    try:
        deadline = time.monotonic() + 240
        while ddb.scan(TableName=new_table, Select="COUNT")["Count"] < 215 + 150:
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.5)
    finally:
        kill_job(proc)
    partial = {item["product_id"]["S"] for item in scan_items(ddb, new_table)}
    assert set(stale) <= partial and len(partial) < len(source) + len(stale)  # stopped mid-write

    # the killed run's lock stays behind; it is taken over once its lease has run out
    lock_file = Path(job_conf).parent / "data" / "snapshots" / "_locks" / f"{new_table}.json"
    held = json.loads(lock_file.read_text())
    while datetime.fromisoformat(held["expires_at"]) > datetime.now(timezone.utc):
        time.sleep(0.5)
    code, output, report = run_job("sync", job_conf, *args)
    assert code == 0, output
    items = items_by_key(ddb, new_table)
    assert set(items) == set(source)
    assert {item["run_id"]["S"] for item in items.values()} == {report["run_id"]}
    assert report["counts"]["deleted"] == len(stale)
    assert_password_nowhere(stack.pg_password, output + log_path.read_text(), Path(job_conf).parent)


def test_reports_go_to_s3_through_boto3_and_never_hold_a_looked_up_password(monkeypatch):
    from moto import mock_aws

    from idstore.pipeline.report import write_report
    from idstore.redaction import REDACTED, remember_secret

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    remember_secret("pw-in-a-driver-error")
    with mock_aws():
        import boto3

        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="reports")
        config = load_config(None, ["report.path=s3://reports/idstore/"])
        report = RunReport(job="sync", run_id="r1", config=redacted_config(config))
        report.finish("failed", "JDBC said: login pw-in-a-driver-error refused")
        assert write_report(config, report) == "s3://reports/idstore/sync/run_id=r1.json"
        body = s3.get_object(Bucket="reports", Key="idstore/sync/run_id=r1.json")["Body"].read().decode()
    data = json.loads(body)
    assert data["outcome"] == "failed" and data["run_id"] == "r1"
    assert "pw-in-a-driver-error" not in body and REDACTED in data["error"]
