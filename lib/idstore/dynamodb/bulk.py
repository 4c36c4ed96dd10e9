"""Driver side of a table write: plan the rate, run the writer over a DataFrame, sum the stats."""
import logging
import math
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from botocore.exceptions import ClientError
from pyspark.sql import DataFrame, SparkSession

from idstore.config import DynamoDBConfig
from idstore.dynamodb.lease import Address, LeaseServer
from idstore.dynamodb.rate import choose_write_rate, per_task_rate, requests_in_flight
from idstore.dynamodb.stats import STATS_DDL, TaskStats, WriteStats
from idstore.dynamodb.transport import control_client
from idstore.dynamodb.writer import WriterSettings, partition_writer
from idstore.progress import ProgressServer

log = logging.getLogger(__name__)

ITEMS_PER_WRITE_PARTITION = 50_000  # small enough that a retried task redoes little


@dataclass(frozen=True)
class RatePlan:
    """The job's budget (`job_rate`, WCU/s) and its static split, `task_rate` = job_rate over
    the `concurrent_tasks` expected to run at once. While a write runs, the tasks lease their
    shares of `job_rate` from the driver, whatever their number; `task_rate` is only the
    fallback of a task that cannot reach the lease service, and sizes its sender threads.
    `items` is what the write is planned for, the progress line's total (0: not known)."""

    job_rate: float
    task_rate: float
    partitions: int
    concurrent_tasks: int
    reason: str
    items: int = 0


def describe_table(cfg: DynamoDBConfig) -> Dict[str, Any]:
    return control_client(cfg.region, cfg.endpoint_url).describe_table(TableName=cfg.table)["Table"]


def find_table(cfg: DynamoDBConfig) -> Optional[Dict[str, Any]]:
    """The table's DescribeTable description, or None when there is no such table."""
    try:
        return describe_table(cfg)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        return None


def plan_rate(cfg: DynamoDBConfig, table: Mapping[str, Any], partitions: int, slots: int,
              items: int = 0) -> RatePlan:
    job_rate, reason = choose_write_rate(dict(table), cfg.write_rate, cfg.capacity_fraction)
    concurrent = max(1, min(partitions, slots))
    return RatePlan(job_rate, per_task_rate(job_rate, partitions, slots), partitions, concurrent, reason, items)


def write_partitions(items: int, slots: int) -> int:
    """Partitions of a write: ITEMS_PER_WRITE_PARTITION items each, and at least one per task slot."""
    return max(slots, math.ceil(items / ITEMS_PER_WRITE_PARTITION))


def plan_write(spark: SparkSession, cfg: DynamoDBConfig, table: Mapping[str, Any], items: int) -> RatePlan:
    """The plan of a write of `items` to `table` (its DescribeTable description): the rate,
    and the partitions over the task slots the cluster has now."""
    slots = concurrent_slots(spark)
    return plan_rate(cfg, table, write_partitions(items, slots), slots, items)


def concurrent_slots(spark: SparkSession) -> int:
    """Task slots that can run at once: the cluster's cores as Spark sees them now.

    Under dynamic allocation more executors may come later; the cap
    spark.dynamicAllocation.maxExecutors x executor cores bounds that when it is set.
    This only sizes the static split (a task's fallback share): the budget itself is
    leased to the tasks that actually run (`idstore.dynamodb.lease`).
    """
    conf = spark.sparkContext.getConf()
    slots = spark.sparkContext.defaultParallelism
    if conf.get("spark.dynamicAllocation.enabled", "false") == "true":
        max_executors = conf.get("spark.dynamicAllocation.maxExecutors", "")
        cores = int(conf.get("spark.executor.cores", "1"))
        if max_executors.isdigit() and int(max_executors) < 10**6:
            slots = max(slots, int(max_executors) * cores)
    return slots


def write_dataframe(
    df: DataFrame,
    key_column: str,
    cfg: DynamoDBConfig,
    plan: RatePlan,
    action: str = "put",
    constant_attributes: Optional[Mapping[str, Any]] = None,
) -> WriteStats:
    """Write every row of `df` (key + attribute columns); returns the tasks' stats summed.

    The job's budget, plan.job_rate, is leased to the tasks that run at once (a share of
    budget / running tasks each, renewed every 0.5 s by a LeaseServer on the driver), so it
    holds however many tasks run, also when executors join during the write.
    """
    host = df.sparkSession.conf.get("spark.driver.host", "127.0.0.1")
    progress = ProgressServer(host, plan.items, label=action)
    leases = LeaseServer(host, plan.job_rate)
    settings = _writer_settings(cfg, plan, action, constant_attributes, progress.address, leases)
    _log_start(cfg, plan, settings)
    stats_df = df.repartition(plan.partitions) if df.rdd.getNumPartitions() != plan.partitions else df
    stats_df = stats_df.mapInArrow(partition_writer(settings, key_column), STATS_DDL)
    with progress, leases:
        rows = [TaskStats.of_row(row.asDict()) for row in stats_df.collect()]  # the one action on the stats
    stats = WriteStats.of(rows, tasks_peak=leases.peak)
    _check_accounted(rows)
    _log_done(cfg.table, action, plan, stats, leases.address)
    return stats


def _writer_settings(cfg: DynamoDBConfig, plan: RatePlan, action: str,
                     constant_attributes: Optional[Mapping[str, Any]], progress_address: Address,
                     leases: LeaseServer) -> WriterSettings:
    return WriterSettings(
        table=cfg.table,
        key_attribute=cfg.key_attribute,
        region=cfg.region,
        endpoint_url=cfg.endpoint_url,
        task_rate=plan.task_rate,
        action=action,
        max_in_flight=cfg.max_in_flight,
        no_progress_timeout_s=cfg.no_progress_timeout_s,
        constant_attributes=dict(constant_attributes or {}),
        progress_address=progress_address,
        in_flight=requests_in_flight(plan.task_rate, floor=cfg.max_in_flight),
        write_id=uuid.uuid4().hex,
        lease_address=leases.address,
        lease_token=leases.token,
    )


def _log_start(cfg: DynamoDBConfig, plan: RatePlan, settings: WriterSettings) -> None:
    log.info(
        "%s to %s at %.0f WCU/s (%s), leased to the tasks that run at once (budget / running tasks, "
        "renewed every %gs); a task that cannot reach the lease service runs at %.1f WCU/s (the budget over "
        "%d concurrent tasks of %d partitions); up to %d requests in flight per task",
        "writing" if settings.action == "put" else "deleting", cfg.table, plan.job_rate, plan.reason,
        settings.lease_timing.renew_s, plan.task_rate, plan.concurrent_tasks, plan.partitions, settings.in_flight,
    )


def _log_done(table: str, action: str, plan: RatePlan, stats: WriteStats, lease_address: Address) -> None:
    log.info(
        "%s %d of %d items to %s in %d partitions: %d rejected, %d duplicates; %d calls, %.2f%% throttled, "
        "%d unprocessed re-sent, %.0f WCU consumed; call latency p50 %.1f ms, p99 %.1f ms; "
        "up to %d tasks shared the budget",
        action, stats.written, stats.items_in, table, stats.partitions, stats.rejected, stats.duplicates,
        stats.requests, 100 * stats.throttled_share, stats.unprocessed_resent, stats.consumed_wcu,
        stats.latency_p50_ms, stats.latency_p99_ms, stats.tasks_peak,
    )
    if stats.lease_fallbacks:
        log.warning(
            "%d times a task could not reach the lease service at %s:%d and ran at the static share, "
            "%.1f WCU/s: the job-wide budget held only as long as no more than %d tasks ran at once",
            stats.lease_fallbacks, lease_address[0], lease_address[1], plan.task_rate, plan.concurrent_tasks,
        )


def _check_accounted(rows: List[TaskStats]) -> None:
    """Every row a task read is written, rejected or a duplicate; anything else is a writer bug."""
    for row in rows:
        accounted = row.written + row.rejected + row.duplicates
        if accounted != row.items_in:
            raise RuntimeError(
                f"partition {row.partition_id} read {row.items_in} rows but accounted for {accounted} "
                f"(written {row.written}, rejected {row.rejected}, duplicates {row.duplicates})"
            )
