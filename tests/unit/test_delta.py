"""The delta diff and the record it leaves, against a plain-Python model of the same sets."""
import random
from datetime import datetime, timedelta, timezone

import pytest

from idstore import delta
from idstore.config import load_config
from idstore.snapshot import DIGEST, EXPIRES_AT, WRITTEN_AT, WRITTEN_BY, Fingerprint, Pointer

RECORD = f"product_id string, {DIGEST} string, {WRITTEN_AT} long, {WRITTEN_BY} string, {EXPIRES_AT} long"


def model_actions(source, record, refresh_before):
    """key -> action, in plain Python: source {key: digest}, record {key: (digest, expires)}."""
    actions = {}
    for key, digest in source.items():
        if key not in record:
            actions[key] = "new"
        elif record[key][0] != digest:
            actions[key] = "changed"
        elif refresh_before is not None and (record[key][1] is None or record[key][1] < refresh_before):
            actions[key] = "refresh"
        else:
            actions[key] = "unchanged"
    actions.update({key: "gone" for key in record if key not in source})
    return actions


@pytest.mark.parametrize("refresh_before", [None, 500])
def test_every_key_gets_the_action_the_model_gives_and_the_record_keeps_its_own_stamps(spark, refresh_before):
    rng = random.Random(5)
    keys = [f"k{i}" for i in range(300)]
    record = {k: (f"d{rng.randrange(3)}", rng.choice([None, 100, 900])) for k in keys if rng.random() < 0.8}
    source = {k: f"d{rng.randrange(3)}" for k in keys if rng.random() < 0.8}
    source_df = spark.createDataFrame([(k, d) for k, d in source.items()], f"product_id string, {DIGEST} string")
    record_df = spark.createDataFrame([(k, d, 10, "old-run", e) for k, (d, e) in record.items()], RECORD)

    tagged = delta.diff(source_df, record_df, "product_id", refresh_before)
    assert {r["product_id"]: r[delta.ACTION] for r in tagged.collect()} == model_actions(source, record,
                                                                                         refresh_before)

    after = {r["product_id"]: r for r in delta.next_record(tagged, "product_id", "new-run", 99, 5000).collect()}
    assert set(after) == set(source)
    for key, row in after.items():
        put = model_actions(source, record, refresh_before)[key] in delta.PUT_ACTIONS
        expected = (source[key], 99, "new-run", 5000) if put else (source[key], 10, "old-run", record[key][1])
        assert (row[DIGEST], row[WRITTEN_AT], row[WRITTEN_BY], row[EXPIRES_AT]) == expected


def test_attribute_digests_differ_when_a_value_or_its_type_does(spark):
    rows = spark.createDataFrame([("a", "t", 1), ("b", "t", 2), ("c", "t", 1)], "id string, title string, n int")
    digests = {r["id"]: r[DIGEST] for r in rows.transform(delta.with_digest(["title", "n"])).collect()}
    assert digests["a"] == digests["c"] != digests["b"]
    assert rows.transform(delta.with_digest([])).first()[DIGEST] == ""


def pointer(config, **changes):
    fields = dict(run_id="r1", path="/nowhere", id_column="product_id", written_at="2026-05-01T00:00:00+00:00",
                  keys=1, fingerprint=Fingerprint.of(config).as_dict(), verified_at="2026-05-01T00:00:00+00:00",
                  runs_since_verify=0)
    return Pointer(**{**fields, **changes})


def test_a_ttl_refresh_falls_due_before_half_the_ttl_or_the_next_verification():
    now = datetime(2026, 5, 3, tzinfo=timezone.utc)
    config = load_config(None, ["dynamodb.ttl_attribute=exp", "dynamodb.ttl_days=10", "dynamodb.verify_after_days=7"])
    # verified 2 days ago: the next full run is due in 5 days, plus a day of slack; half the TTL is 5 days
    assert delta.refresh_before(config, pointer(config), now) == int((now + timedelta(days=5)).timestamp())
    late = load_config(None, ["dynamodb.ttl_attribute=exp", "dynamodb.ttl_days=30", "dynamodb.verify_after_days=3"])
    assert delta.refresh_before(late, pointer(late), now) == int((now + timedelta(days=2)).timestamp())
    assert delta.refresh_before(load_config(None, []), None, now) is None


def test_fingerprint_changes_name_what_changed():
    config = load_config(None, ["source.attribute_columns=title"])
    recorded = Fingerprint.of(load_config(None, ["source.attribute_columns=title,price"])).as_dict()
    assert Fingerprint.of(config).changes_from(recorded) == ["attribute_columns: ['title', 'price'] -> ['title']"]
    assert Fingerprint.of(config).changes_from(Fingerprint.of(config).as_dict()) == []
