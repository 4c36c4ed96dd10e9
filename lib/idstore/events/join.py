"""Keeping the events whose id is in the set: a left-semi join, broadcast while the set fits.

Never a Python UDF: the lookup stays in the JVM and, under the ceiling, the events are
never shuffled. Over the ceiling (rows or estimated bytes) a sort-merge join shuffles them.
"""
import logging
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from idstore.events.prefilter import UNDECIDED

log = logging.getLogger(__name__)

JOIN_KEY = "_idstore_event_id"
# Spark's broadcast hash table of short string keys costs about 100 bytes a key on top of
# the key itself (BytesToBytesMap entry, key and value UnsafeRows, pointers).
HASH_TABLE_BYTES_PER_KEY = 96


def join_keys(ids: DataFrame, id_col: str, broadcast: bool, undecided: bool = False) -> DataFrame:
    """The set as one JOIN_KEY column, hinted for the join; with `undecided`, plus prefilter.UNDECIDED."""
    keys = ids.select(F.col(id_col).cast("string").alias(JOIN_KEY))
    if undecided:
        # one row from a SELECT: spark.range's first call costs 0.7 s of a run on the driver
        sentinel = ids.sparkSession.sql("SELECT 1").select(F.lit(UNDECIDED).alias(JOIN_KEY))
        keys = keys.unionByName(sentinel)
    return F.broadcast(keys) if broadcast else keys.hint("shuffle_merge")


def semi_join(events: DataFrame, event_key: Column, keys: DataFrame) -> DataFrame:
    """The events whose `event_key` is in `keys` (a join_keys frame); columns of `events` unchanged.

    The key is the join's condition, not a column: one step for Spark to analyse, not three.
    """
    return events.join(keys, event_key == keys[JOIN_KEY], "left_semi")


@dataclass(frozen=True)
class JoinChoice:
    broadcast: bool
    ids: int
    estimated_bytes: int
    why: str


def estimated_broadcast_bytes(id_count: int, id_bytes: int) -> int:
    """Driver and executor memory the broadcast hash table will take, roughly."""
    return int(id_bytes + id_count * HASH_TABLE_BYTES_PER_KEY)


def choose_join(id_count: int, max_rows: int, id_bytes: int = 0, max_bytes: int = 0) -> JoinChoice:
    """Broadcast while the set is within both ceilings (rows; estimated bytes, 0 = none), else sort-merge."""
    size = estimated_broadcast_bytes(id_count, id_bytes)
    mib = f"{size / 2**20:,.1f} MiB"
    if id_count > max_rows:
        why = (f"sort-merge left-semi join: {id_count:,} ids > events.broadcast_max_rows {max_rows:,}; "
               "the events will be shuffled")
        return JoinChoice(False, id_count, size, why)
    if max_bytes and size > max_bytes:
        why = (f"sort-merge left-semi join: {id_count:,} ids, an estimated {mib} hash table > "
               f"events.broadcast_max_bytes {max_bytes:,}; the events will be shuffled")
        return JoinChoice(False, id_count, size, why)
    why = f"broadcast left-semi join: {id_count:,} ids (estimated {mib}) within events.broadcast_max_rows/_bytes"
    return JoinChoice(True, id_count, size, why)
