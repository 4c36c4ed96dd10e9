"""The filter transform against a plain-Python reference, and its physical plan."""
import json

from chispa import assert_df_equality
from pyspark.sql import functions as F

from idstore.events.filter import choose_join, keep_events_in_set, with_status

EVENTS = [
    ("e1", "A", "2024-05-01"),
    ("e2", "B", "2024-05-01"),
    ("e3", "A", "2024-05-02"),
    ("e4", None, "2024-05-02"),
    ("e5", "Z", "2024-05-03"),
]
IDS = ["A", "Z", "Q"]


def _events(spark):
    return spark.createDataFrame(
        [(eid, {"productId": pid}, dt) for eid, pid, dt in EVENTS],
        "id string, detail struct<productId: string>, dt string",
    )


def test_semi_join_keeps_exactly_the_events_in_the_set(spark):
    ids = spark.createDataFrame([(i,) for i in IDS], "product_id string")
    out = keep_events_in_set(_events(spark), F.col("detail.productId"), ids, "product_id", broadcast=True)
    reference = [(e, {"productId": p}, d) for e, p, d in EVENTS if p in set(IDS)]
    expected = spark.createDataFrame(reference, "id string, detail struct<productId: string>, dt string")
    assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)


def test_semi_join_never_duplicates_events_for_duplicate_ids(spark):
    ids = spark.createDataFrame([("A",), ("A",)], "product_id string")
    out = keep_events_in_set(_events(spark), F.col("detail.productId"), ids, "product_id", broadcast=True)
    assert sorted(r.id for r in out.collect()) == ["e1", "e3"]


def test_broadcast_plan_below_the_ceiling_and_sort_merge_above(spark):
    ids = spark.createDataFrame([(i,) for i in IDS], "product_id string")
    broadcast, _ = choose_join(len(IDS), max_rows=10)
    plan = keep_events_in_set(_events(spark), F.col("detail.productId"), ids, "product_id", broadcast)
    text = plan._jdf.queryExecution().executedPlan().toString()
    assert "BroadcastHashJoin" in text and "LeftSemi" in text
    broadcast, why = choose_join(len(IDS), max_rows=2)
    assert not broadcast and "sort-merge" in why
    plan = keep_events_in_set(_events(spark), F.col("detail.productId"), ids, "product_id", broadcast)
    assert "SortMergeJoin" in plan._jdf.queryExecution().executedPlan().toString()


def test_status_tags_malformed_and_missing_ids(spark):
    rows = [
        ("e1", {"productId": "A"}, None),
        ("e2", {"productId": None}, None),
        ("e3", {"productId": "  "}, None),
        (None, None, json.dumps("{broken")),
    ]
    df = spark.createDataFrame(rows, "id string, detail struct<productId: string>, _corrupt_record string")
    tagged = df.transform(with_status(F.col("detail.productId")))
    assert [r._idstore_status for r in tagged.collect()] == ["ok", "missing_id", "missing_id", "malformed"]
