"""The write statistics: the stats row's columns, and the summary of rows written out by hand."""
import pytest

from idstore.dynamodb import items as I
from idstore.dynamodb.stats import STATS_DDL, Counts, TaskStats, WriteStats

# added up over the partitions
SUMMED = [
    "items_in", "put", "deleted", "written", "duplicates", "rejected", "rejected_key_missing",
    "rejected_key_too_long", "rejected_item_too_large", "requests", "requests_partial", "retries_throttle",
    "retries_5xx", "retries_connection", "unprocessed_resent", "rate_cuts", "consumed_wcu", "throttled_s",
    "budget_wait_s", "lease_renewals", "lease_fallbacks",
]
DOUBLES = {"consumed_wcu", "throttled_s", "budget_wait_s", "task_rate", "latency_p50_ms", "latency_p99_ms", "seconds"}


def _row(partition_id, **values):
    """A stats row as Spark collects it: every column, each with a value."""
    row = {name: 0 for name in SUMMED}
    row.update(partition_id=partition_id, task_rate=250.0, in_flight=4, latency_p50_ms=0.0, latency_p99_ms=0.0,
               seconds=0.0)
    row.update(values)
    return row


ROWS = [
    _row(0, items_in=60, put=50, written=50, duplicates=4, rejected=6, rejected_key_missing=1,
         rejected_key_too_long=2, rejected_item_too_large=3, requests=3, requests_partial=1, retries_throttle=1,
         unprocessed_resent=5, rate_cuts=1, consumed_wcu=50.0, throttled_s=0.25, budget_wait_s=0.5,
         lease_renewals=7, latency_p50_ms=9.0, latency_p99_ms=30.0, seconds=2.0),
    _row(1, items_in=25, put=25, written=25, requests=2, retries_5xx=1, retries_connection=2, consumed_wcu=27.5,
         budget_wait_s=0.125, lease_renewals=3, lease_fallbacks=1, latency_p50_ms=12.0, latency_p99_ms=20.0,
         seconds=3.5),
    _row(2, task_rate=500.0, in_flight=8),  # an empty partition
]


def test_the_stats_row_has_every_column_with_its_arrow_type():
    columns = dict(column.split(" ") for column in STATS_DDL.split(", "))
    expected = {name: "double" if name in DOUBLES else "bigint"
                for name in SUMMED + ["partition_id", "task_rate", "in_flight", "latency_p50_ms", "latency_p99_ms",
                                      "seconds"]}
    assert columns == expected


def test_every_rejection_reason_has_its_column():
    assert {f"rejected_{reason}" for reason in I.REJECTION_REASONS} == {
        name for name in SUMMED if name.startswith("rejected_")}


def test_the_summary_sums_the_counts_and_takes_the_worst_task_of_the_rest():
    summary = WriteStats.of([TaskStats.of_row(row) for row in ROWS], tasks_peak=2)
    assert summary.as_dict() == {
        "items_in": 85, "put": 75, "deleted": 0, "written": 75, "duplicates": 4, "rejected": 6,
        "rejected_key_missing": 1, "rejected_key_too_long": 2, "rejected_item_too_large": 3, "requests": 5,
        "requests_partial": 1, "retries_throttle": 1, "retries_5xx": 1, "retries_connection": 2,
        "unprocessed_resent": 5, "rate_cuts": 1, "consumed_wcu": 77.5, "throttled_s": 0.25, "budget_wait_s": 0.625,
        "lease_renewals": 10, "lease_fallbacks": 1, "partitions": 3, "latency_p50_ms": 12.0,
        "latency_p99_ms": 30.0, "task_seconds_max": 3.5, "throttled_share": 0.2, "tasks_peak": 2,
    }
    assert (summary.retries, summary.throttles) == (1 + 1 + 2 + 5, 1 + 5)


def test_every_summed_figure_is_the_sum_over_the_rows():
    summary = WriteStats.of([TaskStats.of_row(row) for row in ROWS]).as_dict()
    for name in SUMMED:
        assert summary[name] == sum(row[name] for row in ROWS), name
        assert type(summary[name]) is (float if name in DOUBLES else int), name


def test_a_phase_that_wrote_nothing_has_every_figure_zero():
    nothing = WriteStats.nothing()
    assert set(nothing.as_dict().values()) == {0}
    assert (nothing.retries, nothing.throttles, nothing.throttled_share) == (0, 0, 0.0)
    assert WriteStats.of([]) == nothing


def test_counts_add_up_field_by_field_and_the_summary_is_frozen():
    total = Counts(put=2, written=2, consumed_wcu=1.5) + Counts(deleted=1, written=1, consumed_wcu=1.0)
    assert (total.put, total.deleted, total.written, total.consumed_wcu, total.requests) == (2, 1, 3, 2.5, 0)
    with pytest.raises(AttributeError):
        WriteStats.nothing().written = 1
