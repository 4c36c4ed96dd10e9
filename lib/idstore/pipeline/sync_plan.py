"""What a sync run will write: the strategy, the changes (a diff, or every key and mirror's
Scan), their rate, time and cost, and mirror's guard against deleting too much."""
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, Mapping, Optional

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from idstore import delta
from idstore.config import RUN_ID, SYNCED_AT, Config, DynamoDBConfig, WriteMode
from idstore.dynamodb import bulk as ddb
from idstore.errors import RunRefused
from idstore.pipeline.sync_result import Changes, RunCost, SourceSet, StaleKeys, SyncPlan
from idstore.snapshot import epoch_seconds

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400
KEY = "key"  # the scanner's column, and the deletes'
SCAN_BYTES_PER_KEY = 100  # a lookup item's size when DescribeTable gives none, for the Scan's estimate


@dataclass(frozen=True)
class Stamp:
    """Which run writes and when: on every item, in the record and in the TTL."""

    run_id: str
    now: datetime

    @property
    def epoch(self) -> int:
        return epoch_seconds(self.now)

    def expires_at(self, cfg: DynamoDBConfig) -> Optional[int]:
        """The TTL's epoch seconds (DynamoDB TTL reads a Number), or None without one."""
        return int(self.now.timestamp()) + cfg.ttl_days * SECONDS_PER_DAY if cfg.ttl_attribute else None

    def item_constants(self, cfg: DynamoDBConfig) -> Dict[str, Any]:
        """Attributes every item of this run gets: synced_at, run_id and the optional TTL.

        The config's load made sure none of them overwrites the key or a source attribute.
        """
        constants: Dict[str, Any] = {SYNCED_AT: self.now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                     RUN_ID: self.run_id}
        if cfg.ttl_attribute:
            constants[cfg.ttl_attribute] = self.expires_at(cfg)
        return constants


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
                 record: DataFrame, strategy: delta.Strategy) -> Changes:
    """Every key is put; a mirror run scans the table to find the keys to delete."""
    id_column, attributes = config.source.id_column, config.source.attribute_columns
    scan = None
    if config.dynamodb.mode == WriteMode.MIRROR:
        scan = find_stale_keys(spark, config.dynamodb, source.ids, id_column, table)
    return Changes(
        puts=source.ids.select(id_column, *attributes), deletes=scan.stale if scan else None,
        new=source.distinct_ids, changed=0, refresh=0, unchanged=0,
        delete_count=scan.deletes if scan else 0, table_keys=scan.table_keys if scan else None,
        record=record, strategy=strategy, scan=scan,
    )


def delta_changes(config: Config, source: SourceSet, strategy: delta.Strategy, stamp: Stamp,
                  expires_at: Optional[int]) -> Changes:
    """The diff of the set against the record: no Scan, only what changed is written."""
    id_column, attributes = config.source.id_column, config.source.attribute_columns
    before = delta.refresh_before(config, strategy.pointer, stamp.now)
    tagged = delta.diff(source.ids, strategy.record, id_column, before).persist(StorageLevel.MEMORY_AND_DISK)
    counts = {row[delta.ACTION]: row["count"] for row in tagged.groupBy(delta.ACTION).count().collect()}
    action = F.col(delta.ACTION)
    mirror = config.dynamodb.mode == WriteMode.MIRROR
    return Changes(
        puts=tagged.where(action.isin(*delta.PUT_ACTIONS)).select(id_column, *attributes),
        deletes=tagged.where(action == delta.GONE).select(F.col(id_column).alias(KEY)) if mirror else None,
        new=counts.get(delta.NEW, 0), changed=counts.get(delta.CHANGED, 0), refresh=counts.get(delta.REFRESH, 0),
        unchanged=counts.get(delta.UNCHANGED, 0), delete_count=counts.get(delta.GONE, 0) if mirror else 0,
        table_keys=strategy.pointer.keys if strategy.pointer else None,
        record=delta.next_record(tagged, id_column, stamp.run_id, stamp.epoch, expires_at), strategy=strategy,
    )


def scan_read_units(table: Mapping[str, Any], keys: int) -> float:
    """Read units a Scan of the whole table costs (eventually consistent: 0.5 per 4 KB)."""
    size = max(int(table.get("TableSizeBytes", 0) or 0), keys * SCAN_BYTES_PER_KEY)
    return math.ceil(size / 4096) * 0.5


def plan_changes(spark: SparkSession, config: Config, source: SourceSet, table: Mapping[str, Any],
                 stamp: Stamp, full_flag: bool, strategy: Optional[delta.Strategy] = None) -> Changes:
    """A delta run's diff against the record, or a full run's every key (and mirror's Scan);
    `strategy` when the run has its own (the delta after an import), else chosen from the record."""
    strategy = strategy or delta.choose_strategy(spark, config, stamp.now, full_flag)
    log.info("%s run: %s", "delta" if strategy.delta else "full", strategy.why)
    expires_at = stamp.expires_at(config.dynamodb)
    if strategy.delta:
        return delta_changes(config, source, strategy, stamp, expires_at)
    record = delta.full_record(source.ids, config.source.id_column, stamp.run_id, stamp.epoch, expires_at)
    return full_changes(spark, config, source, table, record, strategy)


def plan_sync(spark: SparkSession, config: Config, source: SourceSet, table: Mapping[str, Any],
              changes: Changes) -> SyncPlan:
    """The rate, time and cost of writing `changes`; for a delta run, what a full run would cost."""
    cfg, strategy = config.dynamodb, changes.strategy
    rate = ddb.plan_write(spark, cfg, table, changes.put_count)
    writes = changes.put_count + changes.delete_count  # 1 WCU an item of up to 1 KB
    estimated_s = round(writes / rate.job_rate, 1) if rate.job_rate else 0.0
    scanned = changes.scan.consumed_rcu if changes.scan else 0.0
    full_run_cost = None
    if strategy.delta:
        full_reads = scan_read_units(table, changes.table_keys or 0) if cfg.mode == WriteMode.MIRROR else 0.0
        full_run_cost = RunCost.at(config.cost, source.distinct_ids + changes.delete_count, full_reads)
    return SyncPlan(cfg.mode, cfg.table, changes, source.rejected, rate, estimated_s,
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


def check_mirror_guard(cfg: DynamoDBConfig, source: SourceSet, changes: Changes, force: bool) -> str:
    """Refuse a mirror run past its guards; with --force, the guard it went past ("" when none)."""
    if cfg.mode != WriteMode.MIRROR:
        return ""
    refusal = mirror_refusal(cfg.table, source.distinct_ids, changes.table_keys or 0, changes.delete_count,
                             cfg.max_delete_fraction)
    if refusal and not force:
        raise RunRefused(f"mirror refused: {refusal}")
    if refusal:
        log.warning("--force: going ahead although %s", refusal)
    return refusal or ""
