"""filter through spark-submit on a generated archive, checked against a plain-Python filter."""
from datetime import date

import pyarrow.parquet as pq
import pytest

from idstore_tools.testing.datagen import read_event_archive, write_event_archive

from .conftest import create_source_table, run_job

pytestmark = pytest.mark.integration


def _output(job_conf):
    table = pq.read_table(str(job_conf.parent / "data" / "filtered"), columns=["id", "dt"])
    return sorted(zip(table.column("id").to_pylist(), (str(d) for d in table.column("dt").to_pylist())))


def _expected(events_root, wanted, first="0000-00-00", last="9999-99-99"):
    return sorted(
        (e["id"], e["time"][:10]) for e in read_event_archive(events_root)
        if e["detail"]["productId"] in wanted and first <= e["time"][:10] <= last
    )


def test_filter_keeps_exactly_the_events_of_the_id_set(pg, job_conf):
    ids = [f"P{i:06d}" for i in range(400)]
    others = [f"O{i:06d}" for i in range(400)]
    create_source_table(pg, "src_filter", [(v, None, None, None) for v in ids])
    events_root = job_conf.parent / "data" / "failure-events"
    write_event_archive(events_root, date(2024, 5, 1), 4, 20000, ids, others, 0.05, seed=3, files_per_day=2)
    code, output, report = run_job(
        "filter", job_conf, "--ids", "source",
        "--set", "source.query=select product_id from src_filter",
        "--from", "2024-05-02", "--to", "2024-05-03",
    )
    assert code == 0, output
    expected = _expected(events_root, set(ids), "2024-05-02", "2024-05-03")
    assert _output(job_conf) == expected
    assert report["counts"]["matched"] == len(expected)
    assert report["counts"]["events_read"] == 10000
    assert report["details"]["days"] == ["2024-05-02", "2024-05-03"]
    assert report["details"]["per_day"]["2024-05-02"]["read"] == 5000
    assert "broadcast left-semi join" in report["details"]["join"]
    assert report["details"]["candidate_test"] == "jvm"  # idstore's jar, added by the run itself
    assert report["details"]["json_parser"] == "jvm"
    # the human summary, as the step's log shows it
    assert "idstore filter run" in output and "SUCCEEDED" in output and f"matched: {len(expected):,}" in output


def test_filter_with_the_id_set_from_a_dynamodb_scan(job_conf, ddb, new_table):
    ids = [f"D{i:06d}" for i in range(1500)]
    others = [f"X{i:06d}" for i in range(500)]
    for start in range(0, len(ids), 25):
        ddb.batch_write_item(RequestItems={new_table: [
            {"PutRequest": {"Item": {"product_id": {"S": v}}}} for v in ids[start:start + 25]
        ]})
    events_root = job_conf.parent / "data" / "failure-events"
    write_event_archive(events_root, date(2024, 6, 1), 2, 8000, ids, others, 0.4, seed=4, files_per_day=2)
    code, output, report = run_job("filter", job_conf, "--ids", "dynamodb", "--set", f"dynamodb.table={new_table}")
    assert code == 0, output
    expected = _expected(events_root, set(ids))
    assert _output(job_conf) == expected
    assert report["counts"]["ids"] == len(ids)
    assert report["details"]["ids_from"] == "dynamodb"
    assert report["counts"]["matched"] == len(expected)
