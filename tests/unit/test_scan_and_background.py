"""The filter's scan split setting is scoped to the run; background Spark work keeps its job group."""
import pytest

from idstore.pipeline.filter import MIN_SCAN_TASKS_KEY, SCAN_TASKS_PER_CORE, balanced_scan, job_group
from idstore.spark import InBackground


def test_balanced_scan_asks_for_tasks_per_core_and_restores_the_session(spark):
    assert spark.conf.get(MIN_SCAN_TASKS_KEY, None) is None
    with balanced_scan(spark):
        inside = spark.conf.get(MIN_SCAN_TASKS_KEY)
    assert int(inside) == SCAN_TASKS_PER_CORE * spark.sparkContext.defaultParallelism
    assert spark.conf.get(MIN_SCAN_TASKS_KEY, None) is None


def test_balanced_scan_restores_the_session_when_the_run_fails(spark):
    with pytest.raises(RuntimeError), balanced_scan(spark):
        raise RuntimeError("pass failed")
    assert spark.conf.get(MIN_SCAN_TASKS_KEY, None) is None


def test_balanced_scan_keeps_a_value_the_user_set(spark):
    spark.conf.set(MIN_SCAN_TASKS_KEY, "7")
    try:
        with balanced_scan(spark):
            assert spark.conf.get(MIN_SCAN_TASKS_KEY) == "7"
        assert spark.conf.get(MIN_SCAN_TASKS_KEY) == "7"
    finally:
        spark.conf.unset(MIN_SCAN_TASKS_KEY)


def test_background_work_returns_its_value_and_runs_in_the_callers_job_group(spark):
    with job_group(spark, "idstore-test-group", "background test"):
        work = InBackground(lambda: (spark.range(10).count(),
                                     spark.sparkContext.getLocalProperty("spark.jobGroup.id")))
        count, group = work.result()
    assert (count, group) == (10, "idstore-test-group")


def test_background_work_hands_its_error_to_the_caller():
    def fails() -> int:
        raise ValueError("footer unreadable")

    work = InBackground(fails)
    work.wait()
    with pytest.raises(ValueError, match="footer unreadable"):
        work.result()
