"""The delta diff and the record it leaves, against a plain-Python model of the same sets; when a
snapshot's pointer lets a run be a delta one."""
import json
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
                  keys=1, fingerprint=Fingerprint.of(config), verified_at="2026-05-01T00:00:00+00:00",
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
    recorded = Fingerprint.of(load_config(None, ["source.attribute_columns=title,price"]))
    assert Fingerprint.of(config).changes_from(recorded) == ["attribute_columns: ['title', 'price'] -> ['title']"]
    assert Fingerprint.of(config).changes_from(Fingerprint.of(config)) == []


# The fingerprint of load_config(None, []), as a pointer records it: written out, not computed.
RECORDED = {"table": "IdentifierStore", "region": "us-east-1", "key_attribute": "product_id", "attribute_columns": [],
            "ttl_attribute": "", "ttl_days": 0, "id_column": "product_id", "format_version": 2}


def pointer_json(fingerprint):
    return {"run_id": "r1", "path": "/nowhere/run_id=r1", "id_column": "product_id", "written_at": "2026-05-01T00:00:00+00:00",
            "keys": 3, "fingerprint": fingerprint, "verified_at": "2026-05-01T00:00:00+00:00", "runs_since_verify": 1,
            "format_version": 2, "key_bytes": 12, "id_type": "string"}


def test_a_pointer_reads_its_fingerprint_typed_and_writes_back_the_same_json():
    data = pointer_json(dict(RECORDED, attribute_columns=["title", "price"]))
    read = Pointer.from_dict(data)
    assert isinstance(read.fingerprint, Fingerprint)
    assert read.fingerprint.attribute_columns == ("title", "price") and read.fingerprint.unknown == ()
    assert json.dumps(read.as_dict(), indent=2, sort_keys=True) == json.dumps(data, indent=2, sort_keys=True)


@pytest.mark.parametrize("recorded, changes", [
    ({k: v for k, v in RECORDED.items() if k != "ttl_days"}, ["ttl_days: None -> 0"]),  # an older release's
    (dict(RECORDED, item_shape="v2"), ["item_shape: 'v2' -> None"]),  # a key this release does not know
    (dict({k: v for k, v in RECORDED.items() if k != "format_version"}, item_shape=1),
     ["format_version: None -> 2", "item_shape: 1 -> None"]),
    ({}, ["table: None -> 'IdentifierStore'", "region: None -> 'us-east-1'", "key_attribute: None -> 'product_id'",
          "attribute_columns: None -> []", "ttl_attribute: None -> ''", "ttl_days: None -> 0",
          "id_column: None -> 'product_id'", "format_version: None -> 2"]),
    (None, ["table: None -> 'IdentifierStore'", "region: None -> 'us-east-1'", "key_attribute: None -> 'product_id'",
            "attribute_columns: None -> []", "ttl_attribute: None -> ''", "ttl_days: None -> 0",
            "id_column: None -> 'product_id'", "format_version: None -> 2"]),
], ids=["missing-key", "unknown-key", "both", "empty", "not-an-object"])
def test_a_fingerprint_with_other_keys_loads_and_forces_a_full_run_naming_them(spark, tmp_path, recorded, changes):
    (tmp_path / "_LATEST.json").write_text(json.dumps(pointer_json(recorded)))
    config = load_config(None, [f"snapshot.path={tmp_path}"])
    strategy = delta.choose_strategy(spark, config, datetime(2026, 5, 2, tzinfo=timezone.utc), full_flag=False)
    assert not strategy.delta and strategy.pointer is not None and strategy.pointer.keys == 3
    assert strategy.why == "what shapes an item changed since the snapshot (" + "; ".join(changes) + ")"


def test_a_pointer_with_the_same_fingerprint_gets_past_the_fingerprint_check(spark, tmp_path):
    (tmp_path / "_LATEST.json").write_text(json.dumps(pointer_json(RECORDED)))
    config = load_config(None, [f"snapshot.path={tmp_path}"])
    strategy = delta.choose_strategy(spark, config, datetime(2026, 5, 2, tzinfo=timezone.utc), full_flag=False)
    # the next check, the record's files, fails: /nowhere holds none
    assert not strategy.delta and strategy.why.startswith("the snapshot /nowhere/run_id=r1 cannot be read")
