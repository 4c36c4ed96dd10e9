"""The sync's stages that need no stack: item stamps, attribute types, the mirror guard, the
Scan's pace, the report's config, the snapshot pointer and a config error's exit code."""
import calendar
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pyarrow.parquet as pq
import pytest
from pyspark.sql import types as T

from idstore.config import ConfigError, load_config
from idstore.dynamodb.rate import scan_read_rate
from idstore.idset import with_attribute_types
from idstore.pipeline.entry import run_job as run_job_in_process
from idstore.pipeline.report import redacted_config
from idstore.pipeline.sync_plan import Stamp, mirror_refusal
from idstore.snapshot import POINTER, RecordSize, read_latest_snapshot, read_pointer, write_record


def test_item_constants_stamp_the_run_and_the_ttl_in_epoch_seconds():
    config = load_config(None, ["dynamodb.ttl_attribute=expires_at", "dynamodb.ttl_days=30"])
    now = datetime(2024, 2, 28, 23, 30, 5, tzinfo=timezone.utc)
    constants = Stamp("run-1", now).item_constants(config.dynamodb)
    expected_ttl = calendar.timegm((2024, 3, 29, 23, 30, 5))
    assert constants == {"synced_at": "2024-02-28T23:30:05Z", "run_id": "run-1", "expires_at": expected_ttl}
    assert Stamp("r", now).item_constants(load_config(None, []).dynamodb) == {
        "synced_at": "2024-02-28T23:30:05Z", "run_id": "r"}


@pytest.mark.parametrize("overrides, key", [
    (["dynamodb.ttl_attribute=expires_at"], "ttl_days"),
    (["dynamodb.ttl_days=3"], "ttl_attribute"),
    (["dynamodb.ttl_attribute=run_id", "dynamodb.ttl_days=3"], "ttl_attribute"),
    (["source.attribute_columns=title,run_id"], "attribute_columns"),
    (["source.attribute_columns=product_id"], "attribute_columns"),
    (["dynamodb.ttl_attribute=expires_at", "dynamodb.ttl_days=3", "source.attribute_columns=expires_at"],
     "attribute_columns"),
])
def test_the_config_refuses_at_load_attributes_that_would_overwrite_or_never_expire(overrides, key):
    with pytest.raises(ConfigError, match=key):
        load_config(None, overrides)


def test_attribute_columns_become_strings_numbers_and_booleans(spark):
    schema = "id string, title string, qty int, price decimal(38,18), score double, active boolean, day date"
    df = spark.createDataFrame(
        [("a", "t", 3, Decimal("12.5"), 0.5, True, datetime(2024, 1, 2).date())], schema)
    out = df.transform(with_attribute_types(["title", "qty", "price", "score", "active", "day"]))
    types = dict(out.dtypes)
    assert types["price"] == "decimal(38,18)" and types["qty"] == "int" and types["active"] == "boolean"
    row = out.collect()[0]
    assert (row.title, row.qty, row.price, row.score, row.active, row.day) == (
        "t", 3, Decimal("12.5"), 0.5, True, "2024-01-02")


def test_attribute_columns_without_a_dynamodb_type_are_refused_by_name(spark):
    df = spark.createDataFrame([("a", bytearray(b"x"))], T.StructType([
        T.StructField("id", T.StringType()), T.StructField("blob", T.BinaryType())]))
    with pytest.raises(ConfigError, match="'blob' is binary"):
        df.transform(with_attribute_types(["blob"]))


@pytest.mark.parametrize("source_ids, table_keys, deletes, fraction, refused", [
    (0, 10, 10, 0.1, "no valid ids"),
    (0, 0, 0, 0.1, None),  # nothing to lose
    (100, 100, 10, 0.1, None),  # exactly at the limit
    (100, 100, 11, 0.1, "11 of the 100 keys"),
    (5, 0, 0, 0.0, None),
    (90, 100, 1, 0.0, "1 of the 100 keys"),
])
def test_the_mirror_guard_names_how_many_and_why(source_ids, table_keys, deletes, fraction, refused):
    reason = mirror_refusal("T", source_ids, table_keys, deletes, fraction)
    if refused is None:
        assert reason is None
    else:
        assert refused in reason and "--force" in reason


def test_the_scan_is_paced_like_the_writes():
    cfg = load_config(None, ["dynamodb.capacity_fraction=0.25"]).dynamodb
    provisioned = {"ProvisionedThroughput": {"ReadCapacityUnits": 400, "WriteCapacityUnits": 5}}
    assert scan_read_rate(cfg, provisioned) == 100.0
    assert scan_read_rate(cfg, {"BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"}}) == 0.0
    explicit = load_config(None, ["dynamodb.read_rate=42"]).dynamodb
    assert scan_read_rate(explicit, provisioned) == 42.0


def test_report_config_masks_secret_looking_spark_settings():
    from idstore.redaction import REDACTED

    config = load_config(None, ["spark.spark.hadoop.fs.s3a.secret.key=abc", "spark.spark.executor.cores=2"])
    spark_conf = redacted_config(config)["spark"]
    assert spark_conf == {"spark.hadoop.fs.s3a.secret.key": REDACTED, "spark.executor.cores": "2"}


def test_the_snapshot_pointer_names_the_latest_complete_record(spark, tmp_path):
    config = load_config(None, [f"snapshot.path={tmp_path / 'snaps'}"])
    columns = "product_id string, _digest string, _written_at long, _written_by string, _expires_at long"
    first = spark.createDataFrame([("a", "", 1, "r1", None), ("b", "", 1, "r1", None)], columns)
    second = spark.createDataFrame([("c", "", 2, "r2", None)], columns)
    now = datetime(2026, 5, 1, tzinfo=timezone.utc)
    assert write_record(first, config, "r1", now, RecordSize(2, 2), delta_of=None) == str(tmp_path / "snaps" /
                                                                                           "run_id=r1")
    pointer = read_pointer(config)
    write_record(second, config, "r2", now + timedelta(days=1), RecordSize(1, 1), delta_of=pointer)
    data = json.loads((tmp_path / "snaps" / POINTER).read_text())
    assert data["run_id"] == "r2" and data["path"].endswith("run_id=r2") and data["keys"] == 1
    assert data["verified_at"] == now.isoformat() and data["runs_since_verify"] == 1  # r2 was a delta run
    assert data["fingerprint"]["table"] == config.dynamodb.table and data["format_version"] == 2
    ids, latest = read_latest_snapshot(spark, config)
    assert sorted(r.product_id for r in ids.collect()) == ["c"] and (latest.keys, latest.key_bytes) == (1, 1)
    assert data["id_type"] == "string"  # as `columns` declares it: the filter reads the record without inferring
    assert sorted(pq.read_table(tmp_path / "snaps" / "run_id=r1").column("product_id").to_pylist()) == ["a", "b"]


def test_a_bad_config_key_exits_2_and_names_it(tmp_path, capsys):
    conf = tmp_path / "job.toml"
    conf.write_text('[dynamodb]\nmode = "sideways"\n')
    assert run_job_in_process("sync", ["--conf", str(conf)]) == 2
    assert "dynamodb.mode" in capsys.readouterr().err
