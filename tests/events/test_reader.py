"""Reading an archive: config checks, listing only what is asked, hidden files left out."""
from datetime import date

import pytest

from idstore.config import ConfigError, load_config
from idstore.events.output import apply_hadoop_options, sse_kms_options
from idstore.events.reader import archive_bytes, days_in_range, event_schema, list_files, missing_days


def _events(*overrides):
    return load_config(None, list(overrides)).events


def test_schema_and_id_field_are_checked_against_each_other(spark):  # DDL parsing needs a session
    assert event_schema(_events()).fieldNames()[0] == "id"
    with pytest.raises(ConfigError, match="events.schema"):
        event_schema(_events("events.schema=id STRING, detail STRUCT<"))
    with pytest.raises(ConfigError, match="events.id_field"):
        event_schema(_events("events.id_field=detail.asin"))
    with pytest.raises(ConfigError, match="not a scalar"):
        event_schema(_events("events.id_field=detail"))
    assert event_schema(_events("events.schema=id STRING, productId STRING", "events.id_field=productId"))


def test_days_in_range_keeps_both_ends_and_skips_non_dates():
    days = ["2024-05-01", "2024-05-02", "2024-05-03", "latest", "2024-05-04"]
    assert days_in_range(days, date(2024, 5, 2), date(2024, 5, 3)) == ["2024-05-02", "2024-05-03"]
    assert days_in_range(days, None, date(2024, 5, 1)) == ["2024-05-01"]
    assert days_in_range(days, None, None) == ["2024-05-01", "2024-05-02", "2024-05-03", "2024-05-04"]


@pytest.mark.parametrize("start, end, missing", [
    (None, None, []),  # no window: what is there is read, nothing is missing
    (date(2024, 5, 1), date(2024, 5, 6), ["2024-05-03", "2024-05-06"]),
    (date(2024, 4, 30), None, ["2024-04-30", "2024-05-03"]),  # to the archive's last day
    (None, date(2024, 5, 2), []),  # from the archive's first day
    (date(2024, 6, 1), date(2024, 6, 2), ["2024-06-01", "2024-06-02"]),
])
def test_missing_days_are_the_days_of_the_window_without_a_folder(start, end, missing):
    present = ["2024-05-01", "2024-05-02", "2024-05-04", "2024-05-05", "not-a-date"]
    assert missing_days(present, start, end) == missing
    assert missing_days([], date(2024, 6, 1), None) == ["2024-06-01"]


def test_list_files_leaves_out_what_spark_would_not_read(spark, tmp_path):
    day = tmp_path / "dt=2024-05-01"
    (day / "_temporary" / "0").mkdir(parents=True)
    for name in ("part-0.json.gz", "part-1.json", "_SUCCESS", ".part-0.json.gz.crc", "_temporary/0/part-9.json"):
        (day / name).write_bytes(b"xy")
    found = list_files(spark, [str(day), str(tmp_path / "dt=2024-05-09")])
    assert found == [(f"file:{day}/part-0.json.gz", 2), (f"file:{day}/part-1.json", 2)]


def test_archive_bytes_are_the_sizes_of_the_files_of_the_days_asked_for(spark, tmp_path):
    sizes = {"2024-05-01": [10, 2000], "2024-05-02": [333], "2024-05-03": [7000]}
    for day, lengths in sizes.items():
        (tmp_path / f"dt={day}").mkdir()
        for i, length in enumerate(lengths):
            (tmp_path / f"dt={day}" / f"part-{i}.json").write_bytes(b"{}\n" * (length // 3) + b" " * (length % 3))
        (tmp_path / f"dt={day}" / "_SUCCESS").write_bytes(b"not read")
    cfg = load_config(None, [f"events.path={tmp_path}"]).events
    assert archive_bytes(spark, cfg, ["2024-05-01", "2024-05-02"]) == 10 + 2000 + 333


def test_sse_kms_settings_cover_emrfs_and_s3a_for_the_output_buckets_only(spark):
    cfg = load_config(None, [
        "output.path=s3://out-bucket/filtered", "output.quarantine_path=s3://q-bucket/quarantine",
        "output.sse_kms_key_id=arn:aws:kms:us-east-1:123456789012:key/abc",
    ]).output
    options = sse_kms_options(cfg)
    key = "arn:aws:kms:us-east-1:123456789012:key/abc"
    for bucket in ("out-bucket", "q-bucket"):
        assert options[f"fs.s3.bucket.{bucket}.enableServerSideEncryption"] == "true"
        assert options[f"fs.s3.bucket.{bucket}.serverSideEncryption.kms.keyId"] == key
        assert options[f"fs.s3a.bucket.{bucket}.encryption.algorithm"] == "SSE-KMS"
        assert options[f"fs.s3a.bucket.{bucket}.encryption.key"] == key
    assert len(options) == 8
    assert sse_kms_options(load_config(None, ["output.path=s3://b/x"]).output) == {}
    local = load_config(None, ["output.path=/tmp/out", "output.sse_kms_key_id=k"]).output
    assert sse_kms_options(local) == {}

    apply_hadoop_options(spark, options)  # session-wide: every Hadoop conf Spark builds carries them
    try:
        hadoop = spark._jsparkSession.sessionState().newHadoopConf()
        assert hadoop.get("fs.s3.bucket.out-bucket.serverSideEncryption.kms.keyId") == key
    finally:
        for name in options:
            spark.conf.unset(name)
