"""A Parquet archive's footers: rows per file, and no file with a missing id ever cleared.

Checked against pyarrow's reading of the same files; then through the job, whose Parquet
pass routes nothing and relies on them for its missing-id counts and quarantine.
"""
import json
from pathlib import Path
from typing import Dict, List, Optional

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from idstore.errors import RunFailed
from idstore.events.join import choose_join
from idstore.events.passes import PassInputs, files_with_missing_ids, parquet_rows_by_day
from idstore.jvm import parquet_footers

from .conftest import output_events

DETAIL = pa.struct([("productId", pa.string()), ("fcId", pa.string())])


def _write(path: Path, ids: List[Optional[str]], **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({
        "id": [f"{path.stem}-{i}" for i in range(len(ids))],
        "detail": pa.array([{"productId": p, "fcId": "SEA8"} for p in ids], DETAIL),
    })
    pq.write_table(table, str(path), **options)
    return path


def _missing(value: Optional[str]) -> bool:
    """The job's missing id: null, or blank as Spark's trim() sees it (only spaces)."""
    return value is None or value.strip(" ") == ""


def _archive(root: Path) -> Dict[str, List[Optional[str]]]:
    """{file name: ids} over two days, one awkward case a file."""
    day1, day2 = root / "dt=2024-01-01", root / "dt=2024-01-02"
    cases = {
        "clean": (day1, [f"B0CLEAN{i:03d}" for i in range(300)], {"row_group_size": 100}),
        "null": (day1, ["B0N1", None, "B0N2"], {}),
        "empty": (day1, ["B0E1", ""], {}),
        "spaces": (day2, ["   ", "B0S1"], {}),
        "tab": (day2, ["\tB0T1", "B0T2"], {}),  # below "!" but not blank: may be flagged, holds none
        "late": (day2, [f"B0L{i:03d}" for i in range(200)] + [None], {"row_group_size": 100}),
        "nostats": (day2, ["B0X1", "B0X2"], {"write_statistics": False}),
    }
    ids = {}
    for name, (folder, values, options) in cases.items():
        _write(folder / f"{name}.parquet", values, **options)
        ids[name] = values
    # an id-less schema: every id reads as null
    fc_only = pa.array([{"fcId": "A"}] * 2, pa.struct([("fcId", pa.string())]))
    pq.write_table(pa.table({"id": ["n1", "n2"], "detail": fc_only}), str(day2 / "noid.parquet"))
    ids["noid"] = [None, None]
    # what Spark's listing skips, and an empty file, which holds no rows
    _write(day1 / "_temporary" / "0" / "part-0.parquet", [None])
    (day1 / "_SUCCESS").write_bytes(b"")
    (day1 / ".clean.parquet.crc").write_bytes(b"x")
    (day2 / "zero.parquet").write_bytes(b"")
    return ids


def test_footers_count_every_files_rows_and_flag_every_file_that_holds_a_missing_id(spark, tmp_path):
    ids = _archive(tmp_path / "events")
    footers = parquet_footers(spark, [str(tmp_path / "events" / d) for d in ("dt=2024-01-01", "dt=2024-01-02")],
                              "detail.productId")
    assert footers is not None, "idstore's jar is missing: make setup builds it"
    by_name = {Path(f.path).stem: f for f in footers}

    assert sorted(by_name) == sorted(ids)  # hidden names and the empty file are not data files
    for name, values in ids.items():
        (path,) = (tmp_path / "events").glob(f"dt=*/{name}.parquet")
        assert by_name[name].rows == pq.ParquetFile(str(path)).metadata.num_rows == len(values)
        if any(_missing(v) for v in values):
            assert by_name[name].may_miss_id, name
    # files the statistics clear: every id starts above the space, and no nulls
    assert not by_name["clean"].may_miss_id
    assert by_name["nostats"].may_miss_id  # nothing to clear it with


def test_footers_match_the_id_column_without_regard_to_case_as_spark_does(spark, tmp_path):
    path = tmp_path / "dt=2024-01-01" / "part.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"Detail": pa.array([{"ProductID": "B0A"}], pa.struct([("ProductID", pa.string())]))}),
                   str(path))
    (footer,) = parquet_footers(spark, [str(path)], "detail.productId")
    assert (footer.rows, footer.may_miss_id) == (1, False)


def test_without_the_jar_spark_jobs_give_exact_counts_and_the_files_that_hold_missing_ids(spark, tmp_path, job):
    ids = _archive(job.events)
    config = job.config("events.format=parquet", "events.schema=id STRING, detail STRUCT<productId: STRING>")
    days = ["2024-01-01", "2024-01-02"]

    inputs = PassInputs(spark, config, tuple(days), spark.createDataFrame([], "product_id string"), choose_join(0, 1))
    rows = parquet_rows_by_day(inputs, None)
    missing = files_with_missing_ids(inputs, None)

    day_of = {p.stem: p.parent.name[3:] for p in job.events.glob("dt=*/*.parquet") if p.stat().st_size}
    assert rows == {d: sum(len(v) for n, v in ids.items() if day_of[n] == d) for d in days}
    assert sorted(Path(p).stem for p in missing) == sorted(n for n, v in ids.items() if any(_missing(x) for x in v))


def test_parquet_job_keeps_exactly_the_events_in_the_set_and_counts_and_quarantines_missing_ids(spark, job):
    wanted = [f"B0KEEP{i:03d}" for i in range(40)]
    others = [f"B0DROP{i:03d}" for i in range(40)]
    days = ["2024-03-01", "2024-03-02"]
    odd = [None, "", "   ", "\tB0KEEP000", " B0KEEP001"]  # 3 missing; 2 are ids no set holds
    rows = [(f"e{i}", (wanted + others + odd)[i % 85], days[i % 2]) for i in range(850)]
    frame = spark.createDataFrame([(e, {"productId": p, "fcId": "SEA8"}, d) for e, p, d in rows],
                                  "id string, detail struct<productId: string, fcId: string>, dt string")
    frame.write.partitionBy("dt").parquet(str(job.events))
    job.snapshot(wanted + ["   "])  # a set from elsewhere may hold a blank id: it keeps nothing

    report = job.run("events.format=parquet",
                     "events.schema=id STRING, detail STRUCT<productId: STRING, fcId: STRING>")

    assert output_events(job.output) == {(e, d) for e, p, d in rows if p in set(wanted)}
    per_day = report.details["per_day"]
    assert {d: v["read"] for d, v in per_day.items()} == {d: sum(1 for r in rows if r[2] == d) for d in days}
    assert {d: v["missing_id"] for d, v in per_day.items()} == {
        d: sum(1 for _, p, day in rows if day == d and _missing(p)) for d in days
    }
    assert report.counts["malformed"] == 0
    quarantined = [json.loads(line) for path in job.quarantine.rglob("*.json")
                   for line in path.read_text(encoding="utf-8").splitlines() if line]
    assert sorted((q["reason"], q["dt"], json.loads(q["raw"])["id"]) for q in quarantined) == sorted(
        ("missing_id", d, e) for e, p, d in rows if _missing(p)
    )
    assert report.details["quarantine"]


def test_a_clean_parquet_archive_reads_no_file_twice_and_reports_no_quarantine(spark, job):
    day = "2024-03-03"
    frame = spark.createDataFrame([(f"e{i}", {"productId": f"B0C{i:04d}"}, day) for i in range(500)],
                                  "id string, detail struct<productId: string>, dt string")
    frame.write.partitionBy("dt").parquet(str(job.events))
    job.snapshot([f"B0C{i:04d}" for i in range(0, 500, 5)])

    report = job.run("events.format=parquet", "events.schema=id STRING, detail STRUCT<productId: STRING>")

    assert report.counts["matched"] == 100 and report.counts["missing_id"] == 0
    assert "quarantine" not in report.details and not job.quarantine.exists()


def test_a_damaged_parquet_file_fails_the_run_by_name_and_is_skipped_when_asked(spark, job):
    day = "2024-03-04"
    good = _write(job.events / f"dt={day}" / "part-0.parquet", [f"B0G{i:03d}" for i in range(100)])
    victim = _write(job.events / f"dt={day}" / "part-1.parquet", [f"B0G{i:03d}" for i in range(100)])
    victim.write_bytes(victim.read_bytes()[:-30])  # the footer's end and the magic number are gone
    job.snapshot([f"B0G{i:03d}" for i in range(0, 100, 4)])
    overrides = ("events.format=parquet", "events.schema=id STRING, detail STRUCT<productId: STRING>")

    with pytest.raises(RunFailed, match=r"part-1\.parquet.*events\.skip_corrupt_files"):
        job.run(*overrides)
    report = job.run(*overrides, "events.skip_corrupt_files=true", run_id="run-2")

    assert output_events(job.output) == {(f"{good.stem}-{i}", day) for i in range(0, 100, 4)}
    assert report.counts["events_read"] == 100 and report.counts["corrupt_files_skipped"] == 1
