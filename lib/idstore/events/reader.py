"""Reading an event archive: explicit schema, only the dt= folders asked for, bad lines kept.

Listing goes through Hadoop's FileSystem with the session's Hadoop configuration, so the
same code lists s3:// on EMR (EMRFS or S3A) and a local folder here.
"""
import logging
from datetime import date, timedelta
from functools import lru_cache
from typing import List, Optional, Sequence, Tuple

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from idstore.config import ConfigError, EventsConfig
from idstore.errors import InputNotReady
from idstore.jvm import json_rows
from idstore.spark import session_hadoop_conf

log = logging.getLogger(__name__)

CORRUPT = "_corrupt_record"


def hadoop_fs(spark: SparkSession, path: str, conf=None):
    """(Hadoop Path, its FileSystem), through `conf` or else a new session_hadoop_conf."""
    hadoop_path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(path)
    return hadoop_path, hadoop_path.getFileSystem(conf if conf is not None else session_hadoop_conf(spark))


def is_hidden(name: str) -> bool:
    """Names Spark's own file listing skips: _SUCCESS, .crc files, _temporary, ..."""
    return name.startswith(("_", "."))


def list_partitions(spark: SparkSession, root: str, column: str) -> List[str]:
    """The values of `column=value` folders directly under `root`, sorted."""
    path, fs = hadoop_fs(spark, root)
    if not fs.exists(path):
        raise InputNotReady(f"no event archive at {root} (events.path): nothing has arrived there yet")
    prefix = column + "="
    names = [status.getPath().getName() for status in fs.listStatus(path) if status.isDirectory()]
    return sorted(name[len(prefix):] for name in names if name.startswith(prefix))


def list_files(spark: SparkSession, folders: Sequence[str]) -> List[Tuple[str, int]]:
    """(path, bytes) of every visible file under `folders`, recursively, as Spark names them."""
    found = []
    conf = session_hadoop_conf(spark)
    for folder in folders:
        path, fs = hadoop_fs(spark, folder, conf)
        if not fs.exists(path):
            continue
        files = fs.listFiles(path, True)
        while files.hasNext():
            status = files.next()
            file_path = status.getPath()
            relative = str(file_path.toUri().getPath())[len(str(path.toUri().getPath())):]
            if any(is_hidden(part) for part in relative.split("/") if part):
                continue
            found.append((str(file_path), int(status.getLen())))
    return sorted(found)


def days_in_range(days: List[str], start: Optional[date], end: Optional[date]) -> List[str]:
    """The partition values between start and end, both included; malformed ones are skipped."""
    chosen = []
    for day in days:
        value = _date_or_none(day)
        if value is None:
            log.warning("skipping partition folder with a value that is not a date: %s", day)
            continue
        if (start is None or value >= start) and (end is None or value <= end):
            chosen.append(day)
    return chosen


def missing_days(present: Sequence[str], start: Optional[date], end: Optional[date]) -> List[str]:
    """The days from start to end (both included) that have no folder among `present`.

    A window needs a bound: without --from and --to a run reads what is there, and nothing is
    missing. With one bound, the other is the archive's last (or first) day.
    """
    if start is None and end is None:
        return []
    dates = sorted(value for value in map(_date_or_none, present) if value is not None)
    first = start or (dates[0] if dates else end)
    last = end or (dates[-1] if dates else start)
    have = set(dates)
    span = (last - first).days + 1 if first and last else 0
    return [day.isoformat() for day in (first + timedelta(days=n) for n in range(max(span, 0))) if day not in have]


def _date_or_none(text: str) -> Optional[date]:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def day_folders(cfg: EventsConfig, days: Sequence[str]) -> List[str]:
    root = cfg.path.rstrip("/")
    return [f"{root}/{cfg.date_partition}={day}" for day in days]


def event_schema(cfg: EventsConfig) -> T.StructType:
    """The configured DDL as a struct; the id field must be in it."""
    try:
        schema = _parsed_ddl(cfg.schema)
    except Exception as exc:  # noqa: BLE001 - Spark raises several kinds for bad DDL
        raise ConfigError(f"events.schema: not a valid Spark DDL schema: {exc}") from None
    if not isinstance(schema, T.StructType):
        raise ConfigError("events.schema: expected a struct of fields")
    _check_id_field(schema, cfg.id_field)
    return schema


@lru_cache(maxsize=16)
def _parsed_ddl(ddl: str) -> T.DataType:
    """Spark's parse of a DDL string, once per string: each parse is a py4j round trip (0.05 s)."""
    return T._parse_datatype_string(ddl)


def _check_id_field(schema: T.StructType, id_field: str) -> None:
    current: T.DataType = schema
    for part in id_field.split("."):
        fields = {f.name: f.dataType for f in current.fields} if isinstance(current, T.StructType) else {}
        if part not in fields:
            raise ConfigError(f"events.id_field: {id_field!r} is not a field of events.schema")
        current = fields[part]
    if isinstance(current, (T.StructType, T.ArrayType, T.MapType)):
        raise ConfigError(f"events.id_field: {id_field!r} is a {current.simpleString()}, not a scalar")


LINE = "value"  # the raw line, as Spark's text source names it


def read_lines(
    spark: SparkSession, cfg: EventsConfig, days: Sequence[str], files: Optional[Sequence[str]] = None
) -> DataFrame:
    """The raw non-blank lines (`value`) of a JSON archive's `days` (or `files`), with dt.

    Spark's text source splits lines like its JSON source (LF, CRLF, CR) and reads gzip by
    suffix; blank lines are no events (the JSON source skips them too).
    """
    if not days:
        raise ConfigError(f"events.path: no {cfg.date_partition}= folders in the requested range")
    paths = list(files) if files is not None else day_folders(cfg, days)
    lines = spark.read.option("basePath", cfg.path.rstrip("/")).text(paths)
    line = F.col(LINE)
    # whitespace-only lines are rare: only lines that start with a blank pay for the trim
    blank = (line == "") | (
        (line.startswith(" ") | line.startswith("\t")) & (F.expr(f"trim(BOTH ' \\t' FROM {LINE})") == "")
    )
    return lines.filter(~blank)


def parsed_line(spark: SparkSession, cfg: EventsConfig) -> Column:
    """The line parsed with the schema, PERMISSIVE, `_corrupt_record` kept: a struct column.

    A line that is not one JSON object of the schema's shape (an array, a string, cut, a
    struct field holding a string; with the jar, bytes that are not UTF-8) gets
    `_corrupt_record`. Parsed by json_parser's choice.
    """
    return _parsed_line(spark, cfg)[0]


def json_parser(spark: SparkSession, cfg: EventsConfig) -> str:
    """What parses a line: "jvm" (idstore.jvm.json_rows, Spark's JSON source parser over the
    line's bytes) or, without the jar, "from_json" (the same parser over decoded chars)."""
    return _parsed_line(spark, cfg)[1]


def _parsed_line(spark: SparkSession, cfg: EventsConfig) -> Tuple[Column, str]:
    schema = event_schema(cfg)
    with_corrupt = T.StructType(schema.fields + [T.StructField(CORRUPT, T.StringType())])
    # An optimizer barrier: the line passes through a non-deterministic (but identity)
    # expression, so Spark cannot push a filter on a parsed field (status, the join's
    # not-null) below the parse, where it would parse every line, several times, before a
    # pre-filter had dropped any.
    line = F.when(F.spark_partition_id() >= 0, F.col(LINE))
    parsed = json_rows(spark, line, with_corrupt, CORRUPT)
    if parsed is not None:
        return parsed, "jvm"
    return F.from_json(line, with_corrupt, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}), "from_json"


def parse_lines(lines: DataFrame, cfg: EventsConfig) -> DataFrame:
    """Transform of read_lines' rows: the schema's columns and `_corrupt_record` in place of the line."""
    others = [F.col(f"`{c}`") for c in lines.columns if c != LINE]
    parsed = parsed_line(lines.sparkSession, cfg).alias("_idstore_parsed")
    return lines.select(parsed, *others).select("_idstore_parsed.*", *others)


def id_field_type(schema: T.StructType, id_field: str) -> str:
    """The simple type name of the (possibly nested) id field, e.g. "string"."""
    current: T.DataType = schema
    for part in id_field.split("."):
        current = {f.name: f.dataType for f in current.fields}[part]  # type: ignore[union-attr]
    return current.simpleString()


def read_events(
    spark: SparkSession, cfg: EventsConfig, days: Sequence[str], files: Optional[Sequence[str]] = None
) -> DataFrame:
    """The events of `days` (or of just `files` under them), the dt column kept, bad JSON lines kept.

    Only the dt= folders of `days` are listed; `basePath` keeps the partition column.
    JSON lines are read as text and parsed PERMISSIVE with `_corrupt_record`, so a bad
    line becomes a row, not a gap.
    """
    if not days:
        raise ConfigError(f"events.path: no {cfg.date_partition}= folders in the requested range")
    if cfg.format == "parquet":
        schema = event_schema(cfg)
        paths = list(files) if files is not None else day_folders(cfg, days)
        return spark.read.option("basePath", cfg.path.rstrip("/")).schema(schema).parquet(*paths)
    return parse_lines(read_lines(spark, cfg, days, files), cfg)


def archive_bytes(spark: SparkSession, cfg: EventsConfig, days: Sequence[str]) -> int:
    """The bytes of the days' files, from Spark's own listing of them.

    Spark keeps a session's listings (its FileStatusCache), so the pass that reads the same
    folders next does not list them again.
    """
    scan = read_events(spark, cfg, days) if cfg.format == "parquet" else read_lines(spark, cfg, days)
    leaves = scan._jdf.queryExecution().optimizedPlan().collectLeaves()
    return sum(int(str(leaves.apply(i).stats().sizeInBytes())) for i in range(leaves.size()))


def id_column(cfg: EventsConfig) -> Column:
    """The (possibly nested) id field as a column, e.g. detail.productId."""
    parts = cfg.id_field.split(".")
    column = F.col(f"`{parts[0]}`")
    for part in parts[1:]:
        column = column.getField(part)
    return column
