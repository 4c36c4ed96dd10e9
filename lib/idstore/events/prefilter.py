"""A cheap, exact candidate test on raw JSON lines, so only candidates pay for the full parse.

Most events are dropped, and parsing every field of every line is most of a JSON run's cost.
`with_candidate_key` reads the id off the raw text (with idstore's JVM function, or the same
test in byte-level string built-ins; no regex, no Python) when the line has the one plain
shape it can read with certainty, and
gives every other line the key UNDECIDED, which the id set is joined with too: so a line
is dropped unparsed only when its plainly written id is not in the set.

Why a dropped line can never match. Let K be the id's key name (`productId` of
`detail.productId`), ASCII and holding no quote, backslash or colon. The test reads V only
when all of these hold:
  1. the line holds no `\\u00XX` escape of an ASCII character (`\\u0000` to `\\u007f`, or
     one cut short): only such an escape can spell a character of K, a quote or a colon
     without its literal byte. An escape of a non-ASCII character (what Python's json.dumps
     writes for every one, `ensure_ascii`) spells none of them, and escapes occur only
     inside strings, so it changes no token outside the string it sits in;
  2. K occurs exactly once in the line, as `"K":"` or `"K": "` (json.dumps' spelling);
  3. the text after it, up to the next `"`, V, holds no backslash (no escape in the value)
     and is not blank, and that `"` exists.
A line whose parse is ok and whose id field is a string can only spell that field's key
with the literal K (1.), and there is one K (2.), so the key token is that one: a key
anywhere else, a duplicate or a nested twin would be a second K; a K inside a string or
in another position means the field is absent and the line cannot match. The value
after the colon is a JSON string ending at the first unescaped quote; with no backslash in
V, that is the next quote and the parsed value is V itself. So a line whose V is not in
the set cannot match, and a line the test cannot read goes the full way. The final
decision is still the parsed field's: candidates and undecided lines are parsed, a
candidate is kept when its parsed id is the one it was looked up with, an undecided line
when its parsed id is in the set (a second join, over the few lines the first one kept).
"""
from typing import Tuple

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from idstore.jvm import plain_value
from idstore.validation import normalised_key

CANDIDATE = "_idstore_candidate"
# The join key of a line the cheap test cannot decide. Never a real id: sync rejects
# empty ids, and a parsed event with an empty id is missing_id, never joined.
UNDECIDED = ""
_AFTER = "_idstore_after_key"
_HEAD = "_idstore_before_key"
_VALUE = "_idstore_plain_value"
# a \\u escape of an ASCII character, or one cut short at the end of the line (Java regex)
ASCII_ESCAPE = r"\\u(00[0-7]|.{0,3}$)"


def key_name(id_field: str) -> str:
    """The last name of a (possibly nested) id field: the key the line spells."""
    return id_field.split(".")[-1]


def plain_shape_possible(key: str) -> bool:
    """The test reads only ASCII keys without quotes, backslashes or `:` in their name."""
    return bool(key) and key.isascii() and not any(c in key for c in '"\\:') and key.strip() == key


def with_candidate_key(line: str, key: str, trim: bool = False, case: str = "keep", jvm: bool = False):
    """Transform: CANDIDATE = the normalised plain id of `line`, or UNDECIDED.

    `jvm`: read it with idstore's jar (idstore.jvm.plain_value): one pass over the line's
    bytes, in the stage's generated code. Else (or without the jar) with byte-level built-ins,
    the same test: a regex would decode every line to UTF-16 first, and instr/locate count
    characters. The one search that compares at every byte (substring_index) runs once, from
    the end, to the last `"K":"`; the text before it is cut by bytes (a binary substring), and
    the checks on both sides are `contains`, which skips to the next first byte. "K occurs
    once" is: no K before the last `"K":"` and none after it (K holds no quote, so no other K
    can overlap it).
    """
    def transform(df: DataFrame) -> DataFrame:
        read_in_jvm = plain_value(df.sparkSession, F.col(line), key) if jvm else None
        staged, value = (df, read_in_jvm) if read_in_jvm is not None else _plain_value(df, line, key)
        # coalesce, not when(value is not null, ...): a value spelt twice in a conditional
        # branch is not a common subexpression, so the test would run twice a line
        candidate = F.coalesce(normalised_key(value, trim, case), F.lit(UNDECIDED))
        # a non-deterministic identity: the join's inferred not-null filter stays above this
        # projection instead of being pushed below it with the whole test inlined (run twice)
        candidate = F.when(F.spark_partition_id() >= 0, candidate)
        return staged.withColumn(CANDIDATE, candidate).drop(_AFTER, _HEAD, _VALUE)

    return transform


def _plain_value(df: DataFrame, line: str, key: str) -> Tuple[DataFrame, Column]:
    """The built-in test: `df` with its staging columns, and the plain value or null."""
    text, after, head, value = F.col(line), F.col(_AFTER), F.col(_HEAD), F.col(_VALUE)
    # the text after the LAST `"K":"`, or after the last `"K": "` when there is no `"K":"`; the
    # line itself when there is neither (K occurs once, so a line has at most one of them)
    tight, spaced = f'"{key}":"', f'"{key}": "'
    after_tight = F.substring_index(text, tight, -1)
    has_tight = F.octet_length(after_tight) < F.octet_length(text)
    staged = df.withColumn(_AFTER, F.when(has_tight, after_tight).otherwise(F.substring_index(text, spaced, -1)))
    quoted_bytes = F.when(has_tight, F.lit(len(tight.encode("utf-8")))).otherwise(F.lit(len(spaced.encode("utf-8"))))
    head_bytes = F.octet_length(text) - F.octet_length(after) - quoted_bytes
    staged = staged.withColumn(_HEAD, text.cast("binary").substr(F.lit(1), head_bytes).cast("string"))
    staged = staged.withColumn(_VALUE, F.substring_index(after, '"', 1))
    sure = (
        (F.octet_length(after) < F.octet_length(text))  # a `"K":"` or `"K": "` exists ...
        & ~head.contains(key) & ~after.contains(key)  # ... and its K is the only K
        & ~text.rlike(ASCII_ESCAPE)
        & (F.octet_length(value) < F.octet_length(after))  # the value's closing quote exists
        & ~value.contains("\\")
        & (F.trim(value) != "")
    )
    return staged, F.when(sure, value)


def decided_by_parse(parsed_key: Column) -> Column:
    """After the join and the parse: whether a line may be kept on its parsed, normalised id.

    A plain line was looked up by its plain id, so its parsed id must be that id; an
    undecided line went through on the sentinel, so its parsed id is looked up in the set
    again (a second semi join over these few lines, after this filter).
    """
    return (F.col(CANDIDATE) == UNDECIDED) | (parsed_key == F.col(CANDIDATE))
