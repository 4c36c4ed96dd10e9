"""Snapshots of the validated id set: Parquet per run, and a pointer to the latest complete one.

The pointer is written last, after the table write succeeded, so a reader never sees a
snapshot of a run that failed half-way.
"""
from datetime import datetime, timezone
from typing import Optional

from pyspark.sql import DataFrame, SparkSession

from idstore import io
from idstore.config import Config, ConfigError

POINTER = "_LATEST.json"


def write_snapshot(ids: DataFrame, config: Config, run_id: str) -> Optional[str]:
    """Write `ids` under snapshot.path/run_id=<id>/, then point _LATEST.json at it; returns the path."""
    if not config.snapshot.path:
        return None
    target = io.join(config.snapshot.path, f"run_id={run_id}")
    ids.write.mode("overwrite").parquet(target)
    pointer = {
        "run_id": run_id, "path": target, "id_column": config.source.id_column,
        "written_at": datetime.now(timezone.utc).isoformat(),
    }
    io.write_json(io.join(config.snapshot.path, POINTER), pointer, config.aws.endpoint_url, config.aws.region)
    return target


def read_latest_snapshot(spark: SparkSession, config: Config) -> DataFrame:
    """The id set of the latest complete snapshot, its id column named source.id_column."""
    if not config.snapshot.path:
        raise ConfigError("snapshot.path: empty; set it or choose --ids source|dynamodb")
    pointer_path = io.join(config.snapshot.path, POINTER)
    try:
        pointer = io.read_json(pointer_path, config.aws.endpoint_url, config.aws.region)
    except (FileNotFoundError, OSError) as exc:
        raise ConfigError(f"snapshot.path: no complete snapshot at {pointer_path} (run sync first): {exc}") from None
    return spark.read.parquet(pointer["path"]).withColumnRenamed(pointer["id_column"], config.source.id_column)
