"""filter through spark-submit on a generated archive, checked against a plain-Python filter."""
from datetime import date

import pyarrow.parquet as pq
import pytest

from idstore.testing.datagen import read_event_archive, write_event_archive

from .conftest import create_source_table, run_job

pytestmark = pytest.mark.integration


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
    wanted = set(ids)
    expected = sorted(
        (e["id"], e["time"][:10]) for e in read_event_archive(events_root)
        if e["detail"]["productId"] in wanted and "2024-05-02" <= e["time"][:10] <= "2024-05-03"
    )
    table = pq.read_table(str(job_conf.parent / "data" / "filtered"), columns=["id", "dt"])
    got = sorted(zip(table.column("id").to_pylist(), (str(d) for d in table.column("dt").to_pylist())))
    assert got == expected
    assert report["counts"]["matched"] == len(expected)
    assert report["details"]["days"] == ["2024-05-02", "2024-05-03"]
