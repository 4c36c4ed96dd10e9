"""The semi-join the passes compose (join_keys, then semi_join) against a plain-Python reference,
and its physical plan."""
import json

from chispa import assert_df_equality
from pyspark.sql import functions as F

from idstore.events.join import choose_join, estimated_broadcast_bytes, join_keys, semi_join
from idstore.events.prefilter import UNDECIDED
from idstore.events.status import with_status
from idstore.validation import normalised_key

EVENTS = [
    ("e1", "A", "2024-05-01"),
    ("e2", "B", "2024-05-01"),
    ("e3", "A", "2024-05-02"),
    ("e4", None, "2024-05-02"),
    ("e5", "Z", "2024-05-03"),
]
IDS = ["A", "Z", "Q"]


def keep_events_in_set(events, event_key, ids, id_col, broadcast, undecided=False):
    """What the passes write: the set as join keys (JSON passes add the sentinel), then the semi-join."""
    return semi_join(events, event_key, join_keys(ids, id_col, broadcast, undecided=undecided))


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


def test_the_sentinel_key_keeps_the_events_routed_to_it_and_matches_no_real_id(spark):
    # the JSON pass looks a bad event up under UNDECIDED so that it reaches the observation after the join
    ids = spark.createDataFrame([(i,) for i in IDS], "product_id string")
    bad = {"e4"}
    lookup = F.when(F.col("id").isin(*bad), F.lit(UNDECIDED)).otherwise(F.col("detail.productId"))
    out = keep_events_in_set(_events(spark), lookup, ids, "product_id", broadcast=True, undecided=True)
    expected = sorted(e for e, p, _ in EVENTS if e in bad or p in set(IDS))
    assert sorted(r.id for r in out.collect()) == expected
    no_sentinel = keep_events_in_set(_events(spark), lookup, ids, "product_id", broadcast=True)
    assert sorted(r.id for r in no_sentinel.collect()) == sorted(e for e, p, _ in EVENTS if p in set(IDS))


def test_semi_join_never_duplicates_events_for_duplicate_ids(spark):
    ids = spark.createDataFrame([("A",), ("A",)], "product_id string")
    out = keep_events_in_set(_events(spark), F.col("detail.productId"), ids, "product_id", broadcast=True)
    assert sorted(r.id for r in out.collect()) == ["e1", "e3"]


def _plan(df):
    return df._jdf.queryExecution().executedPlan().toString()


def test_broadcast_plan_below_the_ceiling_and_sort_merge_above(spark):
    ids = spark.createDataFrame([(i,) for i in IDS], "product_id string")
    choice = choose_join(len(IDS), max_rows=10)
    plan = _plan(keep_events_in_set(_events(spark), F.col("detail.productId"), ids, "product_id", choice.broadcast))
    assert "BroadcastHashJoin" in plan and "LeftSemi" in plan and "SortMergeJoin" not in plan
    choice = choose_join(len(IDS), max_rows=2)
    assert not choice.broadcast and "sort-merge" in choice.why and "broadcast_max_rows" in choice.why
    plan = _plan(keep_events_in_set(_events(spark), F.col("detail.productId"), ids, "product_id", choice.broadcast))
    assert "SortMergeJoin" in plan and "LeftSemi" in plan and "BroadcastHashJoin" not in plan


def test_the_byte_ceiling_alone_turns_the_broadcast_into_a_sort_merge_join(spark):
    # 1M ten-character ids: about 10 MB of keys, ~100 MB as a broadcast hash table
    assert 90 * 2**20 < estimated_broadcast_bytes(1_000_000, 10_000_000) < 120 * 2**20
    assert choose_join(1_000_000, max_rows=20_000_000, id_bytes=10_000_000, max_bytes=2**30).broadcast
    choice = choose_join(1_000_000, max_rows=20_000_000, id_bytes=10_000_000, max_bytes=50 * 2**20)
    assert not choice.broadcast and "broadcast_max_bytes" in choice.why
    assert choose_join(1_000_000, max_rows=20_000_000, id_bytes=10_000_000, max_bytes=0).broadcast  # 0: no ceiling
    ids = spark.createDataFrame([(i,) for i in IDS], "product_id string")
    choice = choose_join(len(IDS), max_rows=10, id_bytes=3, max_bytes=100)
    plan = _plan(keep_events_in_set(_events(spark), F.col("detail.productId"), ids, "product_id", choice.broadcast))
    assert "SortMergeJoin" in plan


def test_the_event_key_is_normalised_like_the_synced_ids(spark):
    events = spark.createDataFrame([("e1", " a1 "), ("e2", "A1"), ("e3", "b")], "id string, pid string")
    ids = spark.createDataFrame([("a1",)], "product_id string")
    key = normalised_key(F.col("pid"), trim=True, case="lower")
    out = keep_events_in_set(events, key, ids, "product_id", broadcast=True)
    assert sorted(r.id for r in out.collect()) == ["e1", "e2"]
    assert out.columns == ["id", "pid"]


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
