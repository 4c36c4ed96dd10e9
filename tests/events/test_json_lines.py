"""The jar's JSON line parser: row for row what from_json reads wherever a line is valid
UTF-8, and what Spark's JSON source reads from a line that is not."""
import random

import pytest
from pyspark.sql import functions as F

from idstore.config import load_config
from idstore.events.reader import CORRUPT, LINE, parse_lines
from idstore.jvm import JAR

from .test_prefilter import _line

SCHEMA = "id STRING, n INT, detail STRUCT<productId: STRING, attempt: INT, tags: ARRAY<STRING>>"
AWKWARD = [
    '{"id":"a","n":1,"detail":{"productId":"B0A","attempt":2,"tags":["x","y"]}}',
    '{ "id" : "b" , "detail" : { "productId" : "B0\\u0042" } }',  # spaces, an escape
    '{"detail":{"productId":"B0C"},"id":"c","extra":{"productId":"other"}}',  # order, a nested twin
    '{"id":"d","id":"d2","detail":{"productId":"B0D","productId":"B0D2"}}',  # duplicate keys
    '{"id":"e","n":"not a number","detail":{"productId":"B0E"}}',  # a field of the wrong type
    '{"id":"f","detail":"a string, not a struct"}',
    '{"id":"g","detail":{"productId":"日本","attempt":1.5}}',  # non-ASCII, a fraction for an INT
    '{"id":"h","detail":{"productId":"B0H"}',  # cut
    '[{"id":"i"}]', '"just a string"', "42", "null", "{}",
    '{"id":"j","note":"say \\"hi\\"","detail":{"productId":"B0J"}} trailing',
]
NOT_UTF8 = [b'{"id":"k","detail":{"productId":"B0\xffK"}}', b'{"id":"l","note":"\xc3","detail":{"productId":"B0L"}}']


def _rows(frame):
    return sorted(repr(sorted(row.asDict(recursive=True).items())) for row in frame.collect())


def _events(tmp_path):
    return load_config(None, [f"events.path={tmp_path}", "events.format=json", f"events.schema={SCHEMA}",
                              "events.id_field=detail.productId"]).events


def _parsed(spark, path, cfg):
    return parse_lines(spark.read.text(str(path)).filter(F.col(LINE) != ""), cfg)


@pytest.fixture()
def jar():
    assert JAR.is_file(), "idstore's jar is missing: make setup builds it"


def test_the_jar_parses_valid_utf8_lines_as_from_json_does(spark, tmp_path, monkeypatch, jar):
    rng = random.Random(31)
    path = tmp_path / "events.json"
    lines = sorted({_line(rng) for _ in range(3000)}) + AWKWARD
    big = '{"id":"big","detail":{"productId":"B0BIG","tags":["' + "x" * 2_000_000 + '"]}}'
    # a BOM opens the file, one line ends in CRLF
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\r\n" + big.encode() + b"\n")
    cfg = _events(tmp_path)
    with_jar = _rows(_parsed(spark, path, cfg))
    monkeypatch.setattr("idstore.jvm.JAR", tmp_path / "idstore-jvm.jar")  # not built: from_json
    assert _rows(_parsed(spark, path, cfg)) == with_jar
    assert len(with_jar) == len(lines) + 1
    malformed = sum(1 for row in with_jar if f"('{CORRUPT}', None)" not in row)
    assert 0 < malformed < len(with_jar)  # both kinds of line are in the file


def test_a_line_that_is_not_utf8_is_malformed_as_in_the_json_source(spark, tmp_path, monkeypatch, jar):
    path = tmp_path / "bad.json"
    path.write_bytes(b"\n".join(NOT_UTF8) + b"\n")
    cfg = _events(tmp_path)
    source = (spark.read.schema(f"{SCHEMA}, {CORRUPT} STRING").option("mode", "PERMISSIVE")
              .option("columnNameOfCorruptRecord", CORRUPT).json(str(path)))
    with_jar = _parsed(spark, path, cfg)
    assert _rows(with_jar) == _rows(source)
    assert with_jar.filter(F.col(CORRUPT).isNull()).count() == 0
    monkeypatch.setattr("idstore.jvm.JAR", tmp_path / "idstore-jvm.jar")
    # from_json reads a bad byte as U+FFFD and parses the line
    assert _parsed(spark, path, cfg).filter(F.col(CORRUPT).isNull()).count() == len(NOT_UTF8)
