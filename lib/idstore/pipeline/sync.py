"""The sync job: source ids -> validated set -> DynamoDB table (upsert or mirror), reconciled.

A run is a sequence of stages, each a function of its inputs returning a typed result:
read and validate -> guards -> lock -> strategy (delta against the record, or full) -> plan
(the diff, or mirror's Scan) -> puts -> deletes -> reconcile -> the new record. The report is
built from those results as they arrive, so a run that stops half-way still reports what it
saw. A re-run repeats the same puts and deletes (idempotent) against the same record, so it
converges after any failure.
"""
import logging
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Sequence

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from idstore import delta, io
from idstore import metrics as M
from idstore.config import Config, ConfigError, CostConfig, DynamoDBConfig
from idstore.dynamodb import bulk as ddb
from idstore.idset import id_set_stats, read_source_ids
from idstore.lock import LockRefused, TableLock, lock_location
from idstore.pipeline.common import RunFailed, RunRefused, RunReport
from idstore.snapshot import epoch_seconds, write_record
from idstore.validation import REASON

log = logging.getLogger(__name__)

ITEMS_PER_WRITE_PARTITION = 50_000  # small enough that a retried task redoes little
SYNCED_AT, RUN_ID = "synced_at", "run_id"  # on every item: when and by which run it was last written
SECONDS_PER_DAY = 86_400
KEY = "key"  # the scanner's column
SCAN_BYTES_PER_KEY = 100  # a lookup item's size when DescribeTable gives none, for the Scan's estimate



# -- stage results ---------------------------------------------------------------------
@dataclass(frozen=True)
class SourceSet:
    """The source read and validated: every row, the distinct valid ids, the rejects (persisted)."""

    rows: DataFrame
    ids: DataFrame
    rejected_rows: DataFrame
    source_rows: int
    distinct_ids: int
    id_bytes: int  # UTF-8 bytes of the distinct ids, for the record's pointer (the filter's broadcast)
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
    """A full mirror run's Scan: the table's keys before the run, those not in the set (persisted)."""

    table_keys: int
    deletes: int
    keys: DataFrame
    stale: DataFrame
    consumed_rcu: float


@dataclass(frozen=True)
class Changes:
    """What the run writes: every key of the set (full), or the diff against the record (delta)."""

    puts: DataFrame  # id column + attribute columns
    deletes: Optional[DataFrame]  # column KEY; mirror only
    new: int
    changed: int
    refresh: int
    unchanged: int
    delete_count: int
    table_keys: Optional[int]  # what the table holds before the run: the record's keys, or the Scan's
    record: DataFrame  # the record after the run, if every write succeeds
    scan: Optional[StaleKeys] = None

    @property
    def put_count(self) -> int:
        return self.new + self.changed + self.refresh


@dataclass(frozen=True)
class RunCost:
    """Request units and their price; batching saves calls, not units."""

    write_units: float
    read_units: float
    usd: float

    @classmethod
    def at(cls, prices: CostConfig, write_units: float, read_units: float) -> "RunCost":
        usd = (write_units * prices.write_unit_usd_per_million + read_units * prices.read_unit_usd_per_million) / 1e6
        return cls(round(write_units, 1), round(read_units, 1), round(usd, 6))

    def text(self) -> str:
        return f"{self.write_units:,.0f} write units + {self.read_units:,.0f} read units = ${self.usd:,.4f}"


@dataclass(frozen=True)
class SyncPlan:
    """What the run will write, at what rate and cost, and how long that should take."""

    mode: str
    table: str
    strategy: delta.Strategy
    changes: Changes
    rejected: int
    rate: ddb.RatePlan
    estimated_write_s: float
    cost: RunCost
    full_run_cost: Optional[RunCost]  # a delta run: what a full run would have cost

    def text(self, dry_run: bool) -> str:
        verb = "would" if dry_run else "will"
        c = self.changes
        kind = "delta run" if self.strategy.delta else "full run"
        puts = f"put {c.put_count:,} ids"
        if self.strategy.delta:
            puts += (f" ({c.new:,} new, {c.changed:,} changed, {c.refresh:,} TTL refresh), "
                     f"skip {c.unchanged:,} unchanged")
        deletes = ""
        if self.mode == "mirror":
            deletes = f", delete {c.delete_count:,} " + (
                "that left the set" if self.strategy.delta else f"stale of {c.table_keys:,} keys")
        text = (
            f"{kind} ({self.strategy.why}): {verb} {puts}{deletes} in {self.table} ({self.mode}); "
            f"{self.rejected:,} rejected; {self.rate.job_rate:,.0f} WCU/s, about {self.estimated_write_s:,.1f} s "
            f"of writes; {self.cost.text()}"
        )
        if self.full_run_cost:
            text += f" (a full run: {self.full_run_cost.text()})"
        return text + ("; dry run: nothing written" if dry_run else "")

    def report_counts(self) -> Dict[str, Any]:
        c = self.changes
        counts = {"puts_new": c.new, "puts_changed": c.changed, "puts_refresh": c.refresh, "unchanged": c.unchanged}
        if self.mode == "mirror":
            counts["stale"] = c.delete_count
            counts["table_keys_before"] = c.table_keys
        return counts

    def report_details(self, dry_run: bool) -> Dict[str, Any]:
        rate, c = self.rate, self.changes
        return {
            "strategy": "delta" if self.strategy.delta else "full",
            "strategy_reason": self.strategy.why,
            "write_rate_wcu": rate.job_rate, "write_rate_reason": rate.reason, "write_partitions": rate.partitions,
            "concurrent_tasks": rate.concurrent_tasks, "estimated_write_s": self.estimated_write_s,
            "planned": {
                "puts": c.put_count, "puts_new": c.new, "puts_changed": c.changed, "puts_refresh": c.refresh,
                "unchanged": c.unchanged, "deletes": c.delete_count, "rejected": self.rejected,
                "table_keys": c.table_keys, "write_rate_wcu": rate.job_rate,
                "estimated_write_s": self.estimated_write_s,
            },
            "cost": {"planned": asdict(self.cost),
                     **({"full_run": asdict(self.full_run_cost)} if self.full_run_cost else {})},
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
    rows, ids, rejected = read_source_ids(spark, config, environ)
    ids = ids.transform(delta.with_digest(config.source.attribute_columns)).persist(StorageLevel.MEMORY_AND_DISK)
    by_reason = {row[REASON]: row["count"] for row in rejected.groupBy(REASON).count().collect()}
    distinct, id_bytes = id_set_stats(ids, config.source.id_column)
    return SourceSet(rows, ids, rejected, rows.count(), distinct, id_bytes, by_reason)


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
    from idstore.dynamodb.scanner import scan_table

    scanned = scan_table(spark, cfg, table).persist(StorageLevel.MEMORY_AND_DISK)
    totals = scanned.agg(F.count(KEY).alias("keys"), F.sum("rcu").alias("rcu")).first()
    keys = scanned.where(F.col(KEY).isNotNull()).select(KEY)
    in_source = ids.select(F.col(id_column).alias(KEY))
    stale = keys.join(in_source, on=KEY, how="left_anti").persist(StorageLevel.MEMORY_AND_DISK)
    return StaleKeys(int(totals["keys"]), stale.count(), scanned, stale, float(totals["rcu"] or 0.0))


def full_changes(spark: SparkSession, config: Config, source: SourceSet, table: Mapping[str, Any],
                 record: DataFrame) -> Changes:
    """Every key is put; a mirror run scans the table to find the keys to delete."""
    id_column, attributes = config.source.id_column, config.source.attribute_columns
    scan = None
    if config.dynamodb.mode == "mirror":
        scan = find_stale_keys(spark, config.dynamodb, source.ids, id_column, table)
    return Changes(
        puts=source.ids.select(id_column, *attributes), deletes=scan.stale if scan else None,
        new=source.distinct_ids, changed=0, refresh=0, unchanged=0,
        delete_count=scan.deletes if scan else 0, table_keys=scan.table_keys if scan else None,
        record=record, scan=scan,
    )


def delta_changes(config: Config, source: SourceSet, strategy: delta.Strategy, now: datetime, run_id: str,
                  expires_at: Optional[int]) -> Changes:
    """The diff of the set against the record: no Scan, only what changed is written."""
    id_column, attributes = config.source.id_column, config.source.attribute_columns
    before = delta.refresh_before(config, strategy.pointer, now)
    tagged = delta.diff(source.ids, strategy.record, id_column, before).persist(StorageLevel.MEMORY_AND_DISK)
    counts = {row[delta.ACTION]: row["count"] for row in tagged.groupBy(delta.ACTION).count().collect()}
    action = F.col(delta.ACTION)
    mirror = config.dynamodb.mode == "mirror"
    return Changes(
        puts=tagged.where(action.isin(*delta.PUT_ACTIONS)).select(id_column, *attributes),
        deletes=tagged.where(action == delta.GONE).select(F.col(id_column).alias(KEY)) if mirror else None,
        new=counts.get(delta.NEW, 0), changed=counts.get(delta.CHANGED, 0), refresh=counts.get(delta.REFRESH, 0),
        unchanged=counts.get(delta.UNCHANGED, 0), delete_count=counts.get(delta.GONE, 0) if mirror else 0,
        table_keys=strategy.pointer.keys if strategy.pointer else None,
        record=delta.next_record(tagged, id_column, run_id, epoch_seconds(now), expires_at),
    )


def scan_read_units(table: Mapping[str, Any], keys: int) -> float:
    """Read units a Scan of the whole table costs (eventually consistent: 0.5 per 4 KB)."""
    size = max(int(table.get("TableSizeBytes", 0) or 0), keys * SCAN_BYTES_PER_KEY)
    return math.ceil(size / 4096) * 0.5


def plan_sync(spark: SparkSession, config: Config, source: SourceSet, table: Mapping[str, Any],
              strategy: delta.Strategy, changes: Changes) -> SyncPlan:
    cfg = config.dynamodb
    slots = ddb.concurrent_slots(spark)
    rate = ddb.plan_rate(cfg, table, write_partitions(changes.put_count, slots), slots)
    writes = changes.put_count + changes.delete_count  # 1 WCU an item of up to 1 KB
    estimated_s = round(writes / rate.job_rate, 1) if rate.job_rate else 0.0
    scanned = changes.scan.consumed_rcu if changes.scan else 0.0
    full_run_cost = None
    if strategy.delta:
        full_reads = scan_read_units(table, changes.table_keys or 0) if cfg.mode == "mirror" else 0.0
        full_run_cost = RunCost.at(config.cost, source.distinct_ids + changes.delete_count, full_reads)
    return SyncPlan(cfg.mode, cfg.table, strategy, changes, source.rejected, rate, estimated_s,
                    RunCost.at(config.cost, writes, scanned), full_run_cost)


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


def write_puts(config: Config, plan: SyncPlan, constants: Mapping[str, Any], report: RunReport) -> WriteOutcome:
    puts = plan.changes.put_count
    if not puts:
        return WriteOutcome.nothing()
    with report.timed("write") as timer:
        stats = ddb.write_dataframe(plan.changes.puts, config.source.id_column, config.dynamodb, plan.rate,
                                    action="put", constant_attributes=dict(constants), total_hint=puts)
    return WriteOutcome.of(stats, timer.seconds)


def write_deletes(spark: SparkSession, config: Config, table: Mapping[str, Any], changes: Changes,
                  report: RunReport) -> WriteOutcome:
    if changes.deletes is None or not changes.delete_count:
        return WriteOutcome.nothing()
    slots = ddb.concurrent_slots(spark)
    rate = ddb.plan_rate(config.dynamodb, table, write_partitions(changes.delete_count, slots), slots)
    with report.timed("delete") as timer:
        stats = ddb.write_dataframe(changes.deletes, KEY, config.dynamodb, rate, action="delete",
                                    total_hint=changes.delete_count)
    deleted = WriteOutcome.of(stats, timer.seconds)
    if deleted.written != changes.delete_count:
        raise RunFailed(f"mirror: {changes.delete_count} keys to delete but {deleted.written} deleted; "
                        "re-run to finish")
    return deleted


def reconcile(source: SourceSet, changes: Changes, puts: WriteOutcome) -> None:
    """written + rejected + duplicates + unchanged must account for every source row, or the run fails."""
    rejected = source.rejected + puts.rejected
    duplicates = source.duplicates + puts.duplicates
    accounted = puts.written + rejected + duplicates + changes.unchanged
    if accounted != source.source_rows:
        raise RunFailed(
            f"reconciliation failed: {source.source_rows} source rows but {puts.written} written + "
            f"{rejected} rejected + {duplicates} duplicates + {changes.unchanged} unchanged = {accounted}"
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


def run_lock(config: Config, run_id: str) -> Optional[TableLock]:
    """The per-table lock beside the snapshots, or None when there is no snapshot.path to hold it."""
    if not config.snapshot.path:
        log.warning("no run lock: snapshot.path is empty, so nothing stops two runs on %s interleaving",
                    config.dynamodb.table)
        return None
    return TableLock(lock_location(config.snapshot.path, config.dynamodb.table), run_id,
                     lease_s=config.dynamodb.lock_lease_s, endpoint_url=config.aws.endpoint_url,
                     region=config.aws.region)


# -- the run ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Options:
    """The command line's say in a run."""

    dry_run: bool
    force: bool
    full: bool


def run_sync(spark: SparkSession, config: Config, report: RunReport, environ: Mapping[str, str],
             dry_run: bool = False, force: bool = False, full: bool = False, break_lock: bool = False) -> None:
    """One sync run; fills `report`; raises RunRefused (a guard, the lock), RunFailed or ConfigError."""
    now = datetime.now(timezone.utc)
    constants = item_constants(config.dynamodb, config.source.attribute_columns, report.run_id, now)
    lock = None if dry_run else run_lock(config, report.run_id)
    cached: List[DataFrame] = []
    try:
        if lock is not None:
            try:
                lock.acquire(break_lock=break_lock)
            except LockRefused as exc:
                raise RunRefused(str(exc)) from None
        _sync(spark, config, report, environ, Options(dry_run, force, full), now, constants, cached, lock)
    finally:
        for df in cached:
            df.unpersist()
        if lock is not None:
            lock.release()


def _sync(spark: SparkSession, config: Config, report: RunReport, environ: Mapping[str, str], options: Options,
          now: datetime, constants: Mapping[str, Any], cached: List[DataFrame], lock: Optional[TableLock]) -> None:
    cfg, id_column = config.dynamodb, config.source.id_column
    report.details["mode"] = cfg.mode
    with report.timed("read_validate"):
        source = read_and_validate(spark, config, environ)
    cached += [source.rows, source.ids]
    report.counts.update(source.report_counts())
    report.details["rejected_by_reason"] = dict(source.rejected_by_reason)
    report.metrics[M.ITEMS_REJECTED] = source.rejected
    if source.rejected and not options.dry_run:
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
    expires_at = constants.get(cfg.ttl_attribute) if cfg.ttl_attribute else None
    with report.timed("plan"):
        strategy = delta.choose_strategy(spark, config, now, options.full)
        log.info("%s run: %s", "delta" if strategy.delta else "full", strategy.why)
        if strategy.delta:
            changes = delta_changes(config, source, strategy, now, report.run_id, expires_at)
        else:
            full = delta.full_record(source.ids, id_column, report.run_id, epoch_seconds(now), expires_at)
            changes = full_changes(spark, config, source, table, full)
        plan = plan_sync(spark, config, source, table, strategy, changes)
    if changes.scan:
        cached += [changes.scan.keys, changes.scan.stale]
    report.counts.update(plan.report_counts())
    report.details.update(plan.report_details(options.dry_run))
    log.info("plan: %s", report.details["plan"])

    if cfg.mode == "mirror":
        refusal = mirror_refusal(cfg.table, source.distinct_ids, changes.table_keys or 0, changes.delete_count,
                                 cfg.max_delete_fraction)
        if refusal and not options.force:
            raise RunRefused(f"mirror refused: {refusal}")
        if refusal:
            log.warning("--force: going ahead although %s", refusal)
            report.details["guard_overridden"] = refusal
    if options.dry_run:
        return

    puts = write_puts(config, plan, constants, report)
    record_write(report, "writer", "put", puts)
    report.counts.update(written=puts.written, writer_rejected=puts.rejected)
    report.metrics.update({M.ITEMS_PUT: puts.written, M.ITEMS_REJECTED: source.rejected + puts.rejected,
                           M.ITEMS_UNCHANGED: changes.unchanged})
    reconcile(source, changes, puts)

    deletes = write_deletes(spark, config, table, changes, report)
    if cfg.mode == "mirror":
        record_write(report, "deleter", "delete", deletes)
        report.counts["deleted"] = deletes.written
        report.metrics[M.ITEMS_DELETED] = deletes.written
    record_totals(report, config.cost, plan, puts, deletes)

    if source.distinct_ids == 0 and cfg.mode == "upsert":
        # the table was not touched; the pointer keeps naming the last set it was synced to
        log.warning("no snapshot: the source was empty and upsert changed nothing")
        report.details["snapshot"] = ""
        return
    if not config.snapshot.path:
        report.details["snapshot"] = ""
        return
    if lock is not None:
        lock.check()  # the pointer moves only while this run still holds the table
    with report.timed("snapshot"):
        report.details["snapshot"] = write_record(changes.record, config, report.run_id, source.distinct_ids,
                                                  source.id_bytes, now, full_run=not strategy.delta,
                                                  previous=strategy.pointer)


def record_write(report: RunReport, name: str, verb: str, outcome: WriteOutcome) -> None:
    if outcome.stats.get("requests"):
        report.details[name] = dict(outcome.stats)
    if outcome.items_per_s is not None:
        report.details[f"{verb}_items_per_s"] = outcome.items_per_s


def record_totals(report: RunReport, prices: CostConfig, plan: SyncPlan, puts: WriteOutcome,
                  deletes: WriteOutcome) -> None:
    """Retries, consumed capacity and cost of the whole run, for the report, the summary and the metrics."""
    consumed_wcu = puts.consumed_wcu + deletes.consumed_wcu
    consumed_rcu = plan.changes.scan.consumed_rcu if plan.changes.scan else 0.0
    cost = RunCost.at(prices, consumed_wcu, consumed_rcu)
    report.details["consumed_wcu"] = round(consumed_wcu, 1)
    report.details["consumed_rcu"] = round(consumed_rcu, 1)
    report.details["cost"]["consumed"] = asdict(cost)
    report.details["cost_usd"] = cost.usd
    report.details["retries"] = puts.retries + deletes.retries
    report.details["throttled_s"] = round(puts.throttled_s + deletes.throttled_s, 1)
    report.metrics.update({M.CONSUMED_WCU: consumed_wcu, M.CONSUMED_RCU: consumed_rcu, M.RUN_COST_USD: cost.usd,
                           M.THROTTLES: puts.throttles + deletes.throttles})
