"""run_filter in this process on archives written byte by byte, against a plain-Python filter."""
import json
import shutil
from datetime import date
from pathlib import Path

import pytest

from idstore.errors import InputNotReady, RunFailed
from idstore_tools.testing.datagen import program_ids, write_event_archive

from .conftest import (
    FLAT_SCHEMA,
    flat_event,
    nested_event,
    output_events,
    output_files,
    reference_filter,
    write_lines,
)

IDS = program_ids("FILTER", 300, seed=1)
OTHERS = program_ids("OTHERS", 300, seed=1)


def _quarantined(root: Path):
    rows = [json.loads(line) for path in root.rglob("*.json") for line in path.read_text().splitlines() if line]
    return sorted((r["reason"], r["dt"], r["raw"]) for r in rows), {r["source_file"] for r in rows}


def test_nested_ids_with_bad_lines_keep_exactly_the_reference_events(job):
    write_event_archive(job.events, date(2024, 5, 1), 3, 6000, IDS, OTHERS, 0.2, seed=7, files_per_day=2)
    bad = [
        '{"id": "bad-1", "detail": {"productId": "' + IDS[0],  # cut mid-line
        "not json at all",
        '{"id": "bad-2", "time": "2024-05-02T00:00:00Z", "detail": "a string where a struct belongs"}',
        nested_event("none-1", None, "2024-05-02"),
        nested_event("blank-1", "   ", "2024-05-02"),
        nested_event("good-1", IDS[1], "2024-05-02"),
    ]
    write_lines(job.events, "2024-05-02", "part-00009.json.gz", bad)
    job.snapshot(IDS)

    report = job.run()

    ref = reference_filter(job.events, set(IDS), "detail.productId")
    assert output_events(job.output) == ref.kept
    assert report.counts["events_read"] == sum(ref.read.values()) == 6006
    assert report.counts["matched"] == len(ref.kept)
    assert (report.counts["malformed"], report.counts["missing_id"]) == (3, 2)
    assert report.counts["ids"] == len(IDS)
    per_day = report.details["per_day"]
    assert {d: v["read"] for d, v in per_day.items()} == ref.read
    assert {d: v["matched"] for d, v in per_day.items()} == ref.matched
    assert per_day["2024-05-02"]["malformed"] == 3 and per_day["2024-05-02"]["missing_id"] == 2
    assert "broadcast" in report.details["join"]
    rows, sources = _quarantined(job.quarantine)
    assert [(reason, day) for reason, day, _ in rows] == sorted((r, d) for r, d, _ in ref.bad)
    assert {raw for reason, _, raw in rows if reason == "malformed"} == {
        line for reason, _, line in ref.bad if reason == "malformed"
    }
    assert all(s.endswith("dt=2024-05-02/part-00009.json.gz") for s in sources)
    written = list(job.output.glob("dt=*/*.parquet"))  # what is on disk, not what the report says
    assert report.counts["output_files"] == len(written) > 0
    assert report.counts["output_bytes"] == sum(p.stat().st_size for p in written)
    listed = output_files(job.output)
    assert {d: (v["output_files"], v["output_bytes"]) for d, v in per_day.items()} == {
        d: (len(listed.get(d, [])), sum(size for _, size, _ in listed.get(d, []))) for d in per_day
    }
    assert "counts_note" not in report.details  # no stage ran twice
    json.dumps(report.as_dict())  # the report is plain data



def _flat_archive(root: Path, days, per_day: int = 400):
    """Plain JSON lines with a top-level productId, two files a day, one id-less event a day."""
    for n, day in enumerate(days):
        for part in range(2):
            lines = [
                flat_event(f"{day}-{part}-{i}", (IDS if i % 3 == 0 else OTHERS)[(i * 7 + n) % 300], day)
                for i in range(per_day // 2)
            ]
            lines.append(flat_event(f"{day}-{part}-noid", None, day))
            write_lines(root, day, f"part-{part:05d}.json", lines)


def test_flat_ids_and_a_date_range_read_only_the_days_asked_for(job, spark):
    days = ["2024-06-01", "2024-06-02", "2024-06-03", "2024-06-04"]
    _flat_archive(job.events, days)
    # days outside the range hold a file that fails any read: listing only the range skips it
    (job.events / "dt=2024-06-01" / "part-00007.json.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    (job.events / "dt=not-a-date").mkdir()
    job.snapshot(IDS)

    report = job.run(f"events.schema={FLAT_SCHEMA}", "events.id_field=productId",
                     start=date(2024, 6, 2), end=date(2024, 6, 3))

    ref = reference_filter(job.events, set(IDS), "productId", days=days[1:3])
    assert output_events(job.output) == ref.kept and ref.kept
    assert report.details["days"] == days[1:3]
    assert sorted(output_files(job.output)) == days[1:3]
    assert report.counts["missing_id"] == ref.count("missing_id") == 4
    assert report.counts["malformed"] == 0
    assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") is None  # the job group is not left behind


def test_parquet_events_with_nested_ids(job, spark):
    days = ("2024-07-01", "2024-07-02")
    rows = [
        (f"p{i}", f"{days[i % 2]}T00:00:00Z", None if i % 50 == 0 else (IDS + OTHERS)[i % 600], days[i % 2])
        for i in range(1200)
    ]
    frame = spark.createDataFrame(
        [(e, t, {"productId": p, "fcId": "SEA8"}, d) for e, t, p, d in rows],
        "id string, time string, detail struct<productId: string, fcId: string>, dt string",
    )
    frame.write.partitionBy("dt").parquet(str(job.events))
    job.snapshot(IDS)

    report = job.run("events.format=parquet")

    wanted = set(IDS)
    expected = {(e, d) for e, _, p, d in rows if p in wanted}
    assert output_events(job.output) == expected and expected
    assert report.counts["events_read"] == 1200
    assert report.counts["missing_id"] == sum(1 for r in rows if r[2] is None) == 24
    assert report.counts["matched"] == len(expected)


def test_rerun_of_one_day_replaces_that_day_and_leaves_the_others_untouched(job):
    days = ["2024-08-01", "2024-08-02", "2024-08-03"]
    _flat_archive(job.events, days, per_day=600)
    flat = (f"events.schema={FLAT_SCHEMA}", "events.id_field=productId")
    job.snapshot(IDS)
    job.run(*flat)
    before = output_files(job.output)
    assert output_events(job.output) == reference_filter(job.events, set(IDS), "productId").kept

    smaller = IDS[:100]
    job.snapshot(smaller, run_id="snap-2")
    report = job.run(*flat, start=date(2024, 8, 2), end=date(2024, 8, 2), run_id="run-2")

    after = output_files(job.output)
    assert after["2024-08-01"] == before["2024-08-01"] and after["2024-08-03"] == before["2024-08-03"]
    assert after["2024-08-02"] != before["2024-08-02"]
    first = reference_filter(job.events, set(IDS), "productId")
    second = reference_filter(job.events, set(smaller), "productId", days=["2024-08-02"])
    assert output_events(job.output) == {e for e in first.kept if e[1] != "2024-08-02"} | second.kept
    assert report.details["per_day"]["2024-08-02"]["matched"] == len(second.kept)

    # a re-run whose day keeps nothing must not leave that day's old output behind
    job.snapshot(["NOT-AN-ID"], run_id="snap-3")
    report = job.run(*flat, start=date(2024, 8, 3), end=date(2024, 8, 3), run_id="run-3")
    assert report.details["cleared_days"] == ["2024-08-03"]
    assert sorted(output_files(job.output)) == ["2024-08-01", "2024-08-02"]
    assert output_files(job.output)["2024-08-01"] == before["2024-08-01"]


def _archive_with_a_truncated_file(job):
    write_event_archive(job.events, date(2024, 9, 1), 2, 4000, IDS, OTHERS, 0.3, seed=11, files_per_day=2)
    victim = job.events / "dt=2024-09-02" / "part-00001.json.gz"
    whole = victim.read_bytes()
    victim.write_bytes(whole[: len(whole) // 2])
    job.snapshot(IDS)
    return victim


def test_a_truncated_gzip_file_fails_the_run_naming_the_file_and_the_setting(job):
    victim = _archive_with_a_truncated_file(job)
    with pytest.raises(RunFailed) as failure:
        job.run()
    message = str(failure.value)
    assert str(victim) in message and "events.skip_corrupt_files" in message and "truncated" in message
    assert "\n" not in message
    assert not list(job.output.glob("dt=*/*.parquet"))


def test_skip_corrupt_files_skips_them_and_reports_them_by_name(job):
    victim = _archive_with_a_truncated_file(job)

    report = job.run("events.skip_corrupt_files=true")

    ref = reference_filter(job.events, set(IDS), "detail.productId", skip=[victim])
    assert output_events(job.output) == ref.kept
    assert report.counts["events_read"] == sum(ref.read.values()) == 3000
    assert report.counts["corrupt_files_skipped"] == 1
    [(path, problem)] = report.details["skipped_files"].items()
    assert path.endswith(str(victim)) and "truncated" in problem


def test_over_the_ceiling_a_sort_merge_join_keeps_the_same_events(job):
    write_event_archive(job.events, date(2024, 10, 1), 2, 3000, IDS, OTHERS, 0.25, seed=5, files_per_day=1)
    job.snapshot(IDS)

    rows = job.run("events.broadcast_max_rows=100")
    size = job.run("events.broadcast_max_bytes=1000", run_id="run-2")

    ref = reference_filter(job.events, set(IDS), "detail.productId")
    assert "sort-merge" in rows.details["join"] and "broadcast_max_rows" in rows.details["join"]
    assert "sort-merge" in size.details["join"] and "broadcast_max_bytes" in size.details["join"]
    assert output_events(job.output) == ref.kept
    assert rows.counts["matched"] == size.counts["matched"] == len(ref.kept)


def test_output_is_a_few_files_a_day_not_one_per_task_and_day(job, spark):
    write_event_archive(job.events, date(2024, 11, 1), 3, 6000, IDS, OTHERS, 0.3, seed=9, files_per_day=6)
    job.snapshot(IDS)

    report = job.run()
    assert {day: len(files) for day, files in output_files(job.output).items()} == {
        "2024-11-01": 1, "2024-11-02": 1, "2024-11-03": 1,
    }
    assert report.counts["output_files"] == 3

    job.run("output.files_per_day=3", run_id="run-2")
    per_day = [len(files) for files in output_files(job.output).values()]
    assert len(per_day) == 3 and max(per_day) <= 3 and sum(per_day) > 3
    assert output_events(job.output) == reference_filter(job.events, set(IDS), "detail.productId").kept


def test_a_window_with_missing_days_filters_the_others_then_ends_as_input_not_ready_or_skips_them(job):
    write_event_archive(job.events, date(2024, 12, 1), 3, 1500, IDS, OTHERS, 0.2, seed=3, files_per_day=1)
    shutil.rmtree(job.events / "dt=2024-12-02")  # a late upstream: the middle day has not arrived
    job.snapshot(IDS)
    window = {"start": date(2024, 12, 1), "end": date(2024, 12, 4)}

    with pytest.raises(InputNotReady, match="2 day.*2024-12-02, 2024-12-04.*run the window again") as late:
        job.run(**window)
    assert "config" not in str(late.value)  # never a config error
    ref = reference_filter(job.events, set(IDS), "detail.productId")
    assert output_events(job.output) == ref.kept and ref.kept  # the days that are there were filtered
    assert job.report.details["missing_days"] == ["2024-12-02", "2024-12-04"]
    assert job.report.counts["events_read"] == sum(ref.read.values())

    report = job.run("events.missing_days=skip", run_id="run-2", **window)
    assert report.details["missing_days"] == ["2024-12-02", "2024-12-04"]
    assert output_events(job.output) == ref.kept

    with pytest.raises(InputNotReady, match="2024-12-05, 2024-12-06"):  # nothing of the window is there
        job.run(run_id="run-3", start=date(2024, 12, 5), end=date(2024, 12, 6))
