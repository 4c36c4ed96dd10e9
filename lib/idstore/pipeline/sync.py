"""The sync job: source ids -> validated set -> DynamoDB table (upsert or mirror), reconciled.

A run is a sequence of stages, each a function of its inputs returning a typed result:
read and validate -> guards -> lock -> the table, or a first load by import when there is none
(sync_import.py) -> strategy (delta against the record, or full) -> plan (the diff, or mirror's
Scan) -> puts -> deletes -> reconcile -> the new record. Each result
goes into the run's SyncResult as it arrives, and the report is rendered from that, so a run
that stops half-way still reports what it saw. A re-run repeats the same puts and deletes
(idempotent) against the same record, so it converges after any failure.
"""
import logging
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping, Optional, Tuple, cast

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from idstore import delta, io
from idstore.config import Config, DynamoDBConfig, WriteMode
from idstore.dynamodb import bulk as ddb
from idstore.errors import RunFailed, RunRefused
from idstore.events.output import apply_hadoop_options, sse_kms_options
from idstore.idset import id_set_stats, read_source_ids
from idstore.lock import LockRefused, TableLock, lock_location
from idstore.pipeline.options import SyncOptions
from idstore.pipeline.report import RunReport
from idstore.pipeline.sync_import import ImportTicket, continue_after, import_first_load, plan_import, read_ticket
from idstore.pipeline.sync_plan import KEY, Stamp, check_mirror_guard, plan_changes, plan_sync
from idstore.pipeline.sync_result import Changes, RunTotals, SourceSet, SyncPlan, SyncResult, WriteOutcome
from idstore.snapshot import RecordSize, write_record
from idstore.validation import REASON

log = logging.getLogger(__name__)


# -- stages -----------------------------------------------------------------------------
def read_and_validate(spark: SparkSession, config: Config, environ: Mapping[str, str]) -> SourceSet:
    """The source read once, normalised and validated; the counts of each part."""
    rows, ids, rejected = read_source_ids(spark, config, environ)
    ids = ids.transform(delta.with_digest(config.source.attribute_columns)).persist(StorageLevel.MEMORY_AND_DISK)
    by_reason = {row[REASON]: row["count"] for row in rejected.groupBy(REASON).count().collect()}
    distinct, id_bytes = id_set_stats(ids, config.source.id_column)
    return SourceSet(rows, ids, rejected, rows.count(), distinct, id_bytes, by_reason)


def write_quarantine(source: SourceSet, config: Config, run_id: str) -> str:
    """Rejected rows with their reason as JSON lines under quarantine_path/sync/run_id=.../; where."""
    if not config.output.quarantine_path:
        log.warning("%d rejected rows are counted but not kept: output.quarantine_path is empty", source.rejected)
        return ""
    target = io.join(config.output.quarantine_path, "sync", f"run_id={run_id}")
    # encrypted with output.sse_kms_key_id, as the filter's quarantine is
    apply_hadoop_options(source.rejected_rows.sparkSession, sse_kms_options(config.output))
    columns = (F.col(config.source.id_column).alias("id"), REASON, *config.source.attribute_columns)
    (
        source.rejected_rows.select(*columns)
        .write.mode("overwrite")
        .option("ignoreNullFields", "false")  # a null id shows as "id": null
        .json(target)
    )
    return target


def refuse_rejected_share(source: SourceSet, limit: float) -> None:
    if source.source_rows and source.rejected / source.source_rows > limit:
        raise RunRefused(
            f"{source.rejected} of {source.source_rows} source rows rejected "
            f"({source.rejected / source.source_rows:.2%}), over validation.max_rejected_fraction {limit:g}"
        )


def write_puts(config: Config, plan: SyncPlan, constants: Mapping[str, Any], report: RunReport) -> WriteOutcome:
    puts = plan.changes.put_count
    if not puts:
        return WriteOutcome.nothing()
    with report.timed("write") as timer:
        stats = ddb.write_dataframe(plan.changes.puts, config.source.id_column, config.dynamodb, plan.rate,
                                    action="put", constant_attributes=dict(constants))
    return WriteOutcome(stats, timer.seconds)


def write_deletes(spark: SparkSession, config: Config, table: Mapping[str, Any], changes: Changes,
                  report: RunReport) -> WriteOutcome:
    if changes.deletes is None or not changes.delete_count:
        return WriteOutcome.nothing()
    rate = ddb.plan_write(spark, config.dynamodb, table, changes.delete_count)
    with report.timed("delete") as timer:
        stats = ddb.write_dataframe(changes.deletes, KEY, config.dynamodb, rate, action="delete")
    deleted = WriteOutcome(stats, timer.seconds)
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


def no_table(cfg: DynamoDBConfig) -> RunFailed:
    return RunFailed(f"DynamoDB DescribeTable: no table {cfg.table!r} in {cfg.region} (dynamodb.table); "
                     "create it (idstore render writes its CloudFormation), name the right one, or set "
                     'dynamodb.create = "import" to have this run create it by import from S3')


@contextmanager
def table_lock(config: Config, run_id: str, options: SyncOptions) -> Iterator[Optional[TableLock]]:
    """The per-table lock beside the snapshots, held for the run; None for a dry run or without snapshot.path."""
    if options.dry_run:
        yield None
        return
    if not config.snapshot.path:
        log.warning("no run lock: snapshot.path is empty, so nothing stops two runs on %s interleaving",
                    config.dynamodb.table)
        yield None
        return
    lock = TableLock(lock_location(config.snapshot.path, config.dynamodb.table), run_id,
                     lease_s=config.dynamodb.lock_lease_s, endpoint_url=config.aws.endpoint_url,
                     region=config.aws.region)
    with ExitStack() as held:
        try:
            held.enter_context(lock.held(break_lock=options.break_lock))
        except LockRefused as exc:
            raise RunRefused(str(exc)) from None
        yield lock


def save_record(config: Config, report: RunReport, stamp: Stamp, source: SourceSet, plan: SyncPlan,
                lock: Optional[TableLock]) -> str:
    """The record after the run, and the pointer moved to it; "" when there is none to write."""
    if source.distinct_ids == 0 and config.dynamodb.mode == WriteMode.UPSERT:
        # the table was not touched; the pointer keeps naming the last set it was synced to
        log.warning("no snapshot: the source was empty and upsert changed nothing")
        return ""
    if not config.snapshot.path:
        return ""
    if lock is not None:
        lock.check()  # the pointer moves only while this run still holds the table
    with report.timed("snapshot"):
        size = RecordSize(source.distinct_ids, source.id_bytes)
        return write_record(plan.changes.record, config, stamp.run_id, stamp.now, size,
                            delta_of=plan.strategy.pointer if plan.strategy.delta else None)


def plan_import_only(spark: SparkSession, config: Config, source: SourceSet, stamp: Stamp,
                     ticket: Optional[ImportTicket], result: SyncResult) -> None:
    """A dry run's view of a first load by import: its cost beside the write path's; nothing staged."""
    if ticket:
        result.path_note = (f"an import is under way ({ticket.arn or ticket.client_token}, run {ticket.run_id}): "
                            "a run would follow it, then write what changed since as a delta run")
        result.import_plan = ticket.plan
    else:
        result.import_plan = plan_import(spark, config, source, stamp)
    log.info("plan: %s%s", result.import_plan.text(config.dynamodb.table, dry_run=True),
             f"; {result.path_note}" if result.path_note else "")


def table_or_import(spark: SparkSession, config: Config, report: RunReport, source: SourceSet, stamp: Stamp,
                    options: SyncOptions, lock: Optional[TableLock]
                    ) -> Optional[Tuple[Mapping[str, Any], Optional[delta.Strategy]]]:
    """The table the run writes, and the strategy an import leaves it (else None: chosen from the
    record); None when the run ends here: a dry run's import plan, or an import that took the whole set."""
    result, cfg = cast(SyncResult, report.result), config.dynamodb
    table = ddb.find_table(cfg)
    ticket = read_ticket(config) if cfg.imports else None  # an import a killed run left under way
    if not ticket and not (table is None and cfg.imports):
        if table is None:
            raise no_table(cfg)
        if cfg.imports:
            result.path_note = f"{cfg.table} exists: the write path (an import only ever creates a new table)"
            log.info("%s", result.path_note)
        return table, None
    if options.dry_run:
        plan_import_only(spark, config, source, stamp, ticket, result)
        return None
    outcome, pointer = import_first_load(spark, config, source, stamp, ticket, report,
                                         lock.check if lock else lambda: None)
    result.imported, result.snapshot = outcome, pointer.path
    if outcome.settled:
        return None
    return ddb.describe_table(cfg), continue_after(spark, outcome, pointer)


# -- the run ----------------------------------------------------------------------------
def run_sync(spark: SparkSession, config: Config, report: RunReport, environ: Mapping[str, str],
             options: Optional[SyncOptions] = None) -> None:
    """One sync run into report.result; raises RunRefused (a guard, the lock), RunFailed or ConfigError."""
    options = options or SyncOptions()
    result = report.result = SyncResult(config.dynamodb.mode, options.dry_run, config.dynamodb.table)
    try:
        with table_lock(config, report.run_id, options) as lock:
            _sync(spark, config, report, environ, options, lock)
    finally:
        for df in result.cached():
            df.unpersist()


def _sync(spark: SparkSession, config: Config, report: RunReport, environ: Mapping[str, str],
          options: SyncOptions, lock: Optional[TableLock]) -> None:
    result, stamp = cast(SyncResult, report.result), Stamp(report.run_id, datetime.now(timezone.utc))
    with report.timed("read_validate"):
        source = result.source = read_and_validate(spark, config, environ)
    if source.rejected and not options.dry_run:
        # written before the share check: a refused run is exactly when people need them
        result.quarantine = write_quarantine(source, config, report.run_id)
    refuse_rejected_share(source, config.validation.max_rejected_fraction)
    if source.distinct_ids == 0:
        log.warning("the source returned no valid ids")

    path = table_or_import(spark, config, report, source, stamp, options, lock)
    if path is None:
        return
    table, strategy = path
    with report.timed("plan"):
        changes = plan_changes(spark, config, source, table, stamp, options.full, strategy)
        plan = result.plan = plan_sync(spark, config, source, table, changes)
    log.info("plan: %s", plan.text(options.dry_run))
    result.guard_overridden = check_mirror_guard(config.dynamodb, source, changes, options.force)
    if options.dry_run:
        return

    puts = result.puts = write_puts(config, plan, stamp.item_constants(config.dynamodb), report)
    reconcile(source, changes, puts)
    deletes = result.deletes = write_deletes(spark, config, table, changes, report)
    result.totals = RunTotals.of(config.cost, plan, puts, deletes)
    result.snapshot = save_record(config, report, stamp, source, plan, lock)
