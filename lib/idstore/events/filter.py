"""Keeping the events whose id is in the set: a left-semi join, broadcast while the set fits.

Never a Python UDF: the lookup stays in the JVM and the events are never shuffled.
"""
import logging
from typing import Tuple

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from idstore.events.reader import CORRUPT

log = logging.getLogger(__name__)

JOIN_KEY = "_idstore_event_id"
STATUS = "_idstore_status"  # ok | malformed | missing_id


def with_status(event_id: Column):
    """Transform: tag each event ok, malformed (unparseable line) or missing_id."""

    def transform(df: DataFrame) -> DataFrame:
        status = F.when(F.lit(False), F.lit(None))
        if CORRUPT in df.columns:
            status = status.when(F.col(CORRUPT).isNotNull(), F.lit("malformed"))
        status = status.when(event_id.isNull() | (F.trim(event_id.cast("string")) == ""), F.lit("missing_id"))
        return df.withColumn(STATUS, F.coalesce(status, F.lit("ok")))

    return transform


def keep_events_in_set(events: DataFrame, event_id: Column, ids: DataFrame, id_col: str, broadcast: bool) -> DataFrame:
    """The events whose `event_id` is in `ids[id_col]`; columns of `events` unchanged."""
    keys = ids.select(F.col(id_col).cast("string").alias(JOIN_KEY))
    keys = F.broadcast(keys) if broadcast else keys.hint("shuffle_merge")
    keyed = events.withColumn(JOIN_KEY, event_id.cast("string"))
    return keyed.join(keys, on=JOIN_KEY, how="left_semi").drop(JOIN_KEY)


def choose_join(id_count: int, max_rows: int) -> Tuple[bool, str]:
    """(broadcast?, why): a broadcast while the set fits, else a sort-merge join."""
    if id_count <= max_rows:
        return True, f"broadcast left-semi join: {id_count} ids <= events.broadcast_max_rows {max_rows}"
    return False, (
        f"sort-merge left-semi join: {id_count} ids > events.broadcast_max_rows {max_rows}; "
        "the events will be shuffled"
    )
