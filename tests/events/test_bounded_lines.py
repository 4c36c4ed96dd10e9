"""idstore.jvm.BoundedLines, the aggregate a filter pass brings its bad events back with:
every value while within its bounds, over any number of tasks, and null past either bound."""
import pytest
from pyspark.sql import Observation
from pyspark.sql import functions as F

from idstore.jvm import bounded_lines

VALUES = [f"bad-{i}-" + "é" * (i % 4) for i in range(40)]  # multi-byte: the byte bound counts UTF-8


def _observed(spark, max_lines, max_bytes, values=VALUES, tasks=4):
    rows = [(v,) for v in values] + [(None,)] * 100  # nulls are not gathered
    frame = spark.createDataFrame(rows, "value string").repartition(tasks)
    column = bounded_lines(spark, F.col("value"), max_lines, max_bytes)
    assert column is not None, "idstore's jar is missing: make setup builds it"
    observation = Observation()
    frame.observe(observation, column.alias("gathered"), F.count("*").alias("rows")).collect()
    return observation.get


def test_every_value_comes_back_within_the_bounds(spark):
    utf8_bytes = sum(len(v.encode("utf-8")) for v in VALUES)
    observed = _observed(spark, max_lines=len(VALUES), max_bytes=utf8_bytes)
    assert observed["rows"] == len(VALUES) + 100
    assert sorted(observed["gathered"].split("\n")) == sorted(VALUES)


def test_nothing_to_gather_is_an_empty_string_not_null(spark):
    assert _observed(spark, 10, 100, values=[])["gathered"] == ""


@pytest.mark.parametrize("bound", ["lines", "bytes"])
def test_one_past_either_bound_gives_null(spark, bound):
    utf8_bytes = sum(len(v.encode("utf-8")) for v in VALUES)
    max_lines, max_bytes = (len(VALUES) - 1, utf8_bytes) if bound == "lines" else (len(VALUES), utf8_bytes - 1)
    # one task, then many: the bound holds within a task and across merged ones
    for tasks in (1, 7):
        assert _observed(spark, max_lines, max_bytes, tasks=tasks)["gathered"] is None
