"""The writer through Spark (mapInArrow via write_dataframe) against the capacity emulator."""
import dataclasses

import pytest
from pyspark.sql import functions as F

from idstore.config import load_config
from idstore.dynamodb import bulk as ddb

from .conftest import KEY, TABLE, RecordingEmulator, create_table

# the summary the run report prints, in its order
SUMMARY_FIELDS = [
    "items_in", "put", "deleted", "written", "duplicates", "rejected", "rejected_key_missing",
    "rejected_key_too_long", "rejected_item_too_large", "requests", "requests_partial", "retries_throttle",
    "retries_5xx", "retries_connection", "unprocessed_resent", "rate_cuts", "consumed_wcu", "throttled_s",
    "budget_wait_s", "lease_renewals", "lease_fallbacks", "partitions", "latency_p50_ms", "latency_p99_ms",
    "task_seconds_max", "throttled_share", "tasks_peak",
]


def _cfg(endpoint, **kw):
    values = dict(table=TABLE, key_attribute=KEY, region="us-east-1", endpoint_url=endpoint,
                  write_rate=0.0, capacity_fraction=0.5, max_in_flight=4, no_progress_timeout_s=30.0)
    values.update(kw)
    return dataclasses.replace(load_config().dynamodb, **values)


def test_eight_partitions_on_two_cores_hold_the_job_budget_not_more_not_a_quarter(spark):
    """The budget is split over the 2 tasks that run at once, not over the 8 partitions."""
    budget, n = 1000.0, 6000
    with RecordingEmulator(write_rate=0, latency_s=0.005) as emu:  # the emulator itself does not limit
        create_table(emu.endpoint_url)
        cfg = _cfg(emu.endpoint_url, write_rate=budget)
        df = spark.range(n, numPartitions=8).select(F.format_string("B%06d", "id").alias(KEY))
        plan = ddb.plan_rate(cfg, {}, partitions=8, slots=ddb.concurrent_slots(spark), items=n)
        assert (plan.concurrent_tasks, plan.task_rate) == (2, budget / 2)
        summary = ddb.write_dataframe(df, KEY, cfg, plan)
        series = [wcu for _, wcu in emu.wcu_series()]
        stored = {item[KEY]["S"] for item in emu.items(TABLE)}

    assert stored == {f"B{i:06d}" for i in range(n)}
    assert summary.written == n and summary.partitions == 8
    assert summary.tasks_peak == 2 and summary.lease_fallbacks == 0  # 2 leases at once, never more
    active = [i for i, wcu in enumerate(series) if wcu > 0]
    middle = series[active[0] + 1:active[-1]]  # whole seconds only: the first and last are partial
    assert len(middle) >= 3, series
    # Generous bounds, measured by the table, wide of both wrong splits: over the tasks x 2
    # would run at ~2000 WCU/s, over the 8 partitions at ~250. Spark's pauses between tasks
    # only lower the mean, so the lower bound looks at the best second.
    assert sum(middle) / len(middle) <= 1.25 * budget, series
    assert max(middle) <= 2.1 * budget, series  # the rate plus at most the tasks' bursts (1 s each)
    assert max(middle) >= 0.75 * budget, series


def test_the_budget_holds_when_more_tasks_run_than_the_driver_planned_for(spark):
    """The plan assumed 1 task slot (a static split would give each task the whole budget) but
    local[2] runs 2 tasks at once: the leased budget still holds, as the emulator measures it."""
    budget, n = 1000.0, 5000
    with RecordingEmulator(write_rate=0, latency_s=0.005) as emu:
        create_table(emu.endpoint_url)
        cfg = _cfg(emu.endpoint_url, write_rate=budget)
        df = spark.range(n, numPartitions=4).select(F.format_string("U%06d", "id").alias(KEY))
        plan = ddb.plan_rate(cfg, {}, partitions=4, slots=1, items=n)
        assert (plan.concurrent_tasks, plan.task_rate) == (1, budget)
        summary = ddb.write_dataframe(df, KEY, cfg, plan)
        series = [wcu for _, wcu in emu.wcu_series()]
        stored = {item[KEY]["S"] for item in emu.items(TABLE)}

    assert stored == {f"U{i:06d}" for i in range(n)}
    assert summary.written == n and summary.tasks_peak == 2 and summary.lease_fallbacks == 0
    active = [i for i, wcu in enumerate(series) if wcu > 0]
    middle = series[active[0] + 1:active[-1]]
    assert len(middle) >= 3, series
    # 2 tasks at the planned task rate would put ~2,000 WCU/s on the table. The upper bound
    # reads two-second windows: a stalled process (the emulator shares its GIL with the test)
    # records some writes a second late, which moves units between neighbouring seconds but
    # cannot hide a doubled rate. Spark's pauses between tasks only lower the seconds, so the
    # lower bound looks at the best second.
    windows = [(a + b) / 2 for a, b in zip(middle, middle[1:])]
    assert max(windows) <= 1.15 * budget, series
    assert max(middle) >= 0.75 * budget, series


def test_stats_rows_reconcile_with_the_input_and_the_table(spark):
    rows = [(f"R{i:04d}", i % 3) for i in range(500)]
    rows += [("R0007", 9), ("R0100", 9), ("", 1), ("x" * 2049, 1)]  # two duplicates, two rejected
    with RecordingEmulator(write_rate=0, latency_s=0.002, unprocessed_fraction=0.2, seed=3) as emu:
        create_table(emu.endpoint_url)
        cfg = _cfg(emu.endpoint_url, write_rate=50000.0)
        df = spark.createDataFrame(rows, f"{KEY} string, grp int").repartition(3, KEY)
        plan = ddb.plan_rate(cfg, {}, partitions=3, slots=ddb.concurrent_slots(spark), items=500)
        summary = ddb.write_dataframe(df, KEY, cfg, plan, constant_attributes={"run_id": "r9"})
        stored = {item[KEY]["S"]: item for item in emu.items(TABLE)}
        unprocessed = emu.metrics()["items_unprocessed"]

    valid = {key for key, _ in rows if key and len(key) <= 2048}
    assert set(stored) == valid
    assert all(item["run_id"] == {"S": "r9"} and "grp" in item for item in stored.values())
    assert summary.items_in == len(rows) and summary.written == summary.put == len(valid)
    assert summary.duplicates == 2 and summary.rejected == 2
    assert summary.rejected_key_missing == 1 and summary.rejected_key_too_long == 1
    assert summary.unprocessed_resent == unprocessed > 0
    assert summary.written + summary.rejected + summary.duplicates == len(rows)
    assert summary.partitions == 3 and summary.requests >= 1 and summary.consumed_wcu >= len(valid)
    assert summary.retries == summary.unprocessed_resent == summary.throttles  # the only fault injected
    assert list(summary.as_dict()) == SUMMARY_FIELDS  # what the run report prints


def test_a_write_is_planned_at_50_000_items_a_partition_and_never_fewer_partitions_than_slots(spark):
    cfg = _cfg("http://127.0.0.1:1", write_rate=1000.0)
    few = ddb.plan_write(spark, cfg, {}, items=10)
    many = ddb.plan_write(spark, cfg, {}, items=120_001)  # local[2]: 2 task slots
    assert (few.partitions, few.concurrent_tasks, few.task_rate, few.items) == (2, 2, 500.0, 10)
    assert (many.partitions, many.concurrent_tasks, many.task_rate, many.items) == (3, 2, 500.0, 120_001)
    assert many.job_rate == 1000.0 and "dynamodb.write_rate" in many.reason


def test_a_task_past_its_deadline_fails_the_job_with_what_was_not_written(spark):
    with RecordingEmulator(write_rate=0) as emu:
        create_table(emu.endpoint_url)
        emu.set_down(True)
        cfg = _cfg(emu.endpoint_url, write_rate=1000.0, no_progress_timeout_s=1.0)
        df = spark.range(40, numPartitions=1).select(F.format_string("Z%03d", "id").alias(KEY))
        plan = ddb.plan_rate(cfg, {}, partitions=1, slots=ddb.concurrent_slots(spark))
        with pytest.raises(Exception) as failure:  # noqa: B017 - Spark wraps the task's error
            ddb.write_dataframe(df, KEY, cfg, plan)
    message = str(failure.value)
    assert f"DynamoDB write to {TABLE} failed in partition 0" in message
    assert "nothing written for" in message and "Not written: 40 put requests" in message
    assert "Z000" in message
