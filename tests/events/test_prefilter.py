"""The cheap candidate test on raw lines: what it reads equals what json.loads finds, or it
reads nothing. Checked on thousands of generated lines built from awkward fragments."""
import json
import random
import re

import pytest
from pyspark.sql import functions as F

from idstore.events.prefilter import CANDIDATE, UNDECIDED, key_name, plain_shape_possible, with_candidate_key
from idstore.jvm import JAR, plain_value

KEY = "productId"
# fragments a line is built from: every trap the test must not fall into
VALUES = ['"B0AAA"', '"B0\\u0041A"', '"B0\\"Q"', '"B0\\\\"', '"日本"', '""', '"  "', "null", "12", '"B0 X"']
KEYS = ['"productId"', '"product\\u0049d"', '"productid"', '"ProductId"', '"x\\"productId"', "'productId'"]
SEPARATORS = [":", " : ", ": ", " :"]
NOISE = ['"note":"productId"', '"msg":"say \\"hi\\""', '"caf\\u00e9":"x"', '"n":1', '"a":[1,{"b":2}]',
         '"productId":"B0TOP"']


def _line(rng: random.Random) -> str:
    detail = []
    for _ in range(rng.randint(0, 2)):
        detail.append(rng.choice(KEYS) + rng.choice(SEPARATORS) + rng.choice(VALUES))
    detail += [rng.choice(NOISE) for _ in range(rng.randint(0, 2))]
    rng.shuffle(detail)
    top = ['"id":"e"', '"detail":{' + ",".join(detail) + "}"] + [rng.choice(NOISE) for _ in range(rng.randint(0, 2))]
    if rng.random() < 0.2:
        top.append('"meta":{"productId":' + rng.choice(VALUES) + "}")
    rng.shuffle(top)
    line = "{" + ",".join(top) + "}"
    cut = rng.random()
    if cut < 0.1:
        line = line[: rng.randint(1, len(line))]
    elif cut < 0.15:
        line = "[" + line + "]"
    return line


def _parsed_id(line: str):
    """detail.productId as json.loads finds it in an event object, else None."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    detail = event.get("detail") if isinstance(event, dict) else None
    value = detail.get(KEY) if isinstance(detail, dict) else None
    return value if isinstance(value, str) else None


@pytest.fixture(scope="module")
def jvm_function(spark):
    assert JAR.is_file(), "idstore's jar is missing: make setup builds it"


@pytest.mark.parametrize("jvm", [True, False], ids=["jvm", "builtin"])
def test_a_read_candidate_is_always_the_parsed_id_and_plain_lines_are_read(spark, jvm_function, jvm):
    rng = random.Random(13)
    lines = sorted({_line(rng) for _ in range(6000)})
    frame = spark.createDataFrame([(line,) for line in lines], "value string")
    got = dict(frame.transform(with_candidate_key("value", KEY, jvm=jvm)).select("value", CANDIDATE).collect())

    read = {line: value for line, value in got.items() if value != UNDECIDED}
    assert len(read) > 200 and len(got) - len(read) > 200  # both paths are exercised
    for line, value in read.items():
        # exactness: a line the test reads is dropped when its value is not in the set, so the
        # value must be what a parser finds, or the line must be unable to match at all
        parsed = _parsed_id(line)
        assert parsed is None or parsed == value, line
    spelled = [line for line in lines if line.count(KEY) == 1 and not re.search(r"\\u(00[0-7]|.{0,3}$)", line)
               and (f'"{KEY}":"B0AAA"' in line or f'"{KEY}": "B0AAA"' in line)]
    assert any(": " in line for line in spelled) and any("\\u00e9" in line for line in spelled)
    for line in spelled:
        # the common shapes are read, not sent the full way: compact, and json.dumps' ": " with
        # non-ASCII characters escaped anywhere
        assert got[line] == "B0AAA", line


def test_the_candidate_is_normalised_like_the_set():
    # trim and case as validation.* say, so a plain id meets the set as sync wrote it
    assert key_name("detail.productId") == "productId" and key_name("productId") == "productId"
    assert plain_shape_possible("productId")
    assert not plain_shape_possible('a"b') and not plain_shape_possible("a:b") and not plain_shape_possible("")


@pytest.mark.parametrize("jvm", [True, False], ids=["jvm", "builtin"])
def test_trim_and_case_apply_to_the_plain_id(spark, jvm_function, jvm):
    frame = spark.createDataFrame([('{"detail":{"productId":" b0abc "}}',), ('{"detail":{"productId":"  "}}',),
                                   (None,)], "value string")
    got = [row[CANDIDATE] for row in frame.transform(with_candidate_key("value", KEY, True, "upper", jvm)).collect()]
    assert got == ["B0ABC", UNDECIDED, UNDECIDED]  # a blank or missing line is never read


def test_the_jvm_function_and_the_built_in_test_agree_line_by_line(spark, jvm_function):
    rng = random.Random(29)
    lines = sorted({_line(rng) for _ in range(6000)})
    frame = spark.createDataFrame([(line,) for line in lines], "value string")
    jvm, builtin = ({row["value"]: row[CANDIDATE] for row in frame.transform(with_candidate_key("value", KEY, jvm=on))
                     .select("value", CANDIDATE).collect()} for on in (True, False))
    assert jvm == builtin


def test_a_value_whose_bytes_are_not_utf8_goes_to_the_parse(spark, jvm_function):
    # the parse decodes a malformed byte to U+FFFD, so only a value that decodes to itself is read
    lines = {
        "bad byte in the value": b'{"detail":{"productId":"B0\xffX"}}',
        "bad byte elsewhere": b'{"note":"\xff","detail":{"productId":"B0OK"}}',
        "valid non-ascii value": '{"detail":{"productId":"B0日本"}}'.encode(),
    }
    frame = spark.createDataFrame([(name, bytearray(raw)) for name, raw in lines.items()], "name string, raw binary")
    frame = frame.select("name", frame["raw"].cast("string").alias("value"))
    got = dict(frame.transform(with_candidate_key("value", KEY, jvm=True)).select("name", CANDIDATE).collect())
    assert got == {"bad byte in the value": UNDECIDED, "bad byte elsewhere": "B0OK", "valid non-ascii value": "B0日本"}


def test_without_the_jar_the_jvm_test_is_the_built_in_one(spark, monkeypatch, tmp_path):
    monkeypatch.setattr("idstore.jvm.JAR", tmp_path / "idstore-jvm.jar")  # not built
    assert plain_value(spark, F.col("value"), KEY) is None
    frame = spark.createDataFrame([('{"detail":{"productId":" b0abc "}}',), ('{"detail":{"productId":"B0\\u0041"}}',),
                                   (None,)], "value string")
    got = [row[CANDIDATE] for row in frame.transform(with_candidate_key("value", KEY, True, "upper", jvm=True)).collect()]
    assert got == ["B0ABC", UNDECIDED, UNDECIDED]  # read as the jar would, the escape left to the parse
