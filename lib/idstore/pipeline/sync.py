"""The sync job: source ids -> validated set -> DynamoDB table (upsert), reconciled."""
import logging
import math
from typing import Dict, Mapping

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from idstore import io
from idstore.config import Config
from idstore.dynamodb import table as ddb
from idstore.pipeline.common import RunFailed, RunRefused, RunReport
from idstore.snapshot import write_snapshot
from idstore.source.credentials import resolve_credentials
from idstore.source.jdbc import read_source
from idstore.validation import REASON, distinct_ids, normalise_ids, split_valid_ids

log = logging.getLogger(__name__)

ITEMS_PER_WRITE_PARTITION = 50_000  # small enough that a retried task redoes little


def load_id_set(spark: SparkSession, config: Config, environ: Mapping[str, str]):
    """(source rows, valid distinct ids, rejected rows with a reason), source read once."""
    source = config.source
    credentials = resolve_credentials(source, config.aws, environ)
    columns = [source.id_column, *source.attribute_columns]
    raw = read_source(spark, source, credentials).select(*columns)
    normalised = raw.transform(normalise_ids(source.id_column, config.validation.trim, config.validation.case))
    normalised = normalised.persist(StorageLevel.MEMORY_AND_DISK)
    valid, rejected = split_valid_ids(normalised, source.id_column)
    return normalised, distinct_ids(valid, source.id_column), rejected


def count_rejected(rejected: DataFrame) -> Dict[str, int]:
    return {row[REASON]: row["count"] for row in rejected.groupBy(REASON).count().collect()}


def run_sync(spark: SparkSession, config: Config, report: RunReport, environ: Mapping[str, str],
             dry_run: bool = False, force: bool = False) -> None:
    id_column = config.source.id_column
    with report.timed("read_validate"):
        source_rows, ids, rejected = load_id_set(spark, config, environ)
        ids = ids.persist(StorageLevel.MEMORY_AND_DISK)
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
    _check_rejected_share(config, rejected_total, total)

    table = ddb.describe_table(config.dynamodb)
    slots = ddb.concurrent_slots(spark)
    partitions = max(slots, math.ceil(distinct / ITEMS_PER_WRITE_PARTITION))
    plan = ddb.plan_rate(config.dynamodb, table, partitions, slots)
    report.details.update(write_rate_wcu=plan.job_rate, write_rate_reason=plan.reason,
                          write_partitions=plan.partitions, concurrent_tasks=plan.concurrent_tasks)
    report.details["estimated_write_s"] = round(distinct / plan.job_rate, 1) if plan.job_rate else 0.0
    if dry_run:
        report.details["plan"] = f"would put {distinct} ids at {plan.job_rate:.0f} WCU/s; nothing written"
        return

    if rejected_total and config.output.quarantine_path:
        target = io.join(config.output.quarantine_path, "sync", f"run_id={report.run_id}")
        rejected.select(F.col(id_column).alias("id"), REASON).write.mode("overwrite").json(target)
        report.details["quarantine"] = target

    with report.timed("write"):
        stats = ddb.write_dataframe(ids, id_column, config.dynamodb, plan, action="put", total_hint=distinct)
    report.counts.update(
        written=int(stats["written"]),
        writer_rejected=int(stats["rejected_key_too_long"] + stats["rejected_item_too_large"]),
    )
    report.details["writer"] = stats
    reconcile(report.counts, stats)
    with report.timed("snapshot"):
        report.details["snapshot"] = write_snapshot(ids.select(id_column), config, report.run_id) or ""


def reconcile(counts: Mapping[str, int], stats: Mapping[str, float]) -> None:
    """written + rejected + duplicates must account for every source row, or the run fails."""
    accounted = (
        stats["written"] + stats["rejected_key_too_long"] + stats["rejected_item_too_large"]
        + stats["duplicates"] + counts["rejected"] + counts["duplicates"]
    )
    if accounted != counts["source_rows"]:
        raise RunFailed(
            f"reconciliation failed: {counts['source_rows']} source rows but "
            f"{int(stats['written'])} written + {counts['rejected'] + int(stats['rejected_key_too_long'] + stats['rejected_item_too_large'])} rejected "
            f"+ {counts['duplicates'] + int(stats['duplicates'])} duplicates = {int(accounted)}"
        )


def _check_rejected_share(config: Config, rejected: int, total: int) -> None:
    limit = config.validation.max_rejected_fraction
    if total and rejected / total > limit:
        raise RunRefused(
            f"{rejected} of {total} source rows rejected ({rejected / total:.2%}), "
            f"over validation.max_rejected_fraction {limit:g}"
        )
