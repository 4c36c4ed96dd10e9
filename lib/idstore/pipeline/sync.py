"""The sync job: source ids -> validated set -> DynamoDB table (upsert or mirror), reconciled.

A run reads and validates (quarantining the rejects), passes every guard, and only then
writes: puts, then mirror deletes, then the snapshot. A re-run repeats the same puts
(idempotent) and deletes whatever is still stale, so it converges after any failure.
"""
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Sequence

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from idstore import io
from idstore.config import Config, ConfigError, DynamoDBConfig
from idstore.dynamodb import table as ddb
from idstore.pipeline.common import RunFailed, RunRefused, RunReport
from idstore.snapshot import write_snapshot
from idstore.source.credentials import resolve_credentials
from idstore.source.jdbc import read_source
from idstore.validation import REASON, distinct_ids, normalise_ids, split_valid_ids

log = logging.getLogger(__name__)

ITEMS_PER_WRITE_PARTITION = 50_000  # small enough that a retried task redoes little
SYNCED_AT, RUN_ID = "synced_at", "run_id"  # on every item: when and by which run it was written
SECONDS_PER_DAY = 86_400
KEY = "key"  # the scanner's column
_NUMBER_TYPES = (
    T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType,
)


# -- reading and shaping ---------------------------------------------------------------
def load_id_set(spark: SparkSession, config: Config, environ: Mapping[str, str]):
    """(source rows, valid distinct ids, rejected rows with a reason), source read once."""
    source = config.source
    credentials = resolve_credentials(source, config.aws, environ)
    columns = [source.id_column, *source.attribute_columns]
    raw = read_source(spark, source, credentials)
    _check_columns(raw, columns)
    raw = raw.select(*columns).transform(with_attribute_types(source.attribute_columns))
    normalised = raw.transform(normalise_ids(source.id_column, config.validation.trim, config.validation.case))
    normalised = normalised.persist(StorageLevel.MEMORY_AND_DISK)
    valid, rejected = split_valid_ids(normalised, source.id_column)
    return normalised, distinct_ids(valid, source.id_column), rejected


def with_attribute_types(columns: Sequence[str]):
    """Transform: attribute columns as values the writer maps to S, N or BOOL.

    Strings stay strings (S), every numeric type (JDBC numeric arrives as decimal) stays a
    number (N), booleans BOOL; dates and timestamps become ISO-8601 strings. Other types
    (binary, arrays, structs) have no faithful mapping and are refused, naming the column.
    """

    def transform(df: DataFrame) -> DataFrame:
        for name in columns:
            dtype = df.schema[name].dataType
            if isinstance(dtype, (T.StringType, T.BooleanType) + _NUMBER_TYPES):
                continue
            if isinstance(dtype, T.DateType):
                df = df.withColumn(name, F.date_format(name, "yyyy-MM-dd"))
            elif isinstance(dtype, T.TimestampNTZType):
                df = df.withColumn(name, F.date_format(name, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS"))
            elif isinstance(dtype, T.TimestampType):
                df = df.withColumn(name, F.date_format(name, "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"))
            else:
                raise ConfigError(
                    f"source.attribute_columns: column {name!r} is {dtype.simpleString()}; "
                    "only strings, numbers, booleans, dates and timestamps map to DynamoDB S, N or BOOL"
                )
        return df

    return transform


def item_constants(cfg: DynamoDBConfig, attribute_columns: Sequence[str], run_id: str,
                   now: datetime) -> Dict[str, Any]:
    """Attributes every item of this run gets: synced_at, run_id and the optional TTL."""
    constants: Dict[str, Any] = {SYNCED_AT: now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                 RUN_ID: run_id}
    if cfg.ttl_attribute:
        if cfg.ttl_days <= 0:
            raise ConfigError("dynamodb.ttl_days: expected at least 1 when dynamodb.ttl_attribute is set")
        if cfg.ttl_attribute in constants or cfg.ttl_attribute == cfg.key_attribute:
            raise ConfigError(f"dynamodb.ttl_attribute: {cfg.ttl_attribute!r} is already an attribute idstore writes")
        # DynamoDB TTL reads a Number of epoch seconds
        constants[cfg.ttl_attribute] = int(now.timestamp()) + cfg.ttl_days * SECONDS_PER_DAY
    elif cfg.ttl_days:
        raise ConfigError("dynamodb.ttl_days: set, but dynamodb.ttl_attribute is empty")
    clashes = sorted(set(attribute_columns) & ({cfg.key_attribute} | set(constants)))
    if clashes:
        raise ConfigError(
            f"source.attribute_columns: {', '.join(clashes)} would overwrite the key or an attribute idstore writes"
        )
    return constants


def _check_columns(df: DataFrame, columns: Sequence[str]) -> None:
    present = {name.lower() for name in df.columns}
    missing = [name for name in columns if name.lower() not in present]
    if missing:
        raise ConfigError(
            f"source.query returns no column {', '.join(missing)} (source.id_column / source.attribute_columns); "
            f"it returns {', '.join(df.columns)}"
        )


def count_rejected(rejected: DataFrame) -> Dict[str, int]:
    return {row[REASON]: row["count"] for row in rejected.groupBy(REASON).count().collect()}


def write_quarantine(rejected: DataFrame, config: Config, run_id: str) -> Optional[str]:
    """Rejected rows with their reason as JSON lines under quarantine_path/sync/run_id=.../."""
    if not config.output.quarantine_path:
        return None
    target = io.join(config.output.quarantine_path, "sync", f"run_id={run_id}")
    (
        rejected.select(F.col(config.source.id_column).alias("id"), REASON, *config.source.attribute_columns)
        .write.mode("overwrite")
        .option("ignoreNullFields", "false")  # a null id shows as "id": null
        .json(target)
    )
    return target


# -- mirror mode -----------------------------------------------------------------------
@dataclass(frozen=True)
class StaleKeys:
    """The table's keys before the run, and those not in the source set (persisted)."""

    table_keys: int
    deletes: int
    keys: DataFrame
    stale: DataFrame


def find_stale_keys(spark: SparkSession, cfg: DynamoDBConfig, ids: DataFrame, id_column: str,
                    read_rate: float) -> StaleKeys:
    """Parallel Scan of the table, anti-joined with the source ids."""
    keys = ddb_scan(spark, cfg, read_rate).persist(StorageLevel.MEMORY_AND_DISK)
    table_keys = keys.count()
    in_source = ids.select(F.col(id_column).alias(KEY))
    stale = keys.join(in_source, on=KEY, how="left_anti").persist(StorageLevel.MEMORY_AND_DISK)
    return StaleKeys(table_keys, stale.count(), keys, stale)


def ddb_scan(spark: SparkSession, cfg: DynamoDBConfig, read_rate: float) -> DataFrame:
    from idstore.dynamodb.scanner import scan_keys

    return scan_keys(spark, cfg, read_rate=read_rate)


def scan_read_rate(cfg: DynamoDBConfig, table: Mapping[str, Any]) -> float:
    """RCU/s for the mirror Scan: dynamodb.read_rate, else the write rule applied to reads."""
    if cfg.read_rate > 0:
        return cfg.read_rate
    billing = table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
    provisioned = table.get("ProvisionedThroughput", {}).get("ReadCapacityUnits", 0)
    if billing != "PAY_PER_REQUEST" and provisioned:
        return cfg.capacity_fraction * provisioned
    return 0.0  # the scanner's default pace


def mirror_refusal(table: str, source_ids: int, table_keys: int, deletes: int,
                   max_delete_fraction: float) -> Optional[str]:
    """Why mirroring must not go ahead without --force, or None when it may."""
    if source_ids == 0 and table_keys > 0:
        return (
            f"the source returned no valid ids, so mirroring would delete all {table_keys:,} keys of {table}; "
            "check source.query, or pass --force to empty the table"
        )
    if table_keys and deletes / table_keys > max_delete_fraction:
        return (
            f"mirroring would delete {deletes:,} of the {table_keys:,} keys of {table} ({deletes / table_keys:.1%}), "
            f"over dynamodb.max_delete_fraction {max_delete_fraction:g}; "
            "check the source, raise the limit, or pass --force"
        )
    return None


# -- the run ---------------------------------------------------------------------------
def run_sync(spark: SparkSession, config: Config, report: RunReport, environ: Mapping[str, str],
             dry_run: bool = False, force: bool = False) -> None:
    """One sync run; fills `report`; raises RunRefused (a guard), RunFailed or ConfigError."""
    constants = item_constants(config.dynamodb, config.source.attribute_columns, report.run_id,
                               datetime.now(timezone.utc))
    cached: List[DataFrame] = []
    try:
        _sync(spark, config, report, environ, dry_run, force, constants, cached)
    finally:
        for df in cached:
            df.unpersist()


def _sync(spark, config: Config, report: RunReport, environ, dry_run, force, constants, cached) -> None:
    cfg, id_column = config.dynamodb, config.source.id_column
    report.details["mode"] = cfg.mode
    with report.timed("read_validate"):
        source_rows, ids, rejected = load_id_set(spark, config, environ)
        ids = ids.persist(StorageLevel.MEMORY_AND_DISK)
        cached += [source_rows, ids]
        total = source_rows.count()
        distinct = ids.count()
        rejected_by_reason = count_rejected(rejected)
    rejected_total = sum(rejected_by_reason.values())
    report.counts.update(
        source_rows=total,
        rejected=rejected_total,
        duplicates=total - rejected_total - distinct,
        distinct_ids=distinct,
    )
    report.details["rejected_by_reason"] = rejected_by_reason
    if rejected_total and not dry_run:
        # written before the share check: a refused run is exactly when people need them
        where = write_quarantine(rejected, config, report.run_id)
        if where:
            report.details["quarantine"] = where
        else:
            log.warning("%d rejected rows are counted but not kept: output.quarantine_path is empty", rejected_total)
    _check_rejected_share(config, rejected_total, total)
    if distinct == 0:
        log.warning("the source returned no valid ids")

    table = _describe_table(cfg)
    stale: Optional[StaleKeys] = None
    if cfg.mode == "mirror":
        with report.timed("scan"):
            stale = find_stale_keys(spark, cfg, ids, id_column, scan_read_rate(cfg, table))
        cached += [stale.keys, stale.stale]
        report.counts.update(table_keys_before=stale.table_keys, stale=stale.deletes)

    slots = ddb.concurrent_slots(spark)
    plan = ddb.plan_rate(cfg, table, _write_partitions(distinct, slots), slots)
    deletes = stale.deletes if stale else 0
    estimated_s = round((distinct + deletes) / plan.job_rate, 1) if plan.job_rate else 0.0
    report.details.update(
        write_rate_wcu=plan.job_rate, write_rate_reason=plan.reason, write_partitions=plan.partitions,
        concurrent_tasks=plan.concurrent_tasks, estimated_write_s=estimated_s,
    )
    report.details["planned"] = {
        "puts": distinct, "deletes": deletes, "rejected": rejected_total,
        "table_keys": stale.table_keys if stale else None,
        "write_rate_wcu": plan.job_rate, "estimated_write_s": estimated_s,
    }
    report.details["plan"] = _plan_text(cfg, distinct, stale, rejected_total, plan.job_rate, estimated_s, dry_run)
    log.info("plan: %s", report.details["plan"])

    if stale:
        refusal = mirror_refusal(cfg.table, distinct, stale.table_keys, stale.deletes, cfg.max_delete_fraction)
        if refusal and not force:
            raise RunRefused(f"mirror refused: {refusal}")
        if refusal:
            log.warning("--force: going ahead although %s", refusal)
            report.details["guard_overridden"] = refusal
    if dry_run:
        return

    if distinct:
        with report.timed("write"):
            stats = ddb.write_dataframe(ids, id_column, cfg, plan, action="put",
                                        constant_attributes=constants, total_hint=distinct)
        report.details["writer"] = stats
    else:
        stats = _no_stats()
    report.counts.update(written=int(stats["written"]), writer_rejected=writer_rejected(stats))
    reconcile(report.counts, stats)

    deleted: Dict[str, float] = _no_stats()
    if stale and stale.deletes:
        delete_plan = ddb.plan_rate(cfg, table, _write_partitions(stale.deletes, slots), slots)
        with report.timed("delete"):
            deleted = ddb.write_dataframe(stale.stale, KEY, cfg, delete_plan, action="delete",
                                          total_hint=stale.deletes)
        report.details["deleter"] = deleted
        if int(deleted["written"]) != stale.deletes:
            raise RunFailed(
                f"mirror: {stale.deletes} stale keys but {int(deleted['written'])} deleted; re-run to finish"
            )
    if stale:
        report.counts["deleted"] = int(deleted["written"])
    _record_rates(report, stats, deleted)

    if distinct == 0 and cfg.mode == "upsert":
        # the table was not touched; the pointer keeps naming the last set it was synced to
        log.warning("no snapshot: the source was empty and upsert changed nothing")
        report.details["snapshot"] = ""
        return
    with report.timed("snapshot"):
        report.details["snapshot"] = write_snapshot(ids.select(id_column), config, report.run_id) or ""


def _describe_table(cfg: DynamoDBConfig) -> Mapping[str, Any]:
    from botocore.exceptions import ClientError

    try:
        return ddb.describe_table(cfg)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        raise ConfigError(f"dynamodb.table: no table {cfg.table!r} in {cfg.region}") from None


def _write_partitions(items: int, slots: int) -> int:
    return max(slots, math.ceil(items / ITEMS_PER_WRITE_PARTITION))


def _plan_text(cfg: DynamoDBConfig, puts: int, stale: Optional[StaleKeys], rejected: int, rate: float,
               estimated_s: float, dry_run: bool) -> str:
    verb = "would" if dry_run else "will"
    deletes = f", delete {stale.deletes:,} stale of {stale.table_keys:,} keys" if stale else ""
    text = (
        f"{verb} put {puts:,} ids{deletes} in {cfg.table} ({cfg.mode}); {rejected:,} rejected; "
        f"{rate:,.0f} WCU/s, about {estimated_s:,.1f} s of writes at 1 WCU per item"
    )
    return text + ("; dry run: nothing written" if dry_run else "")


def _no_stats() -> Dict[str, float]:
    return {name: 0.0 for name in ddb.SUMMED}


def _record_rates(report: RunReport, puts: Mapping[str, float], deletes: Mapping[str, float]) -> None:
    """Rates, retries and consumed capacity of the whole run, for the report and the summary."""
    retried = ("retries_throttle", "retries_5xx", "retries_connection", "unprocessed_resent")
    report.details["consumed_wcu"] = round(puts["consumed_wcu"] + deletes["consumed_wcu"], 1)
    report.details["retries"] = int(sum(puts[k] + deletes[k] for k in retried))
    report.details["throttled_s"] = round(puts["throttled_s"] + deletes["throttled_s"], 1)
    for name, stats, phase in (("put", puts, "write"), ("delete", deletes, "delete")):
        seconds = report.durations_s.get(phase, 0.0)
        if stats["written"] and seconds:
            report.details[f"{name}_items_per_s"] = round(stats["written"] / seconds, 1)


def reconcile(counts: Mapping[str, int], stats: Mapping[str, float]) -> None:
    """written + rejected + duplicates must account for every source row, or the run fails."""
    accounted = (
        stats["written"] + writer_rejected(stats) + stats["duplicates"] + counts["rejected"] + counts["duplicates"]
    )
    if accounted != counts["source_rows"]:
        rejected = counts["rejected"] + writer_rejected(stats)
        raise RunFailed(
            f"reconciliation failed: {counts['source_rows']} source rows but "
            f"{int(stats['written'])} written + {rejected} rejected "
            f"+ {counts['duplicates'] + int(stats['duplicates'])} duplicates = {int(accounted)}"
        )


def writer_rejected(stats: Mapping[str, float]) -> int:
    """Requests the writer refused before sending (key too long, item too large, ...)."""
    return int(sum(value for name, value in stats.items() if name.startswith("rejected_")))


def _check_rejected_share(config: Config, rejected: int, total: int) -> None:
    limit = config.validation.max_rejected_fraction
    if total and rejected / total > limit:
        raise RunRefused(
            f"{rejected} of {total} source rows rejected ({rejected / total:.2%}), "
            f"over validation.max_rejected_fraction {limit:g}"
        )
