"""The sync job: source ids -> validated set -> DynamoDB table (upsert or mirror), reconciled.

A run is a sequence of stages, each a function of its inputs returning a typed result:
read and validate -> guards -> plan (with mirror's Scan) -> puts -> deletes -> reconcile ->
snapshot. The report is built from those results as they arrive, so a run that stops
half-way still reports what it saw. A re-run repeats the same puts (idempotent) and deletes
whatever is still stale, so it converges after any failure.
"""
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Sequence

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from idstore import io
from idstore import metrics as M
from idstore.config import Config, ConfigError, DynamoDBConfig
from idstore.dynamodb import table as ddb
from idstore.idset import load_id_set
from idstore.pipeline.common import RunFailed, RunRefused, RunReport
from idstore.snapshot import write_snapshot
from idstore.validation import REASON

log = logging.getLogger(__name__)

ITEMS_PER_WRITE_PARTITION = 50_000  # small enough that a retried task redoes little
SYNCED_AT, RUN_ID = "synced_at", "run_id"  # on every item: when and by which run it was last written
SECONDS_PER_DAY = 86_400
KEY = "key"  # the scanner's column


# -- stage results ---------------------------------------------------------------------
@dataclass(frozen=True)
class SourceSet:
    """The source read and validated: every row, the distinct valid ids, the rejects (persisted)."""

    rows: DataFrame
    ids: DataFrame
    rejected_rows: DataFrame
    source_rows: int
    distinct_ids: int
    rejected_by_reason: Mapping[str, int]

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())

    @property
    def duplicates(self) -> int:
        return self.source_rows - self.rejected - self.distinct_ids

    def report_counts(self) -> Dict[str, Any]:
        return {"source_rows": self.source_rows, "rejected": self.rejected, "duplicates": self.duplicates,
                "distinct_ids": self.distinct_ids}


@dataclass(frozen=True)
class StaleKeys:
    """Mirror mode: the table's keys before the run, and those not in the source set (persisted)."""

    table_keys: int
    deletes: int
    keys: DataFrame
    stale: DataFrame


@dataclass(frozen=True)
class SyncPlan:
    """What the run will write, at what rate, and how long that should take."""

    mode: str
    table: str
    puts: int
    rejected: int
    stale: Optional[StaleKeys]
    rate: ddb.RatePlan
    estimated_write_s: float

    @property
    def deletes(self) -> int:
        return self.stale.deletes if self.stale else 0

    def text(self, dry_run: bool) -> str:
        verb = "would" if dry_run else "will"
        stale = self.stale
        deletes = f", delete {stale.deletes:,} stale of {stale.table_keys:,} keys" if stale else ""
        text = (
            f"{verb} put {self.puts:,} ids{deletes} in {self.table} ({self.mode}); {self.rejected:,} rejected; "
            f"{self.rate.job_rate:,.0f} WCU/s, about {self.estimated_write_s:,.1f} s of writes at 1 WCU per item"
        )
        return text + ("; dry run: nothing written" if dry_run else "")

    def report_details(self, dry_run: bool) -> Dict[str, Any]:
        rate = self.rate
        return {
            "write_rate_wcu": rate.job_rate, "write_rate_reason": rate.reason, "write_partitions": rate.partitions,
            "concurrent_tasks": rate.concurrent_tasks, "estimated_write_s": self.estimated_write_s,
            "planned": {
                "puts": self.puts, "deletes": self.deletes, "rejected": self.rejected,
                "table_keys": self.stale.table_keys if self.stale else None,
                "write_rate_wcu": rate.job_rate, "estimated_write_s": self.estimated_write_s,
            },
            "plan": self.text(dry_run),
        }


@dataclass(frozen=True)
class WriteOutcome:
    """One write phase (puts or deletes), from the writer's stats summed over partitions."""

    written: int
    rejected: int  # refused by the writer before sending: key too long, item too large, ...
    duplicates: int
    consumed_wcu: float
    retries: int
    throttles: int  # throttle errors retried and UnprocessedItems re-sent: DynamoDB pushing back
    throttled_s: float
    seconds: float
    stats: Mapping[str, float]  # the writer's own summary, kept whole in the report

    @classmethod
    def of(cls, stats: Mapping[str, float], seconds: float) -> "WriteOutcome":
        retried = ("retries_throttle", "retries_5xx", "retries_connection", "unprocessed_resent")
        return cls(
            written=int(stats["written"]),
            rejected=int(sum(value for name, value in stats.items() if name.startswith("rejected_"))),
            duplicates=int(stats["duplicates"]),
            consumed_wcu=float(stats["consumed_wcu"]),
            retries=int(sum(stats[name] for name in retried)),
            throttles=int(stats["retries_throttle"] + stats["unprocessed_resent"]),
            throttled_s=float(stats["throttled_s"]),
            seconds=seconds,
            stats=dict(stats),
        )

    @classmethod
    def nothing(cls) -> "WriteOutcome":
        return cls.of({name: 0.0 for name in ddb.SUMMED}, 0.0)

    @property
    def items_per_s(self) -> Optional[float]:
        return round(self.written / self.seconds, 1) if self.written and self.seconds else None


# -- shaping ----------------------------------------------------------------------------
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


# -- stages -----------------------------------------------------------------------------
def read_and_validate(spark: SparkSession, config: Config, environ: Mapping[str, str]) -> SourceSet:
    """The source read once, normalised and validated; the counts of each part."""
    rows, ids, rejected = load_id_set(spark, config, environ)
    ids = ids.persist(StorageLevel.MEMORY_AND_DISK)
    by_reason = {row[REASON]: row["count"] for row in rejected.groupBy(REASON).count().collect()}
    return SourceSet(rows, ids, rejected, rows.count(), ids.count(), by_reason)


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


def rejected_share_refusal(source: SourceSet, limit: float) -> Optional[str]:
    if source.source_rows and source.rejected / source.source_rows > limit:
        return (
            f"{source.rejected} of {source.source_rows} source rows rejected "
            f"({source.rejected / source.source_rows:.2%}), over validation.max_rejected_fraction {limit:g}"
        )
    return None


def find_stale_keys(spark: SparkSession, cfg: DynamoDBConfig, ids: DataFrame, id_column: str,
                    table: Mapping[str, Any]) -> StaleKeys:
    """Parallel Scan of the table, anti-joined with the source ids."""
    from idstore.dynamodb.scanner import scan_keys

    keys = scan_keys(spark, cfg, table).persist(StorageLevel.MEMORY_AND_DISK)
    table_keys = keys.count()
    in_source = ids.select(F.col(id_column).alias(KEY))
    stale = keys.join(in_source, on=KEY, how="left_anti").persist(StorageLevel.MEMORY_AND_DISK)
    return StaleKeys(table_keys, stale.count(), keys, stale)


def plan_sync(spark: SparkSession, config: Config, source: SourceSet, table: Mapping[str, Any],
              stale: Optional[StaleKeys]) -> SyncPlan:
    cfg = config.dynamodb
    slots = ddb.concurrent_slots(spark)
    rate = ddb.plan_rate(cfg, table, write_partitions(source.distinct_ids, slots), slots)
    deletes = stale.deletes if stale else 0
    estimated_s = round((source.distinct_ids + deletes) / rate.job_rate, 1) if rate.job_rate else 0.0
    return SyncPlan(cfg.mode, cfg.table, source.distinct_ids, source.rejected, stale, rate, estimated_s)


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


def write_puts(config: Config, source: SourceSet, plan: SyncPlan, constants: Mapping[str, Any],
               report: RunReport) -> WriteOutcome:
    if not source.distinct_ids:
        return WriteOutcome.nothing()
    with report.timed("write") as timer:
        stats = ddb.write_dataframe(source.ids, config.source.id_column, config.dynamodb, plan.rate, action="put",
                                    constant_attributes=dict(constants), total_hint=source.distinct_ids)
    return WriteOutcome.of(stats, timer.seconds)


def write_deletes(spark: SparkSession, config: Config, table: Mapping[str, Any], stale: Optional[StaleKeys],
                  report: RunReport) -> WriteOutcome:
    if not stale or not stale.deletes:
        return WriteOutcome.nothing()
    slots = ddb.concurrent_slots(spark)
    rate = ddb.plan_rate(config.dynamodb, table, write_partitions(stale.deletes, slots), slots)
    with report.timed("delete") as timer:
        stats = ddb.write_dataframe(stale.stale, KEY, config.dynamodb, rate, action="delete",
                                    total_hint=stale.deletes)
    deleted = WriteOutcome.of(stats, timer.seconds)
    if deleted.written != stale.deletes:
        raise RunFailed(f"mirror: {stale.deletes} stale keys but {deleted.written} deleted; re-run to finish")
    return deleted


def reconcile(source: SourceSet, puts: WriteOutcome) -> None:
    """written + rejected + duplicates must account for every source row, or the run fails."""
    rejected = source.rejected + puts.rejected
    duplicates = source.duplicates + puts.duplicates
    accounted = puts.written + rejected + duplicates
    if accounted != source.source_rows:
        raise RunFailed(
            f"reconciliation failed: {source.source_rows} source rows but {puts.written} written + "
            f"{rejected} rejected + {duplicates} duplicates = {accounted}"
        )


def write_partitions(items: int, slots: int) -> int:
    return max(slots, math.ceil(items / ITEMS_PER_WRITE_PARTITION))


def describe_table(cfg: DynamoDBConfig) -> Mapping[str, Any]:
    from botocore.exceptions import ClientError

    try:
        return ddb.describe_table(cfg)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        raise ConfigError(f"dynamodb.table: no table {cfg.table!r} in {cfg.region}") from None


# -- the run ----------------------------------------------------------------------------
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


def _sync(spark: SparkSession, config: Config, report: RunReport, environ: Mapping[str, str], dry_run: bool,
          force: bool, constants: Mapping[str, Any], cached: List[DataFrame]) -> None:
    cfg = config.dynamodb
    report.details["mode"] = cfg.mode
    with report.timed("read_validate"):
        source = read_and_validate(spark, config, environ)
    cached += [source.rows, source.ids]
    report.counts.update(source.report_counts())
    report.details["rejected_by_reason"] = dict(source.rejected_by_reason)
    report.metrics[M.ITEMS_REJECTED] = source.rejected
    if source.rejected and not dry_run:
        # written before the share check: a refused run is exactly when people need them
        where = write_quarantine(source.rejected_rows, config, report.run_id)
        if where:
            report.details["quarantine"] = where
        else:
            log.warning("%d rejected rows are counted but not kept: output.quarantine_path is empty", source.rejected)
    refusal = rejected_share_refusal(source, config.validation.max_rejected_fraction)
    if refusal:
        raise RunRefused(refusal)
    if source.distinct_ids == 0:
        log.warning("the source returned no valid ids")

    table = describe_table(cfg)
    stale = None
    if cfg.mode == "mirror":
        with report.timed("scan"):
            stale = find_stale_keys(spark, cfg, source.ids, config.source.id_column, table)
        cached += [stale.keys, stale.stale]
        report.counts.update(table_keys_before=stale.table_keys, stale=stale.deletes)
    plan = plan_sync(spark, config, source, table, stale)
    report.details.update(plan.report_details(dry_run))
    log.info("plan: %s", report.details["plan"])

    if stale:
        refusal = mirror_refusal(cfg.table, source.distinct_ids, stale.table_keys, stale.deletes,
                                 cfg.max_delete_fraction)
        if refusal and not force:
            raise RunRefused(f"mirror refused: {refusal}")
        if refusal:
            log.warning("--force: going ahead although %s", refusal)
            report.details["guard_overridden"] = refusal
    if dry_run:
        return

    puts = write_puts(config, source, plan, constants, report)
    record_write(report, "writer", "put", puts)
    report.counts.update(written=puts.written, writer_rejected=puts.rejected)
    report.metrics.update({M.ITEMS_PUT: puts.written, M.ITEMS_REJECTED: source.rejected + puts.rejected})
    reconcile(source, puts)

    deletes = write_deletes(spark, config, table, stale, report)
    if stale:
        record_write(report, "deleter", "delete", deletes)
        report.counts["deleted"] = deletes.written
        report.metrics[M.ITEMS_DELETED] = deletes.written
    record_totals(report, puts, deletes)

    if source.distinct_ids == 0 and cfg.mode == "upsert":
        # the table was not touched; the pointer keeps naming the last set it was synced to
        log.warning("no snapshot: the source was empty and upsert changed nothing")
        report.details["snapshot"] = ""
        return
    with report.timed("snapshot"):
        report.details["snapshot"] = write_snapshot(source.ids.select(config.source.id_column), config,
                                                    report.run_id) or ""


def record_write(report: RunReport, name: str, verb: str, outcome: WriteOutcome) -> None:
    if outcome.stats.get("requests"):
        report.details[name] = dict(outcome.stats)
    if outcome.items_per_s is not None:
        report.details[f"{verb}_items_per_s"] = outcome.items_per_s


def record_totals(report: RunReport, puts: WriteOutcome, deletes: WriteOutcome) -> None:
    """Retries and consumed capacity of the whole run, for the report, the summary and the metrics."""
    report.details["consumed_wcu"] = round(puts.consumed_wcu + deletes.consumed_wcu, 1)
    report.details["retries"] = puts.retries + deletes.retries
    report.details["throttled_s"] = round(puts.throttled_s + deletes.throttled_s, 1)
    report.metrics.update({M.CONSUMED_WCU: puts.consumed_wcu + deletes.consumed_wcu,
                           M.THROTTLES: puts.throttles + deletes.throttles})
