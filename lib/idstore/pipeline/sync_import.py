"""A first load by DynamoDB's import from S3: stage -> import -> follow -> settings -> record.

When the table does not exist and dynamodb.create = import, the run writes the validated set as
gzip DynamoDB JSON under dynamodb.import_path/<table>/run_id=<id>/ (each item built by the
writer's own code, so typed as a put would type it; keys unique, as the set is; spread over the
objects by a hash of the key, never sorted, at most 4 million items an object as AWS advises),
stores the record of that set beside the snapshots, and calls ImportTable. The import spends no
write units. Once it has ended: the settings it cannot set (TTL, point-in-time recovery,
deletion protection) are applied, ImportedItemCount is reconciled with the staged count, the
pointer moves to the record, and the staged objects are removed.

Items the import did not take (ErrorCount, or an object it gave up on) are found by a Scan and
left out of the record, so the run goes on as a delta run against it and the budgeted writer
puts them, like any new id; the report names them.

A run killed during the import leaves the ticket beside the lock (<table>.import.json: the
import's ARN, its ClientToken, the staged set's record). The next run, holding the lock, follows
that import instead of starting a second one, then writes, as a delta run, whatever changed in
the source since. A failed import leaves the pointer where it was and ends the run naming the
import, its failure and whatever table DynamoDB left behind.
"""
import logging
import math
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, Callable, Dict, Optional, Tuple

from botocore.exceptions import ClientError
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from idstore import delta, io
from idstore.config import Config
from idstore.dynamodb import importer
from idstore.dynamodb.bulk import find_table
from idstore.dynamodb.scanner import scan_keys
from idstore.dynamodb.staging import STAGED_DDL, staging_encoder
from idstore.errors import RunFailed
from idstore.lock import LOCK_FOLDER
from idstore.pipeline.report import RunReport
from idstore.pipeline.sync_plan import Stamp
from idstore.pipeline.sync_result import ImportOutcome, ImportPlan, RunCost, SourceSet
from idstore.snapshot import Pointer, RecordSize, move_pointer, store_record

log = logging.getLogger(__name__)

ITEMS_PER_OBJECT = 4_000_000  # AWS's advice for items under 1 KB
MAX_OBJECTS = 50_000  # ImportTable's limit for one import
MISSING_SAMPLE = 20  # keys (the smallest) the report names when the import did not take every item


@dataclass(frozen=True)
class ImportTicket:
    """An import under way for a table: what a run killed during it left for the next one."""

    run_id: str
    client_token: str
    staging: str  # the run's staging folder
    plan: ImportPlan
    pointer: Pointer  # the staged set's record, named by _LATEST.json once the table holds it
    arn: str = ""  # "" until ImportTable has answered

    @property
    def staged_prefix(self) -> str:
        return io.join(self.staging, "part-")  # the part files only, never Spark's _SUCCESS

    def as_dict(self) -> Dict[str, Any]:
        return {"run_id": self.run_id, "client_token": self.client_token, "staging": self.staging,
                "plan": asdict(self.plan),
                "pointer": self.pointer.as_dict(), "arn": self.arn}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ImportTicket":
        plan = dict(data["plan"])
        plan["write_path"] = RunCost(**plan["write_path"])
        return cls(data["run_id"], data["client_token"], data["staging"], ImportPlan(**plan),
                   Pointer.from_dict(data["pointer"]), data.get("arn", ""))


def ticket_location(config: Config) -> str:
    """<snapshot.path>/_locks/<table>.import.json, beside the lock that covers the import."""
    return io.join(config.snapshot.path, LOCK_FOLDER, f"{config.dynamodb.table}.import.json")


def read_ticket(config: Config) -> Optional[ImportTicket]:
    try:
        data = io.read_json(ticket_location(config), config.aws.endpoint_url, config.aws.region)
    except FileNotFoundError:
        return None
    return ImportTicket.from_dict(data)


def _write_ticket(config: Config, ticket: ImportTicket) -> None:
    io.write_json(ticket_location(config), ticket.as_dict(), config.aws.endpoint_url, config.aws.region)


def _remove_ticket(config: Config) -> None:
    io.remove(ticket_location(config), config.aws.endpoint_url, config.aws.region)


# -- staging ----------------------------------------------------------------------------
def staging_objects(items: int, parallelism: int) -> int:
    """At most ITEMS_PER_OBJECT items an object, at least one object per task slot, at most MAX_OBJECTS."""
    return max(1, min(MAX_OBJECTS, max(math.ceil(items / ITEMS_PER_OBJECT), parallelism)))


def encoded_items(spark: SparkSession, config: Config, source: SourceSet, stamp: Stamp) -> Tuple[DataFrame, int]:
    """The set as import lines (STAGED_DDL), spread over the objects by a hash of the key; how many objects."""
    id_column, cfg = config.source.id_column, config.dynamodb
    objects = staging_objects(source.distinct_ids, spark.sparkContext.defaultParallelism)
    by_hash = F.xxhash64(F.col(id_column))
    rows = source.ids.select(id_column, *config.source.attribute_columns).repartition(objects, by_hash)
    encoder = staging_encoder(id_column, cfg.key_attribute, stamp.item_constants(cfg))
    return rows.sortWithinPartitions(by_hash).mapInArrow(encoder, STAGED_DDL), objects


def plan_of(config: Config, lines: DataFrame, objects: int) -> ImportPlan:
    """What the lines make: items, bytes and units of those that fit, and those that do not."""
    fits = ~F.col("too_large")
    totals = lines.agg(F.count(F.when(fits, True)).alias("items"), F.sum(F.when(fits, F.col("bytes"))).alias("bytes"),
                       F.sum(F.when(fits, F.col("write_units"))).alias("units"),
                       F.count(F.when(~fits, True)).alias("too_large")).first()
    return ImportPlan.at(config.cost, int(totals["items"]), int(totals["bytes"] or 0), objects,
                         int(totals["too_large"]), int(totals["units"] or 0))


def plan_import(spark: SparkSession, config: Config, source: SourceSet, stamp: Stamp) -> ImportPlan:
    """A dry run's plan: the lines encoded and counted, nothing written."""
    lines, objects = encoded_items(spark, config, source, stamp)
    return plan_of(config, lines, objects)


def stage(spark: SparkSession, config: Config, source: SourceSet, stamp: Stamp, report: RunReport) -> ImportTicket:
    """Write the import's objects and the record of what they hold; the ticket for the import."""
    id_column = config.source.id_column
    staging = io.join(config.dynamodb.import_path, config.dynamodb.table, f"run_id={stamp.run_id}")
    with report.timed("stage"):
        lines, objects = encoded_items(spark, config, source, stamp)
        lines = lines.persist(StorageLevel.MEMORY_AND_DISK)  # counted, then written
        try:
            plan = plan_of(config, lines, objects)
            fits = lines.where(~F.col("too_large"))
            fits.select("line").write.mode("overwrite").option("compression", "gzip").text(staging)
            ids = source.ids
            if plan.too_large:  # DynamoDB would refuse them: the record holds what the table will
                ids = ids.join(fits.select(F.col("key").alias("_staged")),
                               F.col(id_column).cast("string") == F.col("_staged"), "left_semi")
            record = delta.full_record(ids, id_column, stamp.run_id, stamp.epoch, stamp.expires_at(config.dynamodb))
            pointer = store_record(record, config, stamp.run_id, stamp.now, RecordSize(plan.items, source.id_bytes),
                                   delta_of=None, folder=f"run_id={stamp.run_id}-import")
        finally:
            lines.unpersist()
    log.info("staged %d items (%d bytes, %d objects) under %s", plan.items, plan.staged_bytes, plan.objects, staging)
    return ImportTicket(stamp.run_id, uuid.uuid4().hex, staging, plan, pointer)


# -- the import -------------------------------------------------------------------------
def _started(config: Config, ticket: ImportTicket) -> ImportTicket:
    """The ticket once ImportTable has answered; a ticket without an ARN (a run killed during the
    call) sends the same request with the same ClientToken, which DynamoDB answers with the same import."""
    if ticket.arn:
        return ticket
    _write_ticket(config, ticket)  # first, so a run killed during the call still finds the token
    request = importer.import_request(config.dynamodb, ticket.staged_prefix, ticket.client_token)
    ticket = replace(ticket, arn=importer.start_import(config.dynamodb, request).arn)
    _write_ticket(config, ticket)
    return ticket


def _left_behind(config: Config) -> str:
    """What a failed import left in place of the table, and what the next run does about it."""
    try:
        table = find_table(config.dynamodb)
    except ClientError as exc:
        return f"whether DynamoDB left a table could not be told ({exc}): describe {config.dynamodb.table} to see"
    if table is None:
        return "DynamoDB left no table, so the next run imports again"
    return (f"DynamoDB left the table {config.dynamodb.table} ({table.get('TableStatus')}, "
            f"{table.get('ItemCount', 0)} items): the next run finds it and takes the write path, putting every id; "
            "delete the table first to import again instead")


def _failed(config: Config, ticket: ImportTicket, state: importer.ImportState) -> RunFailed:
    _remove_ticket(config)  # this import is over: the next run must not follow it again
    return RunFailed(f"DynamoDB import {state.arn} into {config.dynamodb.table} ended {state.status}"
                     f"{': ' + state.failure if state.failure else ''}. The snapshot pointer did not move; the "
                     f"staged objects stay under {ticket.staging}. {_left_behind(config)}")


def _record_of_table(spark: SparkSession, config: Config, ticket: ImportTicket) -> Tuple[Pointer, int, Tuple[str, ...]]:
    """The staged record without the keys the table lacks (found by a Scan); how many, and the first."""
    id_column = config.source.id_column
    staged = spark.read.parquet(ticket.pointer.path)
    present = scan_keys(spark, config.dynamodb).withColumnRenamed("key", "_present")
    on = F.col(id_column).cast("string") == F.col("_present")
    held = staged.join(present, on, "left_semi")
    missing = staged.join(present, on, "left_anti").select(F.col(id_column).cast("string").alias("key")).persist()
    try:
        count = missing.count()
        sample = tuple(row[0] for row in missing.orderBy("key").limit(MISSING_SAMPLE).collect())
    finally:
        missing.unpersist()
    now = datetime.fromisoformat(ticket.pointer.written_at)
    size = RecordSize(ticket.pointer.keys - count, -1)  # key bytes unknown: the filter measures them
    pointer = store_record(held, config, ticket.run_id, now, size, delta_of=None,
                           folder=f"run_id={ticket.run_id}-imported")
    return pointer, count, sample


def import_first_load(spark: SparkSession, config: Config, source: SourceSet, stamp: Stamp,
                      ticket: Optional[ImportTicket], report: RunReport,
                      still_ours: Callable[[], None] = lambda: None) -> Tuple[ImportOutcome, Pointer]:
    """Stage and import the set (or follow `ticket`'s import); the outcome and the pointer now moved."""
    resumed = ticket is not None
    if ticket is None:
        ticket = stage(spark, config, source, stamp, report)
    else:
        log.info("resuming import %s started by run %s: following it, not starting another",
                 ticket.arn or f"(token {ticket.client_token})", ticket.run_id)
    ticket = _started(config, ticket)
    started = time.monotonic()
    with report.timed("import"):
        state = importer.follow_import(config.dynamodb, ticket.arn, ticket.plan.items, still_ours)
    seconds = time.monotonic() - started
    if state.status != importer.COMPLETED:
        raise _failed(config, ticket, state)
    settings = tuple(importer.apply_settings(config.dynamodb))
    pointer, missing, sample = ticket.pointer, 0, ()
    if state.imported_items != ticket.plan.items or state.errors:
        log.warning("import %s took %d of %d staged items (%d errors): finding the rest with a Scan",
                    state.arn, state.imported_items, ticket.plan.items, state.errors)
        pointer, missing, sample = _record_of_table(spark, config, ticket)
    still_ours()
    move_pointer(config, pointer)
    _remove_ticket(config)
    removed = not config.dynamodb.import_keep_staging
    if removed:
        io.remove_prefix(ticket.staging + "/", config.aws.endpoint_url, config.aws.region)
    outcome = ImportOutcome(state.arn, resumed, ticket.plan, state.status, state.imported_items, state.errors,
                            state.processed_bytes, missing, sample, settings, seconds, removed)
    log.info("import %s: %d items imported, %d errors, %d missing; %.3f GB, $%.6f; %.0f s", state.arn,
             state.imported_items, state.errors, missing, ticket.plan.gb, ticket.plan.usd, seconds)
    return outcome, pointer


def continue_after(spark: SparkSession, outcome: ImportOutcome, pointer: Pointer) -> delta.Strategy:
    """The strategy of the rest of the run: a delta against what the import left in the table."""
    why = (f"delta against the import {outcome.arn}" +
           (f", which did not take {outcome.missing:,} items" if outcome.missing else "") +
           (" (resumed: the source may have changed since it was staged)" if outcome.resumed else ""))
    return delta.Strategy(True, why, pointer, spark.read.parquet(pointer.path))
