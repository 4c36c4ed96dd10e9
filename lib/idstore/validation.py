"""Id validation: normalise, split valid from rejected (with a reason), collapse duplicates.

Pure DataFrame transforms; counting and writing the rejects is the caller's business.
"""
from typing import Tuple

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

MAX_KEY_BYTES = 2048  # DynamoDB partition key limit, in UTF-8 bytes
REASON = "reason"


def normalised_key(value: Column, trim: bool = False, case: str = "keep") -> Column:
    """An id as the table stores it: string, optionally trimmed and case-folded.

    Sync applies it to the source ids, filter to the event ids, so both sides match.
    """
    value = value.cast("string")
    if trim:
        value = F.trim(value)
    if case == "lower":
        value = F.lower(value)
    elif case == "upper":
        value = F.upper(value)
    return value


def normalise_ids(column: str, trim: bool = False, case: str = "keep"):
    """Transform: `column` replaced by its normalised_key."""

    def transform(df: DataFrame) -> DataFrame:
        return df.withColumn(column, normalised_key(F.col(column), trim, case))

    return transform


def rejection_reason(column: str) -> Column:
    """Why an id cannot be a DynamoDB key, or NULL when it can."""
    value = F.col(column)
    return (
        F.when(value.isNull(), F.lit("null"))
        .when(F.length(value) == 0, F.lit("empty"))
        .when(value.rlike(r"^\s+$"), F.lit("blank"))
        .when(F.octet_length(value) > MAX_KEY_BYTES, F.lit("key_too_long"))
    )


def split_valid_ids(df: DataFrame, column: str) -> Tuple[DataFrame, DataFrame]:
    """(valid rows, rejected rows with a `reason` column)."""
    flagged = df.withColumn(REASON, rejection_reason(column))
    valid = flagged.filter(F.col(REASON).isNull()).drop(REASON)
    rejected = flagged.filter(F.col(REASON).isNotNull())
    return valid, rejected


def distinct_ids(df: DataFrame, column: str) -> DataFrame:
    """One row per id; which duplicate survives is arbitrary but deterministic per run."""
    return df.dropDuplicates([column])
