"""Delta runs against PostgreSQL and moto, each checked against a plain-Python model of what the
table must hold, read back with boto3: churn, attribute changes, TTL refreshes, drift repaired by
the periodic verification and --full, config changes, damaged records, kills and overlapping runs."""
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from idstore_tools.testing.readback import scan_items

from .conftest import kill_job, run_here, run_job, start_job, with_set

pytestmark = pytest.mark.integration


def set_source(pg, table, rows):
    """The source table: product_id, title, price."""
    cur = pg.cursor()
    cur.execute(f"drop table if exists {table}")
    cur.execute(f"create table {table} (product_id text, title text, price int)")
    cur.executemany(f"insert into {table} values (%s, %s, %s)", rows)


def table_items(ddb, table):
    return {item["product_id"]["S"]: item for item in scan_items(ddb, table)}


def model_of(rows, columns=("title",)):
    """What the table must hold: each id with its attributes, as DynamoDB types them."""
    index = {"title": 1, "price": 2}
    typed = {"title": lambda v: {"S": v}, "price": lambda v: {"N": str(v)}}
    return {row[0]: {c: typed[c](row[index[c]]) for c in columns} for row in rows}


def attributes(items, columns=("title",)):
    return {key: {c: item[c] for c in columns if c in item} for key, item in items.items()}


def snapshot_root(job_conf):
    return Path(job_conf).parent / "data" / "snapshots"


def test_a_sequence_of_mirror_runs_writes_only_what_changed(spark, pg, ddb, new_table, job_conf):
    rows = [(f"Q{i:04d}", f"title {i}", i) for i in range(400)]
    set_source(pg, "src_delta", rows)
    args = ["--set", f"dynamodb.table={new_table}", "--set", "dynamodb.mode=mirror",
            "--set", "source.query=select product_id, title from src_delta", "--set", "source.attribute_columns=title",
            "--set", "dynamodb.ttl_attribute=expires_at", "--set", "dynamodb.ttl_days=10"]

    # the first and the last run on the suite's session; the delta runs between them through spark-submit
    first = run_here(spark, job_conf, *args).as_dict()
    assert first["details"]["strategy"] == "full" and "no snapshot yet" in first["details"]["strategy_reason"]
    assert attributes(table_items(ddb, new_table)) == model_of(rows)

    # 1% churn and then some: 12 leave, 12 arrive, 6 change their title
    changed = rows[12:18]
    arrived = [(f"N{i:04d}", f"new {i}", i) for i in range(12)]
    rows = [(k, f"{t} v2", p) for k, t, p in changed] + rows[18:] + arrived
    set_source(pg, "src_delta", rows)
    code, output, second = run_job("sync", job_conf, *args)
    assert code == 0, output
    counts, details = second["counts"], second["details"]
    assert details["strategy"] == "delta", details["strategy_reason"]
    assert (counts["puts_new"], counts["puts_changed"], counts["puts_refresh"]) == (12, 6, 0)
    assert (counts["unchanged"], counts["stale"], counts["deleted"], counts["written"]) == (382, 12, 12, 18)
    assert details["consumed_rcu"] == 0 and "scan" not in second["durations_s"]  # no Scan in a delta run
    assert details["cost"]["planned"]["write_units"] == 30
    assert details["cost"]["full_run"]["write_units"] == 400 + 12 and details["cost"]["full_run"]["read_units"] > 0
    assert second["metrics"]["ItemsUnchanged"] == 382 and second["metrics"]["RunCostUSD"] > 0
    items = table_items(ddb, new_table)
    assert attributes(items) == model_of(rows)
    written_by = {key: item["run_id"]["S"] for key, item in items.items()}  # "last written by"
    put_keys = {k for k, _, _ in changed + arrived}
    assert {written_by[k] for k in put_keys} == {second["run_id"]}
    assert {written_by[k] for k in set(items) - put_keys} == {first["run_id"]}

    # the record ages: 7 keys' TTL now ends within the hour, so the next delta run refreshes them
    pointer = json.loads((snapshot_root(job_conf) / "_LATEST.json").read_text())
    aging = sorted(set(items) - put_keys)[:7]
    soon = int(time.time()) + 3600
    for part in Path(pointer["path"]).glob("*.parquet"):
        record = pq.read_table(part)
        expires = [soon if key in aging else value for key, value in
                   zip(record.column("product_id").to_pylist(), record.column("_expires_at").to_pylist())]
        pq.write_table(record.set_column(record.schema.get_field_index("_expires_at"), "_expires_at",
                                         pa.array(expires, pa.int64())), part)
        part.with_name(f".{part.name}.crc").unlink(missing_ok=True)  # Hadoop's checksum of the old bytes
    code, output, third = run_job("sync", job_conf, *args)
    assert code == 0, output
    assert third["details"]["strategy"] == "delta", third["details"]["strategy_reason"]
    assert (third["counts"]["puts_refresh"], third["counts"]["puts_new"], third["counts"]["written"]) == (7, 0, 7)
    items = table_items(ddb, new_table)
    assert {k for k, item in items.items() if item["run_id"]["S"] == third["run_id"]} == set(aging)
    assert all(int(items[k]["expires_at"]["N"]) > soon + 9 * 86400 for k in aging)

    # a new attribute column shapes every item anew: the next run is a full one
    fourth = run_here(spark, job_conf, *args[:4], "--set", "source.query=select product_id, title, price from src_delta",
                      "--set", 'source.attribute_columns=["title", "price"]', *args[8:]).as_dict()
    assert fourth["details"]["strategy"] == "full" and "attribute_columns" in fourth["details"]["strategy_reason"]
    assert fourth["counts"]["written"] == len(rows)
    assert attributes(table_items(ddb, new_table), ("title", "price")) == model_of(rows, ("title", "price"))


def test_drift_is_repaired_by_the_periodic_verification_and_by_full(spark, pg, ddb, new_table, job_conf):
    rows = [(f"V{i:04d}", f"t{i}", i) for i in range(150)]
    set_source(pg, "src_drift", rows)
    args = with_set(f"dynamodb.table={new_table}", "dynamodb.mode=mirror", "source.attribute_columns=title",
                    "source.query=select product_id, title from src_drift",
                    "dynamodb.verify_every_runs=2")  # a full run, a delta run, a full run, ...
    assert run_here(spark, job_conf, *args).details["strategy"] == "full"

    def drift():  # behind idstore's back: 3 keys deleted, 4 foreign keys added
        for key in ("V0001", "V0002", "V0003"):
            ddb.delete_item(TableName=new_table, Key={"product_id": {"S": key}})
        for key in ("X1", "X2", "X3", "X4"):
            ddb.put_item(TableName=new_table, Item={"product_id": {"S": key}, "title": {"S": "foreign"}})

    drift()
    delta_run = run_here(spark, job_conf, *args)
    assert delta_run.details["strategy"] == "delta" and delta_run.counts["written"] == 0
    assert len(table_items(ddb, new_table)) == 150 - 3 + 4  # a delta run trusts the record: the drift stays

    verifying = run_here(spark, job_conf, *args)  # the 2nd run since the full one
    assert verifying.details["strategy"] == "full"
    assert "periodic verification" in verifying.details["strategy_reason"]
    assert attributes(table_items(ddb, new_table)) == model_of(rows)  # repaired both ways
    assert verifying.counts["deleted"] == 4

    drift()
    forced = run_here(spark, job_conf, *args, full=True)
    assert forced.details["strategy_reason"] == "--full on the command line"
    assert attributes(table_items(ddb, new_table)) == model_of(rows)


def test_a_damaged_or_missing_record_makes_a_full_run_never_a_wrong_delta(spark, pg, ddb, new_table, job_conf):
    rows = [(f"W{i:04d}", f"t{i}", i) for i in range(120)]
    set_source(pg, "src_damaged", rows)
    args = with_set(f"dynamodb.table={new_table}", "dynamodb.mode=upsert", "source.attribute_columns=title",
                    "source.query=select product_id, title from src_damaged", "source.partitions=2")
    run_here(spark, job_conf, *args)
    pointer_path = snapshot_root(job_conf) / "_LATEST.json"
    pointer = json.loads(pointer_path.read_text())
    # the record loses one of its files (and the table loses the keys it named)
    first_part = sorted(Path(pointer["path"]).glob("*.parquet"))[0]
    for key in pq.read_table(first_part).column("product_id").to_pylist():
        ddb.delete_item(TableName=new_table, Key={"product_id": {"S": key}})
    first_part.unlink()
    report = run_here(spark, job_conf, *args)
    assert report.details["strategy"] == "full" and "incomplete" in report.details["strategy_reason"]
    assert attributes(table_items(ddb, new_table)) == model_of(rows)

    pointer_path.write_text("{ not json")
    report = run_here(spark, job_conf, *args)
    assert report.details["strategy"] == "full" and "cannot be read" in report.details["strategy_reason"]
    assert json.loads(pointer_path.read_text())["run_id"] == report.run_id  # a good record again

    # upsert: ids that leave the set stay in the table, and a delta run writes only the newcomers
    rows = rows[10:] + [(f"W9{i:03d}", "late", i) for i in range(5)]
    set_source(pg, "src_damaged", rows)
    report = run_here(spark, job_conf, *args)
    assert report.details["strategy"] == "delta" and report.counts["written"] == 5
    assert set(table_items(ddb, new_table)) == {row[0] for row in rows} | {f"W{i:04d}" for i in range(10)}


def test_a_delta_run_killed_mid_write_converges_when_run_again(spark, pg, ddb, new_table, job_conf, tmp_path):
    rows = [(f"K{i:05d}", "old", i) for i in range(100)]
    set_source(pg, "src_delta_kill", rows)
    args = ["--set", f"dynamodb.table={new_table}", "--set", "dynamodb.mode=mirror",
            "--set", "source.query=select product_id, title from src_delta_kill",
            "--set", "source.attribute_columns=title", "--set", "dynamodb.max_delete_fraction=0.5"]
    run_here(spark, job_conf, *args)  # the record the killed delta run starts from
    rows = [(f"K{i:05d}", "new", i) for i in range(20, 2500)]  # 20 leave, 80 change, 2,400 arrive
    set_source(pg, "src_delta_kill", rows)
    before = json.loads((snapshot_root(job_conf) / "_LATEST.json").read_text())["run_id"]

    # a short lease for the run that is killed only: the run after it keeps the default, which a
    # loaded machine's pause cannot outlast
    proc = start_job("sync", job_conf, *args, "--set", "dynamodb.write_rate=100", "--set", "dynamodb.lock_lease_s=4",
                     log_path=tmp_path / "killed.log")
    try:
        deadline = time.monotonic() + 240
        while sum(1 for item in scan_items(ddb, new_table) if item["title"]["S"] == "new") < 200:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "killed.log").read_text()
            time.sleep(0.5)
    finally:
        kill_job(proc)
    assert json.loads((snapshot_root(job_conf) / "_LATEST.json").read_text())["run_id"] == before
    lock = json.loads((snapshot_root(job_conf) / "_locks" / f"{new_table}.json").read_text())
    while datetime.fromisoformat(lock["expires_at"]) > datetime.now(timezone.utc):  # the dead run's lease
        time.sleep(0.5)

    code, output, report = run_job("sync", job_conf, *args)
    assert code == 0, output
    assert report["details"]["strategy"] == "delta"  # against the record the killed run left in place
    assert (report["counts"]["puts_new"], report["counts"]["puts_changed"], report["counts"]["stale"]) == (2400, 80, 20)
    assert attributes(table_items(ddb, new_table)) == model_of(rows)


def test_a_second_run_on_the_same_table_is_refused_while_the_first_completes(pg, ddb, new_table, job_conf, tmp_path):
    rows = [(f"L{i:05d}", "t", i) for i in range(1500)]
    set_source(pg, "src_overlap", rows)
    args = ["--set", f"dynamodb.table={new_table}", "--set", "source.query=select product_id, title from src_overlap",
            "--set", "source.attribute_columns=title"]
    log_path = tmp_path / "first.log"
    first = start_job("sync", job_conf, *args, "--run-id", "first-run", "--set", "dynamodb.write_rate=150",
                      log_path=log_path)
    lock_path = snapshot_root(job_conf) / "_locks" / f"{new_table}.json"
    try:
        deadline = time.monotonic() + 120
        while not lock_path.exists():
            assert first.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        code, output, report = run_job("sync", job_conf, *args)
        assert code == 3, output
        holder = json.loads(lock_path.read_text())
        assert "first-run" in output and holder["host"] in output and holder["started_at"] in output
        assert report["outcome"] == "refused"
        assert first.wait(timeout=240) == 0, log_path.read_text()
    finally:
        if first.poll() is None:
            kill_job(first)
    assert attributes(table_items(ddb, new_table)) == model_of(rows)
    assert not lock_path.exists()  # released at the end
