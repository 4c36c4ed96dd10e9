"""A bad-id corpus through spark-submit: the valid rows all arrive, the bad ones are counted
and quarantined with their reason, and the exit code says which."""
import json

import pytest

from idstore_tools.testing.readback import scan_key_set

from .conftest import create_source_table, run_job

pytestmark = pytest.mark.integration

VALID = [
    "B0000000001",
    "x" * 2048,                      # exactly the key limit
    "é" * 1024,                      # 2048 bytes of 2-byte characters
    "€" * 682,                       # 3-byte characters, 2046 bytes
    "😀" * 512,                      # 4-byte characters, 2048 bytes
    "日本語のID",
    "ctl\x01\x1fchars",              # DynamoDB takes control characters in keys
    "tab\tinside",
    " padded ",                      # kept as is: normalisation is off by default
    "12345",                         # numbers as text
    "B0000000001".lower(),           # case differs: a different id
]
BAD = {
    None: "null",
    "": "empty",
    "   ": "blank",
    "\t\n": "blank",
    "x" * 2049: "key_too_long",
    "é" * 1025: "key_too_long",
    "😀" * 513: "key_too_long",
}


def reference(values):
    """Plain Python: which ids DynamoDB can take, and why each other one cannot."""
    valid, rejected = set(), {}
    for v in values:
        if v is None:
            rejected["null"] = rejected.get("null", 0) + 1
        elif v == "":
            rejected["empty"] = rejected.get("empty", 0) + 1
        elif not v.strip(" \t\n\r\f\v"):
            rejected["blank"] = rejected.get("blank", 0) + 1
        elif len(v.encode("utf-8")) > 2048:
            rejected["key_too_long"] = rejected.get("key_too_long", 0) + 1
        else:
            valid.add(v)
    return valid, rejected


def test_bad_ids_are_counted_and_quarantined_and_the_good_ones_all_arrive(pg, ddb, new_table, job_conf):
    bad = list(BAD)
    # every kind twice: duplicates of valid and of bad ids
    values = VALID + VALID + bad + bad
    create_source_table(pg, "src_bad_ids", [(v, None, None, None) for v in values])
    code, output, report = run_job(
        "sync", job_conf, "--set", f"dynamodb.table={new_table}",
        "--set", "source.query=select product_id from src_bad_ids",
        "--set", "validation.max_rejected_fraction=0.6",
    )
    assert code == 0, output
    expected_valid, expected_rejected = reference(values)
    assert scan_key_set(ddb, new_table, "product_id") == expected_valid
    counts = report["counts"]
    assert counts["written"] == len(expected_valid)
    assert counts["duplicates"] == len(VALID)
    assert report["details"]["rejected_by_reason"] == expected_rejected
    assert counts["rejected"] + counts["duplicates"] + counts["written"] == len(values)

    quarantined = [
        json.loads(line)
        for path in (job_conf.parent / "data" / "quarantine").rglob("*.json")
        for line in path.read_text(encoding="utf-8").splitlines() if line
    ]
    by_reason = {}
    for row in quarantined:
        by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + 1
    assert by_reason == expected_rejected
    assert sorted(str(r.get("id")) for r in quarantined if r["reason"] == "key_too_long") == sorted(
        str(v) for v in values if v and v.strip() and len(v.encode("utf-8")) > 2048
    )


def test_a_source_that_is_mostly_bad_is_refused_with_exit_3(pg, ddb, new_table, job_conf):
    values = ["good-1"] + list(BAD)
    create_source_table(pg, "src_mostly_bad_ids", [(v, None, None, None) for v in values])
    code, output, report = run_job(
        "sync", job_conf, "--set", f"dynamodb.table={new_table}",
        "--set", "source.query=select product_id from src_mostly_bad_ids",
    )
    assert code == 3, output
    assert report["outcome"] == "refused"
    assert f"{len(BAD)} of {len(values)} source rows rejected" in report["error"]
    assert scan_key_set(ddb, new_table, "product_id") == set()
