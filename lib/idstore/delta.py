"""Delta runs: what a sync must write, from the validated set and the record of the last run.

`choose_strategy` decides whether the record can be trusted (else the run is a full one, and
says why); `diff` is a pure transform that tags every key new, changed, refresh (its TTL would
lapse before the next full run), unchanged or gone (left the set), in Spark, for any size.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional, Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from idstore.config import Config
from idstore.snapshot import (
    DIGEST,
    EXPIRES_AT,
    FORMAT_VERSION,
    WRITTEN_AT,
    WRITTEN_BY,
    Fingerprint,
    Pointer,
    attribute_digest,
    days_since,
    read_pointer,
)

ACTION = "_action"
NEW, CHANGED, REFRESH, UNCHANGED, GONE = "new", "changed", "refresh", "unchanged", "gone"
PUT_ACTIONS = (NEW, CHANGED, REFRESH)
_IN_SOURCE, _IN_RECORD = "_in_source", "_in_record"
_PREV = "_prev"


@dataclass(frozen=True)
class Strategy:
    """Full or delta, and why; for a delta run, the record it diffs against."""

    delta: bool
    why: str
    pointer: Optional[Pointer] = None
    record: Optional[DataFrame] = None


def choose_strategy(spark: SparkSession, config: Config, now: datetime, full_flag: bool) -> Strategy:
    """A delta run only when the record can be trusted; otherwise a full run naming the reason."""
    cfg = config.dynamodb
    if full_flag:
        return Strategy(False, "--full on the command line", _pointer_or_none(config))
    if cfg.strategy == "full":
        return Strategy(False, "dynamodb.strategy = full", _pointer_or_none(config))
    if not config.snapshot.path:
        return Strategy(False, "snapshot.path is empty: there is no record to diff against")
    try:
        pointer = read_pointer(config)
    except FileNotFoundError:
        return Strategy(False, "no snapshot yet: the first run writes every id")
    except Exception as exc:  # noqa: BLE001 - any unreadable pointer means: do not trust it
        return Strategy(False, f"the snapshot pointer cannot be read ({type(exc).__name__}): writing every id")
    if pointer.format_version != FORMAT_VERSION:
        return Strategy(False, f"the snapshot is format {pointer.format_version}, ids only: it cannot say what "
                               "the table holds", pointer)
    changes = Fingerprint.of(config).changes_from(pointer.fingerprint)
    if changes:
        return Strategy(False, "what shapes an item changed since the snapshot (" + "; ".join(changes) + ")",
                        pointer)
    if cfg.verify_every_runs and pointer.runs_since_verify + 1 >= cfg.verify_every_runs:
        return Strategy(False, f"periodic verification: every {cfg.verify_every_runs}th run is a full run "
                               "(dynamodb.verify_every_runs)", pointer)
    age = days_since(pointer.verified_at, now)
    if cfg.verify_after_days and age > cfg.verify_after_days:
        return Strategy(False, f"the last full run was {age:.1f} days ago, over dynamodb.verify_after_days "
                               f"{cfg.verify_after_days:g}", pointer)
    try:
        record = spark.read.parquet(pointer.path)
        missing = {config.source.id_column, DIGEST, WRITTEN_AT, EXPIRES_AT, WRITTEN_BY} - set(record.columns)
        held = -1 if missing else record.count()
    except Exception as exc:  # noqa: BLE001 - an unreadable record must never become a wrong delta
        return Strategy(False, f"the snapshot {pointer.path} cannot be read ({type(exc).__name__})", pointer)
    if held != pointer.keys:
        return Strategy(False, f"the snapshot {pointer.path} is incomplete: the pointer says {pointer.keys:,} keys, "
                               f"its files hold {max(held, 0):,}", pointer)
    return Strategy(True, f"delta against run {pointer.run_id} ({pointer.keys:,} keys, "
                          f"{pointer.runs_since_verify} delta run(s) since the last full run)", pointer, record)


def _pointer_or_none(config: Config) -> Optional[Pointer]:
    if not config.snapshot.path:
        return None
    try:
        return read_pointer(config)
    except Exception:  # noqa: BLE001 - a full run does not need it; it only carries the verification date
        return None


def refresh_before(config: Config, pointer: Optional[Pointer], now: datetime) -> Optional[int]:
    """Epoch seconds: keys whose TTL lapses before then are put again, or None without a TTL.

    A key must be re-put before its TTL ends unless the next full run (which re-puts every key)
    comes first: that is due when the periodic verification falls due, and a scheduled run
    may come up to a day after that. Keys are also refreshed once half their TTL has passed, so
    a schedule of at least one run every ttl_days / 2 never lets a live id expire.
    """
    cfg = config.dynamodb
    if not cfg.ttl_attribute:
        return None
    horizon = timedelta(days=cfg.ttl_days / 2)
    if cfg.verify_after_days and pointer is not None and pointer.verified_at:
        due = timedelta(days=cfg.verify_after_days - days_since(pointer.verified_at, now) + 1)
        horizon = min(horizon, max(due, timedelta(0)))
    return int((now + horizon).timestamp())


def with_digest(attribute_columns: Sequence[str]):
    """Transform: the digest of each row's attribute values, as the record keeps it."""

    def transform(df: DataFrame) -> DataFrame:
        return df.withColumn(DIGEST, attribute_digest(attribute_columns))

    return transform


def diff(source: DataFrame, record: DataFrame, id_column: str, refresh_ttl_before: Optional[int]) -> DataFrame:
    """Every key of the source set or the record, tagged with ACTION.

    `source` has the id column, the attributes and DIGEST; `record` the id column, DIGEST,
    WRITTEN_AT, WRITTEN_BY and EXPIRES_AT. The result has the source's columns, the record's
    as _prev* columns, and ACTION: new (not in the record), changed (another digest), refresh
    (same digest, but its TTL lapses before `refresh_ttl_before`), unchanged, or gone (in the
    record, not in the source).
    """
    previous = record.select(
        F.col(id_column),
        F.col(DIGEST).alias(_PREV + DIGEST),
        F.col(WRITTEN_AT).alias(_PREV + WRITTEN_AT),
        F.col(WRITTEN_BY).alias(_PREV + WRITTEN_BY),
        F.col(EXPIRES_AT).alias(_PREV + EXPIRES_AT),
        F.lit(True).alias(_IN_RECORD),
    )
    joined = source.withColumn(_IN_SOURCE, F.lit(True)).join(previous, on=id_column, how="full_outer")
    in_source = F.coalesce(F.col(_IN_SOURCE), F.lit(False))
    in_record = F.coalesce(F.col(_IN_RECORD), F.lit(False))
    refresh = F.lit(False)
    if refresh_ttl_before is not None:
        expires = F.col(_PREV + EXPIRES_AT)
        refresh = expires.isNull() | (expires < F.lit(refresh_ttl_before))
    action = (
        F.when(~in_record, F.lit(NEW))
        .when(~in_source, F.lit(GONE))
        .when(F.col(DIGEST) != F.col(_PREV + DIGEST), F.lit(CHANGED))
        .when(refresh, F.lit(REFRESH))
        .otherwise(F.lit(UNCHANGED))
    )
    return joined.withColumn(ACTION, action).drop(_IN_SOURCE, _IN_RECORD)


def next_record(tagged: DataFrame, id_column: str, run_id: str, written_at: int,
                expires_at: Optional[int]) -> DataFrame:
    """The record after a run: what was put carries this run's stamps, the rest keeps its own."""
    put = F.col(ACTION).isin(*PUT_ACTIONS)
    expiry = F.lit(expires_at).cast("long")
    return tagged.where(F.col(ACTION) != GONE).select(
        F.col(id_column),
        F.col(DIGEST),
        F.when(put, F.lit(written_at)).otherwise(F.col(_PREV + WRITTEN_AT)).cast("long").alias(WRITTEN_AT),
        F.when(put, F.lit(run_id)).otherwise(F.col(_PREV + WRITTEN_BY)).alias(WRITTEN_BY),
        F.when(put, expiry).otherwise(F.col(_PREV + EXPIRES_AT)).cast("long").alias(EXPIRES_AT),
    )


def full_record(source: DataFrame, id_column: str, run_id: str, written_at: int,
                expires_at: Optional[int]) -> DataFrame:
    """The record after a full run: every key was written by this run."""
    return source.select(
        F.col(id_column),
        F.col(DIGEST),
        F.lit(written_at).cast("long").alias(WRITTEN_AT),
        F.lit(run_id).alias(WRITTEN_BY),
        F.lit(expires_at).cast("long").alias(EXPIRES_AT),
    )
