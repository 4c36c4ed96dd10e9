"""The filter job: event archive -> events whose id is in the set -> Parquet by day."""
import logging
from datetime import date
from typing import List, Mapping, Optional

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from idstore import io
from idstore.config import Config
from idstore.events.filter import STATUS, choose_join, keep_events_in_set, with_status
from idstore.events.reader import CORRUPT, days_in_range, id_column, list_partitions, read_events
from idstore.pipeline.sync import load_id_set
from idstore.snapshot import read_latest_snapshot

log = logging.getLogger(__name__)


def load_ids(spark: SparkSession, config: Config, ids_from: str, environ: Mapping[str, str]) -> DataFrame:
    if ids_from == "source":
        return load_id_set(spark, config, environ)[1]
    if ids_from == "dynamodb":
        from idstore.dynamodb.scanner import scan_keys

        return scan_keys(spark, config.dynamodb).withColumnRenamed("key", config.source.id_column)
    return read_latest_snapshot(spark, config)


def per_day_counts(prefix: str, dt: str, days: List[str]):
    return [F.sum(F.when(F.col(dt) == day, 1).otherwise(0)).alias(f"{prefix}{day}") for day in days]


def run_filter(spark: SparkSession, config: Config, report, environ: Mapping[str, str],
               start: Optional[date] = None, end: Optional[date] = None, ids_from: str = "snapshot") -> None:
    events_cfg, dt = config.events, config.events.date_partition
    days = days_in_range(list_partitions(spark, events_cfg.path, dt), start, end)
    report.details["days"] = days
    id_col = config.source.id_column
    ids = load_ids(spark, config, ids_from, environ).select(id_col).cache()
    id_count = ids.count()
    broadcast, why = choose_join(id_count, events_cfg.broadcast_max_rows)
    log.info(why)
    report.counts["ids"] = id_count
    report.details["join"] = why

    event_id = id_column(events_cfg)
    tagged = (
        read_events(spark, events_cfg, days)
        .withColumn(dt, F.col(dt).cast("string"))
        .transform(with_status(event_id))
    )
    read_obs = Observation("read")
    events = tagged.observe(
        read_obs,
        F.count(F.lit(1)).alias("events_read"),
        F.sum(F.when(F.col(STATUS) == "malformed", 1).otherwise(0)).alias("malformed"),
        F.sum(F.when(F.col(STATUS) == "missing_id", 1).otherwise(0)).alias("missing_id"),
    )
    good = events.filter(F.col(STATUS) == "ok").drop(STATUS, *([CORRUPT] if CORRUPT in events.columns else []))
    matched = keep_events_in_set(good, event_id, ids, id_col, broadcast)
    matched_obs = Observation("matched")
    matched = matched.observe(matched_obs, F.count(F.lit(1)).alias("matched"), *per_day_counts("matched_", dt, days))

    with report.timed("filter_write"):
        write_by_day(matched, config, dt)
    read_counts, matched_counts = read_obs.get, matched_obs.get
    report.counts.update(
        events_read=read_counts["events_read"],
        matched=matched_counts["matched"],
        malformed=read_counts["malformed"] or 0,
        missing_id=read_counts["missing_id"] or 0,
    )
    report.details["matched_per_day"] = {day: matched_counts[f"matched_{day}"] or 0 for day in days}
    if report.counts["malformed"] + report.counts["missing_id"]:
        report.details["quarantine"] = quarantine(tagged, config, report.run_id)


def write_by_day(df: DataFrame, config: Config, dt: str) -> None:
    """Parquet by day; dynamic partition overwrite replaces only the days written."""
    per_day = config.output.files_per_day
    # only the matched events are shuffled: a few files per day, not tasks x days
    buckets = [F.col(dt)] if per_day <= 1 else [F.col(dt), (F.rand() * per_day).cast("int")]
    shaped = df.repartition(*buckets)
    (
        shaped.write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .option("compression", "snappy")
        .partitionBy(dt)
        .parquet(config.output.path)
    )


def quarantine(events: DataFrame, config: Config, run_id: str) -> str:
    """Write malformed and id-less events with a reason and their file; a second pass, only when needed."""
    target = io.join(config.output.quarantine_path, "filter", f"run_id={run_id}")
    columns = [c for c in events.columns if c not in (STATUS, CORRUPT, config.events.date_partition)]
    raw = F.to_json(F.struct(*[F.col(f"`{c}`") for c in columns]))
    if CORRUPT in events.columns:
        raw = F.coalesce(F.col(CORRUPT), raw)
    (
        events.filter(F.col(STATUS) != "ok")
        .select(
            F.col(STATUS).alias("reason"),
            F.col(config.events.date_partition).alias("dt"),
            F.input_file_name().alias("source_file"),
            raw.alias("raw"),
        )
        .write.mode("overwrite")
        .json(target)
    )
    return target
