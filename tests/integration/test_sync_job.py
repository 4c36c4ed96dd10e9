"""sync through spark-submit against PostgreSQL and moto, checked against plain Python."""
import pytest

from idstore.testing.readback import scan_items

from .conftest import create_source_table, run_job

pytestmark = pytest.mark.integration


def reference_valid_ids(values):
    """What should reach the table: non-null, non-blank, at most 2048 UTF-8 bytes, once each."""
    return {
        v for v in values
        if v is not None and v.strip(" \t\n\r\f\v") != "" and len(v.encode("utf-8")) <= 2048
    }


def test_sync_writes_exactly_the_valid_id_set(pg, ddb, new_table, job_conf):
    good = [f"B{i:08d}" for i in range(3000)]
    bad = [None, "", "   ", "x" * 2049]
    dupes = good[:25]
    values = good + bad + dupes
    create_source_table(pg, "src_basic", [(v, f"title {i}", i, i % 2 == 0) for i, v in enumerate(values)])
    code, output, report = run_job(
        "sync", job_conf,
        "--set", f"dynamodb.table={new_table}",
        "--set", "source.query=select product_id from src_basic",
        "--set", "validation.max_rejected_fraction=0.5",
    )
    assert code == 0, output
    in_table = {item["product_id"]["S"] for item in scan_items(ddb, new_table)}
    assert in_table == reference_valid_ids(values)
    counts = report["counts"]
    assert counts["source_rows"] == len(values)
    assert counts["rejected"] == len(bad)
    assert counts["duplicates"] == len(dupes)
    assert counts["written"] == len(good)
    assert report["details"]["rejected_by_reason"] == {"null": 1, "empty": 1, "blank": 1, "key_too_long": 1}
    assert "SUCCEEDED" in output


def test_sync_refuses_when_too_many_ids_are_rejected(pg, ddb, new_table, job_conf):
    create_source_table(pg, "src_mostly_bad", [(v, None, None, None) for v in ["a", "", "", None]])
    code, output, report = run_job(
        "sync", job_conf, "--set", f"dynamodb.table={new_table}",
        "--set", "source.query=select product_id from src_mostly_bad",
    )
    assert code == 3, output
    assert "max_rejected_fraction" in report["error"]
    assert scan_items(ddb, new_table) == []


def test_a_bad_config_key_exits_2_and_names_it(job_conf):
    code, output, _ = run_job("sync", job_conf, "--set", "dynamodb.mode=sideways")
    assert code == 2
    assert "dynamodb.mode" in output
