"""Id validation against a plain-Python reference."""
from chispa import assert_df_equality

from idstore.validation import distinct_ids, normalise_ids, split_valid_ids


def reference_reason(value):
    if value is None:
        return "null"
    if value == "":
        return "empty"
    if value.strip(" \t\n\r\f\v") == "":
        return "blank"
    if len(value.encode("utf-8")) > 2048:
        return "key_too_long"
    return None


IDS = [
    "B000000001", None, "", "   ", "\t", "x" * 2048, "x" * 2049, "é" * 1024, "é" * 1025,
    "日本語", "😀" * 512, "😀" * 513, " padded ", "B000000001", "ctl\x01char",
]


def test_split_matches_the_reference(spark):
    df = spark.createDataFrame([(v,) for v in IDS], "product_id string")
    valid, rejected = split_valid_ids(df, "product_id")
    expected_valid = sorted(v for v in IDS if reference_reason(v) is None)
    expected_rejected = sorted((str(v), reference_reason(v)) for v in IDS if reference_reason(v))
    assert sorted(r.product_id for r in valid.collect()) == expected_valid
    assert sorted((str(r.product_id), r.reason) for r in rejected.collect()) == expected_rejected


def test_distinct_collapses_duplicates(spark):
    df = spark.createDataFrame([("a",), ("b",), ("a",)], "product_id string")
    assert sorted(r.product_id for r in distinct_ids(df, "product_id").collect()) == ["a", "b"]


def test_normalise_is_off_by_default_and_trims_and_folds_when_asked(spark):
    df = spark.createDataFrame([(" Ab ",), ("cD",)], "product_id string")
    assert_df_equality(df.transform(normalise_ids("product_id")), df, ignore_nullable=True)
    expected = spark.createDataFrame([("ab",), ("cd",)], "product_id string")
    assert_df_equality(
        df.transform(normalise_ids("product_id", trim=True, case="lower")), expected, ignore_nullable=True
    )


def test_numeric_ids_become_strings(spark):
    df = spark.createDataFrame([(1,), (20,)], "product_id bigint")
    out = df.transform(normalise_ids("product_id"))
    assert out.schema["product_id"].dataType.simpleString() == "string"
    assert sorted(r.product_id for r in out.collect()) == ["1", "20"]


def test_normalisation_runs_before_validation_so_trimmed_ids_collapse_or_are_rejected(spark):
    df = spark.createDataFrame([(" a ",), ("a",), ("   ",), ("A",)], "product_id string")
    normalised = df.transform(normalise_ids("product_id", trim=True, case="upper"))
    valid, rejected = split_valid_ids(normalised, "product_id")
    assert [r.product_id for r in distinct_ids(valid, "product_id").collect()] == ["A"]
    assert [(r.product_id, r.reason) for r in rejected.collect()] == [("", "empty")]
