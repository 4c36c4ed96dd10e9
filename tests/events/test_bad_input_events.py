"""A bad-event corpus: every valid event of the set arrives, every bad one is counted and
quarantined with its reason, and the run ends as it should; checked against plain Python."""
import gzip
import json
import logging

import pytest

from idstore.errors import RunFailed

from .conftest import nested_event, output_events, reference_filter, write_lines

IDS = [f"BAD{i:05d}" for i in range(50)]
DAY = "2024-06-01"


def _corpus():
    """Lines of every awkward shape; the good ones carry ids of the set."""
    very_long = json.dumps({"id": "long-1", "time": f"{DAY}T00:00:00Z",
                            "detail": {"productId": IDS[3], "reason": "x" * 2_000_000}})
    return [
        nested_event("good-1", IDS[0], DAY),
        nested_event("good-2", IDS[1], DAY),
        very_long,                                                        # a 2 MB line, kept
        json.dumps({"id": "extra-1", "time": f"{DAY}T00:00:00Z", "unknown": [1, 2],
                    "detail": {"productId": IDS[2], "more": {"deep": True}}}),  # extra fields, kept
        json.dumps({"id": "unicode-1", "detail": {"productId": IDS[4], "reason": "日本語 😀 é"}}),
        "{not json",                                                      # malformed
        '{"id": "cut-1", "detail": {"productId": "BAD0',                  # cut mid-line
        "[1, 2, 3]",                                                      # JSON, but not an object
        json.dumps({"id": "str-detail", "detail": "a string where a struct belongs"}),
        json.dumps({"id": "no-detail"}),                                  # missing id
        json.dumps({"id": "null-id", "detail": {"productId": None}}),     # missing id
        json.dumps({"id": "empty-id", "detail": {"productId": ""}}),      # missing id
        json.dumps({"id": "num-id", "detail": {"productId": 12345}}),     # mistyped: read as text, not in the set
        json.dumps({"id": "bool-id", "detail": {"productId": True}}),     # mistyped: read as text, not in the set
        json.dumps({"id": "other-1", "detail": {"productId": "NOT-IN-SET"}}),
    ]


@pytest.mark.parametrize("bad_events_brought_back, jar", [(10_000, True), (0, True), (10_000, False)],
                         ids=["from-the-pass", "read-again", "read-again-without-the-jar"])
def test_every_bad_line_is_counted_and_quarantined_and_every_good_event_arrives(job, monkeypatch, caplog, tmp_path,
                                                                                bad_events_brought_back, jar):
    # the pass brings back up to GATHERED_BAD_EVENTS bad events with idstore's jar; past that, or
    # without the jar, the quarantine reads the files again
    monkeypatch.setattr("idstore.events.passes.GATHERED_BAD_EVENTS", bad_events_brought_back)
    if not jar:
        monkeypatch.setattr("idstore.jvm.JAR", tmp_path / "idstore-jvm.jar")  # not built
    caplog.set_level(logging.INFO, logger="idstore.events.quarantine")
    write_lines(job.events, DAY, "part-00000.json.gz", _corpus())
    write_lines(job.events, DAY, "part-00001.json", [])                   # an empty plain file
    (job.events / f"dt={DAY}" / "part-00002.json.gz").write_bytes(gzip.compress(b""))  # an empty gzip file
    job.snapshot(IDS)

    report = job.run()

    ref = reference_filter(job.events, set(IDS), "detail.productId")
    assert output_events(job.output) == ref.kept == {
        ("good-1", DAY), ("good-2", DAY), ("long-1", DAY), ("extra-1", DAY), ("unicode-1", DAY),
    }
    assert report.counts["events_read"] == sum(ref.read.values()) == len(_corpus())
    assert report.counts["malformed"] == ref.count("malformed") == 4
    assert report.counts["missing_id"] == ref.count("missing_id") == 3
    rows = [json.loads(line) for path in job.quarantine.rglob("*.json")
            for line in path.read_text(encoding="utf-8").splitlines() if line]
    assert sorted(r["reason"] for r in rows) == sorted(r for r, _, _ in ref.bad)
    assert {r["raw"] for r in rows if r["reason"] == "malformed"} == {
        line for reason, _, line in ref.bad if reason == "malformed"
    }
    assert {r["dt"] for r in rows} == {DAY}
    assert {r["source_file"].rsplit("/", 1)[-1] for r in rows} == {"part-00000.json.gz"}
    assert {json.loads(r["raw"]).get("id") for r in rows if r["reason"] == "missing_id"} == {
        "no-detail", "null-id", "empty-id"}
    assert ("reading them again" in caplog.text) == (bad_events_brought_back == 0 or not jar)


def test_a_line_that_is_not_utf8_is_malformed_and_quarantined(job):
    def with_bad_byte(line: str) -> bytes:  # written compactly, so kept reads its plain id
        return json.dumps(json.loads(line), separators=(",", ":")).encode().replace(b'"pick"', b'"p\xffck"')

    lines = [nested_event("good-1", IDS[0], DAY).encode(), with_bad_byte(nested_event("bytes-in-set", IDS[1], DAY)),
             with_bad_byte(nested_event("bytes-other", "NOT-IN-SET", DAY))]
    path = job.events / f"dt={DAY}" / "part-00000.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\n".join(lines) + b"\n")
    job.snapshot(IDS)

    def utf8(line: bytes) -> bool:
        try:
            line.decode("utf-8")
            return True
        except UnicodeDecodeError:
            return False

    in_set = [json.loads(line.decode("utf-8", "replace"))["detail"]["productId"] in IDS for line in lines]
    for validate in ("kept", "all"):
        report = job.run(f"events.validate={validate}", run_id=f"utf8-{validate}")
        assert report.details["json_parser"] == "jvm"
        assert output_events(job.output) == {("good-1", DAY)}
        # kept parses only the lines whose plain id is in the set; all parses every line
        bad = [not utf8(line) and (validate == "all" or member) for line, member in zip(lines, in_set)]
        assert report.counts["malformed"] == sum(bad) == (1 if validate == "kept" else 2)


def test_a_truncated_gzip_among_good_files_fails_the_run_by_default_and_is_skipped_when_asked(job):
    write_lines(job.events, DAY, "part-00000.json.gz", [nested_event(f"ok-{i}", IDS[i % 50], DAY) for i in range(200)])
    victim = write_lines(job.events, DAY, "part-00001.json.gz", [nested_event(f"lost-{i}", IDS[0], DAY)
                                                                 for i in range(2000)])
    victim.write_bytes(victim.read_bytes()[:-40])  # the gzip trailer and some data are gone
    job.snapshot(IDS)

    with pytest.raises(RunFailed, match="events.skip_corrupt_files"):
        job.run()
    report = job.run("events.skip_corrupt_files=true", run_id="run-2")

    assert output_events(job.output) == {(f"ok-{i}", DAY) for i in range(200)}
    assert report.counts["corrupt_files_skipped"] == 1
    assert any(path.endswith(victim.name) for path in report.details["skipped_files"])
