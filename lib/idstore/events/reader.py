"""Reading an event archive: explicit schema, only the dt= folders asked for, bad lines kept.

Listing goes through Hadoop's FileSystem, so the same code lists s3:// on EMR (EMRFS)
and a local folder here.
"""
import logging
from datetime import date
from typing import List, Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from idstore.config import ConfigError, EventsConfig

log = logging.getLogger(__name__)

CORRUPT = "_corrupt_record"


def list_partitions(spark: SparkSession, root: str, column: str) -> List[str]:
    """The values of `column=value` folders directly under `root`, sorted."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(root)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(path):
        raise ConfigError(f"events.path: {root} does not exist")
    prefix = column + "="
    names = [status.getPath().getName() for status in fs.listStatus(path) if status.isDirectory()]
    return sorted(name[len(prefix):] for name in names if name.startswith(prefix))


def days_in_range(days: List[str], start: Optional[date], end: Optional[date]) -> List[str]:
    """The partition values between start and end, both included; malformed ones are skipped."""
    chosen = []
    for day in days:
        try:
            value = date.fromisoformat(day)
        except ValueError:
            log.warning("skipping partition folder with a value that is not a date: %s", day)
            continue
        if (start is None or value >= start) and (end is None or value <= end):
            chosen.append(day)
    return chosen


def event_schema(cfg: EventsConfig) -> T.StructType:
    try:
        schema = T._parse_datatype_string(cfg.schema)
    except Exception as exc:  # noqa: BLE001 - Spark raises several kinds for bad DDL
        raise ConfigError(f"events.schema: not a valid Spark DDL schema: {exc}") from None
    if not isinstance(schema, T.StructType):
        raise ConfigError("events.schema: expected a struct of fields")
    return schema


def read_events(spark: SparkSession, cfg: EventsConfig, days: List[str]) -> DataFrame:
    """The events of `days`, with the partition column kept and, for JSON, the raw bad lines."""
    if not days:
        raise ConfigError(f"events.path: no {cfg.date_partition}= folders in the requested range")
    root = cfg.path.rstrip("/")
    paths = [f"{root}/{cfg.date_partition}={day}" for day in days]
    schema = event_schema(cfg)
    reader = spark.read.option("basePath", root)
    if cfg.format == "parquet":
        return reader.schema(schema).parquet(*paths)
    with_corrupt = T.StructType(schema.fields + [T.StructField(CORRUPT, T.StringType())])
    return (
        reader.schema(with_corrupt)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT)
        .json(paths)
    )


def id_column(cfg: EventsConfig):
    """The (possibly nested) id field as a column, e.g. detail.productId."""
    parts = cfg.id_field.split(".")
    column = F.col(f"`{parts[0]}`")
    for part in parts[1:]:
        column = column.getField(part)
    return column
