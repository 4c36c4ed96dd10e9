"""The pre-filter is exact: through the job, every line of an awkward corpus is checked
against plain Python (json.loads, then detail.productId), with events.validate = kept (plain
ids read by idstore's JVM function and by the built-in test) and all.

The cheap test may only drop a line it is certain cannot match; the reference below
knows nothing of how the job does it, except the promise of `validate = kept` about
which bad lines are counted: all of them but those written with a plain id (exactly one
`"productId":"<no backslash>"` or `"productId": "<no backslash>"`, no escape of an ASCII
character in the line) that is not in the set.
"""
import gzip
import json
import re
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import pytest

from .conftest import output_events

DAY = "2024-07-01"
KEY = "productId"
IDS = ["ID1", "ID2", "ID3", "ID5", "ID7", "ID8", "ID10", "ID11", "ID12", "ID13", 'ID"14', "ID\\", "ID15", "ID16",
       "ID17", "ID18", "ID19", "ID20", "ID21", "ID22", "ID23", "ÉTÉ-日本-😀", "😀-ESC", "ID4", "ID6", "ID9", "ID-BOM",
       "ID-CRLF", "ID-LONG", "ID24", "ID26", "ID27", "ID28", "ID-\u00c9T\u00c9"]


def _corpus_lines() -> List[str]:
    big = json.dumps({"id": "long-1", "reason": "x" * 2_000_000, "detail": {"productId": "ID-LONG"}},
                     separators=(",", ":"))  # the plain shape, 2 MB long
    return [
        '{"id":"p1","detail":{"productId":"ID1","fcId":"SEA8"}}',                       # the common shape
        '{"id": "s1", "detail": {"productId" : "ID2" , "fcId" : "X"}}',                 # spaces around : and ,
        '{"id":"s2","detail":{"productId": "ID21"}}',
        '{"detail":{"fcId":"X","productId":"ID3"},"id":"o1"}',                          # keys in another order
        '{"id":"t1","productId":"ID4","detail":{"productId":"NOPE-1"}}',                # key also at the top
        '{"id":"t2","productId":"NOPE-2","detail":{"productId":"ID5"}}',
        '{"id":"n1","meta":{"productId":"ID6"},"detail":{"productId":"NOPE-3"}}',       # inside another object
        '{"id":"n2","meta":{"productId":"NOPE-4"},"detail":{"productId":"ID7"}}',
        '{"id":"n3","meta":{"productId":"ID6"},"detail":{"fcId":"X"}}',                 # only elsewhere: id-less
        '{"id":"v1","note":"productId","detail":{"productId":"ID8"}}',                  # the key as a value
        '{"id":"v2","detail":{"fcId":"productId"}}',
        '{"id":"v3","note":"\\"productId\\":\\"ID9\\"","detail":{"productId":"NOPE-5"}}',
        '{"id":"v4","x\\"productId":"ID9"}',                                           # key x"productId at the top
        '{"id":"u1","detail":{"productId":"\\u0049D10"}}',                              # \uXXXX in the id
        '{"id":"u2","detail":{"product\\u0049d":"ID11"}}',                              # ... and in the key
        '{"id":"u3","reason":"caf\\u00e9","detail":{"productId":"ID12"}}',              # ... in another string
        '{"id":"u4","detail":{"productId":"\\ud83d\\ude00-ESC"}}',                      # a surrogate pair
        '{"id":"u5","detail":{"productId":"ID22","product\\u0049d":"NOPE-6"}}',         # escaped duplicate wins
        '{"id":"u6","detail":{"productId":"NOPE-7","product\\u0049d":"ID23"}}',
        # Python's json.dumps: ", " and ": ", every non-ASCII character escaped (ensure_ascii)
        json.dumps({"id": "j1", "reason": "caf\u00e9 \u2615", "detail": {"productId": "ID24"}}),
        json.dumps({"id": "j2", "reason": "d\u00e9j\u00e0", "detail": {"productId": "NOPE-13", "fcId": {"a": 1}}}),
        json.dumps({"id": "j3", "detail": {"productId": "ID-\u00c9T\u00c9"}}),              # an escape in the id
        '{"id": "j4", "note": "caf\\u00e9", "detail": {"product\\u00e9Id": "x", "productId": "ID26"}}',
        '{"id": "j5", "note": "caf\\u00e9", "detail": {"productId": "ID27", "product\\u0049d": "NOPE-14"}}',
        '{"id": "j6", "detail": {"productId":  "ID28"}}',                              # two spaces: parsed
        '{"id": "j7", "detail": {"productId": "NOPE-15"}, "note": "\\u00',             # cut inside an escape
        '{"id": "j8", "reason": "caf\\u00e9", "detail": {"productId": "NOPE-16"}',     # cut, plain, not in the set
        '{"id":"q1","msg":"he said \\"hi\\"","detail":{"productId":"ID13"}}',           # escaped quotes
        '{"id":"q2","detail":{"productId":"ID\\"14"}}',                                 # ... in the id
        '{"id":"q3","detail":{"productId":"ID\\\\"}}',                                  # an escaped backslash
        '{"id":"na1","detail":{"productId":"ÉTÉ-日本-😀"}}',                            # non-ASCII id
        '{"id":"d1","detail":{"productId":"NOPE-8","productId":"ID15"}}',               # duplicate keys: last wins
        '{"id":"d2","detail":{"productId":"ID16","productId":"NOPE-9"}}',
        '{"id":"d3","detail":{"productId":"ID17"},"detail":{"productId":"NOPE-10"}}',
        big,                                                                            # a 2 MB line
        "",                                                                             # blank lines
        "   ",
        "\t",
        '{"id":"c1","detail":{"productId":"ID18"',                                      # cut, id in the set
        '{"id":"c2","detail":{"productId":"NOPE-11"',                                   # cut, id not in the set
        '{"id":"c3","detail":{"produ',                                                  # cut before the id
        "[1, 2]",                                                                       # not objects
        '"just a string"',
        '[{"id":"a1","detail":{"productId":"ID19"}}]',
        '{"id":"x1","detail":{"productId":"ID20","fcId":{"a":1}}}',                     # object into a STRING field
        '{"id":"x2","detail":"a string where a struct belongs"}',
        '{"id":"x3","detail":"productId"}',
        '{"id":"m1","detail":{"fcId":"X"}}',                                            # id-less
        '{"id":"m2","detail":{"productId":""}}',
        '{"id":"m3","detail":{"productId":null}}',
        '{"id":"m4","detail":{"productId":"   "}}',
        '{"id":"m5"}',
        '{"id":"plain-out","detail":{"productId":"NOPE-12"}}',                          # plain, not in the set
        "{not json at all",
    ]


def _write_corpus(root: Path) -> List[Tuple[Path, bytes]]:
    folder = root / f"dt={DAY}"
    folder.mkdir(parents=True)
    lines = _corpus_lines()
    half = len(lines) // 2
    bom = "\ufeff" + '{"id":"bom-1","detail":{"productId":"ID-BOM"}}\n' + "".join(f"{line}\n" for line in lines[:half])
    crlf = "".join(f"{line}\r\n" for line in lines[half:]) + '{"id":"crlf-1","detail":{"productId":"ID-CRLF"}}\r\n'
    files = [
        (folder / "part-00000.json.gz", gzip.compress(bom.encode("utf-8"))),   # a UTF-8 BOM at the start
        (folder / "part-00001.json", crlf.encode("utf-8")),                    # CRLF line endings
    ]
    for path, payload in files:
        path.write_bytes(payload)
    return files


def plain_id(line: str) -> Optional[str]:
    """The promise of validate = kept, in plain Python: the plainly written id, or None."""
    if re.search(r"\\u(00[0-7]|.{0,3}$)", line) or line.count(KEY) != 1:
        return None
    for quoted in (f'"{KEY}":"', f'"{KEY}": "'):
        if quoted in line:
            rest = line.split(quoted, 1)[1]
            break
    else:
        return None
    if '"' not in rest:
        return None
    value = rest.split('"', 1)[0]
    return None if "\\" in value or not value.strip(" ") else value


def classify(line: str, ids: Set[str]) -> Tuple[str, Optional[str]]:
    """("kept" | "dropped" | "malformed" | "missing_id", event id) by json.loads."""
    try:
        event = json.loads(line)
    except ValueError:
        return "malformed", None
    if not isinstance(event, dict):
        return "malformed", None
    detail = event.get("detail")
    if detail is not None and not isinstance(detail, dict):
        return "malformed", event.get("id")
    product = (detail or {}).get(KEY)
    if product is None or not str(product).strip(" "):
        return "missing_id", event.get("id")
    return ("kept" if product in ids else "dropped"), event.get("id")


def reference(files: List[Tuple[Path, bytes]], ids: Set[str], validate: str) -> Dict:
    kept, bad, read = set(), {"malformed": 0, "missing_id": 0}, 0
    for path, payload in files:
        raw = gzip.decompress(payload) if path.name.endswith(".gz") else payload
        text = raw.decode("utf-8-sig")  # a BOM opens the file, it is not part of the first event
        for line in re.split(r"\r\n|\r|\n", text):
            if not line.strip(" \t"):
                continue
            read += 1
            verdict, event_id = classify(line, ids)
            if verdict == "kept":
                kept.add((event_id, DAY))
            elif verdict in bad:
                plain = plain_id(line)
                if validate == "all" or plain is None or plain in ids:
                    bad[verdict] += 1
    return {"kept": kept, "read": read, **bad}


@pytest.mark.parametrize("validate, candidate_test", [("kept", "jvm"), ("kept", "builtin"), ("all", "jvm")])
def test_every_line_is_decided_as_plain_python_decides_it(job, validate, candidate_test):
    files = _write_corpus(job.events)
    job.snapshot(IDS)

    report = job.run(f"events.validate={validate}", f"events.candidate_test={candidate_test}")

    if validate == "kept":  # the pre-filter ran, read plain ids the way it was asked to
        assert report.details["candidate_test"] == candidate_test

    ref = reference(files, set(IDS), validate)
    assert output_events(job.output) == ref["kept"]
    assert report.counts["matched"] == len(ref["kept"])
    assert report.counts["events_read"] == ref["read"]
    assert (report.counts["malformed"], report.counts["missing_id"]) == (ref["malformed"], ref["missing_id"])
    rows = [json.loads(line) for path in job.quarantine.rglob("*.json")
            for line in path.read_text(encoding="utf-8").splitlines() if line]
    assert len(rows) == ref["malformed"] + ref["missing_id"]


def test_the_corpus_exercises_both_paths_and_every_verdict():
    """The corpus is not trivially easy: plain and undecided lines, kept and dropped of each."""
    lines = [line for line in _corpus_lines() if line.strip(" \t")]
    verdicts = [(plain_id(line) is not None, classify(line, set(IDS))[0]) for line in lines]
    for plain in (True, False):
        for verdict in ("kept", "dropped", "malformed", "missing_id"):
            if (plain, verdict) == (True, "missing_id"):
                continue  # a plain id is never blank
            assert (plain, verdict) in verdicts, (plain, verdict)
    # the traps: lines whose plainly written-looking id is not the parsed one
    assert plain_id('{"id":"q2","detail":{"productId":"ID\\"14"}}') is None
    assert classify('{"id":"d3","detail":{"productId":"ID17"},"detail":{"productId":"NOPE-10"}}', set(IDS))[0] == "dropped"
