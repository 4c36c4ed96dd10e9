"""The sync's stage results, typed, and how a run's SyncResult renders into its report.

Counts, details and CloudWatch figures are rendered here and nowhere else; a stage that did
not run leaves its part out, so a run that stopped half-way still reports what it saw.
"""
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from pyspark.sql import DataFrame

from idstore import delta
from idstore import metrics as M
from idstore.config import CostConfig, WriteMode
from idstore.dynamodb.bulk import RatePlan, WriteStats
from idstore.pipeline.report import JobResult


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
    strategy: delta.Strategy
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
        return f"{self.write_units:,.0f} write units + {self.read_units:,.0f} read units = ${self.usd:,.6f}"


GB = 2 ** 30  # the import is billed per GB of uncompressed input


@dataclass(frozen=True)
class ImportPlan:
    """A first load by import: what is staged, its price, and what the write path would cost instead."""

    items: int
    staged_bytes: int
    objects: int
    too_large: int  # over DynamoDB's item limit: neither path can write them
    usd: float
    write_path: RunCost  # every item put by the writer: 1 write unit per started KB

    @classmethod
    def at(cls, prices: CostConfig, items: int, staged_bytes: int, objects: int, too_large: int,
           write_units: int) -> "ImportPlan":
        return cls(items, staged_bytes, objects, too_large, round(staged_bytes / GB * prices.import_usd_per_gb, 6),
                   RunCost.at(prices, write_units, 0))

    @property
    def gb(self) -> float:
        return self.staged_bytes / GB

    def text(self, table: str, dry_run: bool) -> str:
        verb = "would" if dry_run else "will"
        return (f"first load by import: {table} does not exist, so this run {verb} create it with DynamoDB's "
                f"import from S3: {self.items:,} items, {self.gb:,.3f} GB in {self.objects} object(s), "
                f"${self.usd:,.6f} and no write units (the write path: {self.write_path.text()})"
                + (f"; {self.too_large:,} items over 400 KB left out" if self.too_large else "")
                + ("; dry run: nothing staged" if dry_run else ""))

    def as_dict(self) -> Dict[str, Any]:
        return {"items": self.items, "staged_bytes": self.staged_bytes, "gb": round(self.gb, 6),
                "objects": self.objects, "too_large": self.too_large, "cost_usd": self.usd,
                "write_path_cost": asdict(self.write_path)}


@dataclass(frozen=True)
class ImportOutcome:
    """An import followed to its end: DynamoDB's counts, what it did not take, and the time it took."""

    arn: str
    resumed: bool  # a run killed during it started it; this run followed it
    plan: ImportPlan
    status: str
    imported: int
    errors: int
    processed_bytes: int
    missing: int  # staged items not in the table: written by the budgeted writer after it
    missing_keys: Tuple[str, ...]  # the first of them, for the report
    settings: Tuple[str, ...]  # what was applied after it (TTL, PITR, deletion protection)
    seconds: float
    staging_removed: bool

    def text(self) -> str:
        return (f"import {self.arn} ({'resumed, ' if self.resumed else ''}{self.status}): {self.imported:,} of "
                f"{self.plan.items:,} items imported, {self.errors:,} errors, {self.missing:,} left to the writer; "
                f"{self.plan.gb:,.3f} GB, ${self.plan.usd:,.6f}, {self.seconds:,.0f} s "
                f"(the write path: {self.plan.write_path.text()})")

    @property
    def settled(self) -> bool:
        """The table holds this run's whole set: nothing is left for the write path."""
        return not self.resumed and not self.missing

    def as_dict(self) -> Dict[str, Any]:
        return {"arn": self.arn, "resumed": self.resumed, "status": self.status, **self.plan.as_dict(),
                "imported": self.imported, "errors": self.errors, "processed_bytes": self.processed_bytes,
                "missing": self.missing, "missing_keys": list(self.missing_keys), "settings": list(self.settings),
                "seconds": round(self.seconds, 1), "staging_removed": self.staging_removed}


@dataclass(frozen=True)
class SyncPlan:
    """What the run will write, at what rate and cost, and how long that should take."""

    mode: WriteMode
    table: str
    changes: Changes
    rejected: int
    rate: RatePlan
    estimated_write_s: float
    cost: RunCost
    full_run_cost: Optional[RunCost]  # a delta run: what a full run would have cost

    @property
    def strategy(self) -> delta.Strategy:
        return self.changes.strategy

    def text(self, dry_run: bool) -> str:
        verb = "would" if dry_run else "will"
        c = self.changes
        kind = "delta run" if self.strategy.delta else "full run"
        puts = f"put {c.put_count:,} ids"
        if self.strategy.delta:
            puts += (f" ({c.new:,} new, {c.changed:,} changed, {c.refresh:,} TTL refresh), "
                     f"skip {c.unchanged:,} unchanged")
        deletes = ""
        if self.mode == WriteMode.MIRROR:
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
        if self.mode == WriteMode.MIRROR:
            counts["stale"] = c.delete_count
            counts["table_keys_before"] = c.table_keys
        return counts

    def report_details(self, dry_run: bool) -> Dict[str, Any]:
        rate, c = self.rate, self.changes
        return {
            "strategy": "delta" if self.strategy.delta else "full",
            "strategy_reason": self.strategy.why,
            "write_rate_wcu": rate.job_rate, "write_rate_reason": rate.reason, "write_partitions": rate.partitions,
            "concurrent_tasks": rate.concurrent_tasks,
            "planned": {
                "puts": c.put_count, "puts_new": c.new, "puts_changed": c.changed, "puts_refresh": c.refresh,
                "unchanged": c.unchanged, "deletes": c.delete_count, "rejected": self.rejected,
                "table_keys": c.table_keys, "estimated_write_s": self.estimated_write_s,
            },
            "cost": {"planned": asdict(self.cost),
                     **({"full_run": asdict(self.full_run_cost)} if self.full_run_cost else {})},
            "plan": self.text(dry_run),
        }


@dataclass(frozen=True)
class WriteOutcome:
    """One write phase (puts or deletes): the writer's stats summed over partitions, and its time."""

    stats: WriteStats
    seconds: float

    @classmethod
    def nothing(cls) -> "WriteOutcome":
        return cls(WriteStats.nothing(), 0.0)

    @property
    def written(self) -> int:
        return int(self.stats.written)

    @property
    def rejected(self) -> int:
        """Refused by the writer before sending: key too long, item too large, ..."""
        return int(self.stats.rejected)

    @property
    def duplicates(self) -> int:
        return int(self.stats.duplicates)

    @property
    def items_per_s(self) -> Optional[float]:
        return round(self.written / self.seconds, 1) if self.written and self.seconds else None

    def report_details(self, name: str, verb: str) -> Dict[str, Any]:
        details: Dict[str, Any] = {}
        if self.stats.requests:
            details[name] = self.stats.as_dict()
        if self.items_per_s is not None:
            details[f"{verb}_items_per_s"] = self.items_per_s
        return details


@dataclass(frozen=True)
class RunTotals:
    """Retries, consumed capacity and cost of the whole run, once its writes are done."""

    consumed_wcu: float
    consumed_rcu: float
    cost: RunCost
    retries: int
    throttles: int  # throttle errors retried and UnprocessedItems re-sent: DynamoDB pushing back
    throttled_s: float

    @classmethod
    def of(cls, prices: CostConfig, plan: SyncPlan, puts: WriteOutcome, deletes: WriteOutcome) -> "RunTotals":
        consumed_wcu = puts.stats.consumed_wcu + deletes.stats.consumed_wcu
        consumed_rcu = plan.changes.scan.consumed_rcu if plan.changes.scan else 0.0
        return cls(consumed_wcu, consumed_rcu, RunCost.at(prices, consumed_wcu, consumed_rcu),
                   int(puts.stats.retries + deletes.stats.retries), int(puts.stats.throttles + deletes.stats.throttles),
                   puts.stats.throttled_s + deletes.stats.throttled_s)


@dataclass
class SyncResult(JobResult):
    """What a sync run found and did, stage by stage; None where a stage did not run (yet)."""

    mode: WriteMode
    dry_run: bool
    table: str = ""
    source: Optional[SourceSet] = None
    quarantine: str = ""  # where the rejected rows went
    plan: Optional[SyncPlan] = None
    guard_overridden: str = ""  # the mirror guard --force went past
    import_plan: Optional[ImportPlan] = None  # a first load by import (a dry run stops there)
    imported: Optional[ImportOutcome] = None
    path_note: str = ""  # why an import-enabled run took the write path
    puts: Optional[WriteOutcome] = None
    deletes: Optional[WriteOutcome] = None
    totals: Optional[RunTotals] = None
    snapshot: Optional[str] = None  # the record written; "" when the run writes none

    @property
    def mirror(self) -> bool:
        return self.mode == WriteMode.MIRROR

    def cached(self) -> List[DataFrame]:
        """The DataFrames the run persisted, to unpersist when it ends."""
        frames = [self.source.rows, self.source.ids] if self.source else []
        scan = self.plan.changes.scan if self.plan else None
        return frames + ([scan.keys, scan.stale] if scan else [])

    def counts(self) -> Dict[str, Any]:
        counts: Dict[str, Any] = {}
        if self.source:
            counts.update(self.source.report_counts())
        if self.imported:
            counts.update(imported=self.imported.imported, import_errors=self.imported.errors,
                          import_missing=self.imported.missing)
        if self.plan:
            counts.update(self.plan.report_counts())
        if self.puts:
            counts.update(written=self.puts.written, writer_rejected=self.puts.rejected)
        if self.deletes and self.mirror:
            counts["deleted"] = self.deletes.written
        return counts

    def details(self) -> Dict[str, Any]:
        details: Dict[str, Any] = {"mode": self.mode}
        if self.source:
            details["rejected_by_reason"] = dict(self.source.rejected_by_reason)
        if self.quarantine:
            details["quarantine"] = self.quarantine
        if self.imported:  # a line for the summary, the figures for the report
            details["imported"], details["import"] = self.imported.text(), self.imported.as_dict()
        elif self.import_plan:
            plan = self.import_plan.text(self.table, self.dry_run)
            details["import_plan"], details["import"] = plan, {"plan": plan, **self.import_plan.as_dict()}
        if self.path_note:
            details["path"] = self.path_note
        if self.plan:
            details.update(self.plan.report_details(self.dry_run))
        if self.guard_overridden:
            details["guard_overridden"] = self.guard_overridden
        if self.puts:
            details.update(self.puts.report_details("writer", "put"))
        if self.deletes and self.mirror:
            details.update(self.deletes.report_details("deleter", "delete"))
        if self.totals:
            t = self.totals
            details.update(consumed_wcu=round(t.consumed_wcu, 1), consumed_rcu=round(t.consumed_rcu, 1))
            details["cost"] = {**details.get("cost", {}), "consumed": asdict(t.cost)}
            details.update(cost_usd=t.cost.usd, retries=t.retries, throttled_s=round(t.throttled_s, 1))
        if self.snapshot is not None:
            details["snapshot"] = self.snapshot
        return details

    def metrics(self) -> Dict[str, float]:
        metrics: Dict[str, float] = {}
        if self.source:
            metrics[M.ITEMS_REJECTED] = self.source.rejected
        if self.source and self.plan and self.puts:
            metrics.update({M.ITEMS_PUT: self.puts.written, M.ITEMS_REJECTED: self.source.rejected + self.puts.rejected,
                            M.ITEMS_UNCHANGED: self.plan.changes.unchanged})
        if self.deletes and self.mirror:
            metrics[M.ITEMS_DELETED] = self.deletes.written
        if self.imported:
            i = self.imported
            metrics.update({M.ITEMS_IMPORTED: i.imported, M.IMPORT_GB: i.plan.gb, M.IMPORT_SECONDS: i.seconds,
                            M.IMPORT_COST_USD: i.plan.usd, M.WRITE_PATH_COST_USD: i.plan.write_path.usd})
        if self.totals:
            t = self.totals
            metrics.update({M.CONSUMED_WCU: t.consumed_wcu, M.CONSUMED_RCU: t.consumed_rcu,
                            M.RUN_COST_USD: t.cost.usd, M.THROTTLES: t.throttles})
        if self.imported:  # the run's cost includes its import's
            metrics[M.RUN_COST_USD] = round(metrics.get(M.RUN_COST_USD, 0.0) + self.imported.plan.usd, 6)
        return metrics
