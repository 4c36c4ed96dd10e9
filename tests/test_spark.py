"""The filter's scan split setting is scoped to the run; background Spark work keeps its job group."""
import pytest

from idstore.spark import InBackground, balanced_scan, job_group

# Spark's own name for the setting, written out: a misspelt key in the code would be ignored by Spark.
MIN_SCAN_TASKS_KEY = "spark.sql.files.minPartitionNum"


@pytest.mark.parametrize("archive_mib, tasks", [(0, "4"), (100, "4"), (64 * 6, "6"), (64 * 100, "16")])
def test_balanced_scan_asks_for_a_task_per_64_mib_two_to_eight_a_core_and_restores_the_session(spark, archive_mib,
                                                                                              tasks):
    assert spark.sparkContext.defaultParallelism == 2  # tests/conftest.py: local[2]
    assert spark.conf.get(MIN_SCAN_TASKS_KEY, None) is None
    with balanced_scan(spark) as split:
        before = spark.conf.get(MIN_SCAN_TASKS_KEY)
        split(archive_mib * 2**20)
        inside = spark.conf.get(MIN_SCAN_TASKS_KEY)
    assert before == "4"  # 2 cores x 2 tasks until the archive's size is known
    assert inside == tasks
    assert spark.conf.get(MIN_SCAN_TASKS_KEY, None) is None


def test_balanced_scan_restores_the_session_when_the_run_fails(spark):
    with pytest.raises(RuntimeError), balanced_scan(spark):
        raise RuntimeError("pass failed")
    assert spark.conf.get(MIN_SCAN_TASKS_KEY, None) is None


def test_balanced_scan_keeps_a_value_the_user_set(spark):
    spark.conf.set(MIN_SCAN_TASKS_KEY, "7")
    try:
        with balanced_scan(spark) as split:
            split(64 * 100 * 2**20)
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


def test_s3a_takes_the_one_endpoint_unless_spark_names_its_own():
    from idstore.config import load_config
    from idstore.spark import session_conf

    local = session_conf(load_config(None, ["aws.endpoint_url=http://127.0.0.1:5000", "aws.region=eu-west-1"]),
                         {"spark.ui.enabled": "false"})
    assert local == {"spark.ui.enabled": "false", "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:5000",
                     "spark.hadoop.fs.s3a.endpoint.region": "eu-west-1", "spark.hadoop.fs.s3a.path.style.access": "true"}
    own = session_conf(load_config(None, ["aws.endpoint_url=http://127.0.0.1:5000",
                                          "spark.spark.hadoop.fs.s3a.endpoint=http://127.0.0.1:5001"]))
    assert own["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:5001"
    assert session_conf(load_config(None, [])) == {}  # on AWS, S3A (or EMRFS) finds S3 itself
