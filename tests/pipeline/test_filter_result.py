"""A filter run's report, rendered from its typed result, against sums written out by hand."""
from idstore.config import IdsFrom
from idstore.events.join import choose_join
from idstore.events.passes import PassCounts
from idstore.pipeline.filter_result import FilterResult

DAYS = ("2024-05-01", "2024-05-02", "2024-05-03")


def finished_result() -> FilterResult:
    return FilterResult(
        ids_from=IdsFrom.SNAPSHOT, days=DAYS, ids=3, join=choose_join(3, 10),
        passed=PassCounts(read_per_day={"2024-05-01": 10, "2024-05-02": 0, "2024-05-03": 5},
                          matched_per_day={"2024-05-01": 4, "2024-05-02": 0, "2024-05-03": 0}),
        cleared_days=["2024-05-03"], quarantine="/q/filter/run_id=r",
        bad_per_day={"2024-05-01": {"malformed": 2, "missing_id": 1}, "2024-05-03": {"malformed": 0, "missing_id": 3}},
        output_path="/out",
        output={"2024-05-01": {"files": 1, "bytes": 100}, "2024-05-02": {"files": 0, "bytes": 0},
                "2024-05-03": {"files": 0, "bytes": 0}},
    )


def test_a_finished_run_reports_totals_per_day_rows_and_its_figures():
    result = finished_result()
    assert result.counts() == {"ids": 3, "events_read": 15, "matched": 4, "malformed": 2, "missing_id": 4,
                               "output_files": 1, "output_bytes": 100, "corrupt_files_skipped": 0}
    assert result.details()["per_day"]["2024-05-03"] == {
        "read": 5, "matched": 0, "malformed": 0, "missing_id": 3, "output_files": 0, "output_bytes": 0}
    assert result.details()["days_without_events"] == ["2024-05-02"]
    assert result.details()["cleared_days"] == ["2024-05-03"] and result.details()["quarantine"] == "/q/filter/run_id=r"
    assert result.metrics() == {"EventsRead": 15, "EventsMatched": 4, "EventsQuarantined": 6}


def test_a_run_stopped_before_its_output_reports_what_it_had_and_no_figures():
    result = finished_result()
    result.output = None
    result.corrupt_files = {"/in/dt=2024-05-01/a.gz": "truncated gzip"}
    assert result.counts() == {"ids": 3}
    details = result.details()
    assert details["corrupt_files"] == {"/in/dt=2024-05-01/a.gz": "truncated gzip"}
    assert "per_day" not in details and "skipped_files" not in details
    assert result.metrics() == {}


def test_a_quarantine_that_kept_nothing_is_not_named():
    result = finished_result()
    result.bad_per_day = {"2024-05-01": {"malformed": 0, "missing_id": 0}}
    assert "quarantine" not in result.details() and result.metrics()["EventsQuarantined"] == 0
