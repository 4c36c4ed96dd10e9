"""Driver side of a table write: pick the rate, run the writer over a DataFrame, sum the stats."""
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

from pyspark.sql import DataFrame, SparkSession

from idstore.config import DynamoDBConfig
from idstore.dynamodb.lease import LeaseServer
from idstore.dynamodb.rate import choose_write_rate, per_task_rate, requests_in_flight
from idstore.dynamodb.writer import STATS_DDL, STATS_FIELDS, WriterSettings, partition_writer
from idstore.progress import ProgressServer

log = logging.getLogger(__name__)

# stats columns that add up over partitions (the rest are per-task settings or percentiles)
SUMMED = tuple(
    name for name, _ in STATS_FIELDS
    if name not in ("partition_id", "task_rate", "in_flight", "latency_p50_ms", "latency_p99_ms", "seconds")
)


@dataclass(frozen=True)
class RatePlan:
    """The job's budget (`job_rate`, WCU/s) and its static split, `task_rate` = job_rate over
    the `concurrent_tasks` expected to run at once. While a write runs, the tasks lease their
    shares of `job_rate` from the driver, whatever their number; `task_rate` is only the
    fallback of a task that cannot reach the lease service, and sizes its sender threads."""

    job_rate: float
    task_rate: float
    partitions: int
    concurrent_tasks: int
    reason: str


def describe_table(cfg: DynamoDBConfig) -> Dict[str, Any]:
    import boto3

    client = boto3.client("dynamodb", region_name=cfg.region, endpoint_url=cfg.endpoint_url or None)
    return client.describe_table(TableName=cfg.table)["Table"]


def plan_rate(cfg: DynamoDBConfig, table: Mapping[str, Any], partitions: int, slots: int) -> RatePlan:
    job_rate, reason = choose_write_rate(dict(table), cfg.write_rate, cfg.capacity_fraction)
    concurrent = max(1, min(partitions, slots))
    return RatePlan(job_rate, per_task_rate(job_rate, partitions, slots), partitions, concurrent, reason)


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
    total_hint: int = 0,
) -> Dict[str, float]:
    """Write every row of `df` (key + attribute columns); returns the summed stats.

    The job's budget, plan.job_rate, is leased to the tasks that run at once (a share of
    budget / running tasks each, renewed every 0.5 s by a LeaseServer on the driver), so it
    holds however many tasks run, also when executors join during the write.
    """
    host = df.sparkSession.conf.get("spark.driver.host", "127.0.0.1")
    progress = ProgressServer(host, total_hint, label=action)
    leases = LeaseServer(host, plan.job_rate)
    in_flight = requests_in_flight(plan.task_rate, floor=cfg.max_in_flight)
    settings = WriterSettings(
        table=cfg.table,
        key_attribute=cfg.key_attribute,
        region=cfg.region,
        endpoint_url=cfg.endpoint_url,
        task_rate=plan.task_rate,
        action=action,
        max_in_flight=cfg.max_in_flight,
        no_progress_timeout_s=cfg.no_progress_timeout_s,
        constant_attributes=dict(constant_attributes or {}),
        progress_address=progress.address,
        in_flight=in_flight,
        write_id=uuid.uuid4().hex,
        lease_address=leases.address,
        lease_token=leases.token,
    )
    log.info(
        "%s to %s at %.0f WCU/s (%s), leased to the tasks that run at once (budget / running tasks, "
        "renewed every %gs); a task that cannot reach the lease service runs at %.1f WCU/s (the budget over "
        "%d concurrent tasks of %d partitions); up to %d requests in flight per task",
        "writing" if action == "put" else "deleting", cfg.table, plan.job_rate, plan.reason,
        settings.lease_renew_s, plan.task_rate, plan.concurrent_tasks, plan.partitions, in_flight,
    )
    stats_df = df.repartition(plan.partitions) if df.rdd.getNumPartitions() != plan.partitions else df
    stats_df = stats_df.mapInArrow(partition_writer(settings, key_column), STATS_DDL)
    with progress, leases:
        rows = [row.asDict() for row in stats_df.collect()]  # the one action on the stats
    summary = summarise(rows)
    summary["tasks_peak"] = leases.peak
    _check_accounted(rows)
    log.info(
        "%s %d of %d items to %s in %d partitions: %d rejected, %d duplicates; %d calls, %.2f%% throttled, "
        "%d unprocessed re-sent, %.0f WCU consumed; call latency p50 %.1f ms, p99 %.1f ms; "
        "up to %d tasks shared the budget",
        action, summary["written"], summary["items_in"], cfg.table, summary["partitions"], summary["rejected"],
        summary["duplicates"], summary["requests"], 100 * summary["throttled_share"],
        summary["unprocessed_resent"], summary["consumed_wcu"], summary["latency_p50_ms"], summary["latency_p99_ms"],
        leases.peak,
    )
    if summary.get("lease_fallbacks", 0):
        log.warning(
            "%d times a task could not reach the lease service at %s:%d and ran at the static share, "
            "%.1f WCU/s: the job-wide budget held only as long as no more than %d tasks ran at once",
            summary["lease_fallbacks"], leases.address[0], leases.address[1], plan.task_rate, plan.concurrent_tasks,
        )
    return summary


def _check_accounted(rows) -> None:
    """Every row a task read is written, rejected or a duplicate; anything else is a writer bug."""
    for row in rows:
        accounted = row["written"] + row["rejected"] + row["duplicates"]
        if accounted != row["items_in"]:
            raise RuntimeError(
                f"partition {row['partition_id']} read {row['items_in']} rows but accounted for {accounted} "
                f"(written {row['written']}, rejected {row['rejected']}, duplicates {row['duplicates']})"
            )


def summarise(rows) -> Dict[str, float]:
    """Stats rows of all partitions -> one summary (sums, worst percentiles, derived shares)."""
    rows = list(rows)
    summary: Dict[str, float] = {name: sum(row.get(name, 0) or 0 for row in rows) for name in SUMMED}
    summary["partitions"] = len(rows)
    summary["latency_p50_ms"] = max((row.get("latency_p50_ms", 0.0) for row in rows), default=0.0)
    summary["latency_p99_ms"] = max((row.get("latency_p99_ms", 0.0) for row in rows), default=0.0)
    summary["task_seconds_max"] = max((row.get("seconds", 0.0) for row in rows), default=0.0)
    requests = summary.get("requests", 0)
    summary["throttled_share"] = summary.get("retries_throttle", 0) / requests if requests else 0.0
    return summary
