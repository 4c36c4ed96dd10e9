"""The id set both jobs read: a program's ids from the source (validated), or the set the
last sync left behind (its snapshot, or the table itself).
"""
from dataclasses import dataclass
from typing import Mapping, Sequence, Tuple

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from idstore.config import Config, ConfigError
from idstore.redaction import scrub_jvm_logs
from idstore.snapshot import read_latest_snapshot
from idstore.source.credentials import resolve_credentials
from idstore.source.jdbc import read_source
from idstore.validation import distinct_ids, normalise_ids, split_valid_ids

_NUMBER_TYPES = (
    T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType,
)


def read_source_ids(spark: SparkSession, config: Config, environ: Mapping[str, str]):
    """(source rows, valid distinct ids, rejected rows with a reason), source read once."""
    source = config.source
    credentials = resolve_credentials(source, config.aws, environ)
    scrub_jvm_logs(spark)  # from here on the JVM's log4j output hides the password too
    columns = [source.id_column, *source.attribute_columns]
    raw = read_source(spark, source, credentials)
    _check_columns(raw, columns)
    raw = raw.select(*columns).transform(with_attribute_types(source.attribute_columns))
    normalised = raw.transform(normalise_ids(source.id_column, config.validation.trim, config.validation.case))
    normalised = normalised.persist(StorageLevel.MEMORY_AND_DISK)
    valid, rejected = split_valid_ids(normalised, source.id_column)
    return normalised, distinct_ids(valid, source.id_column), rejected


def with_attribute_types(columns: Sequence[str]):
    """Transform: attribute columns as values the writer maps to S, N or BOOL.

    Strings stay strings (S), every numeric type (JDBC numeric arrives as decimal) stays a
    number (N), booleans BOOL; dates and timestamps become ISO-8601 strings. Other types
    (binary, arrays, structs) have no faithful mapping and are refused, naming the column.
    """

    def transform(df: DataFrame) -> DataFrame:
        for name in columns:
            dtype = df.schema[name].dataType
            if isinstance(dtype, (T.StringType, T.BooleanType) + _NUMBER_TYPES):
                continue
            if isinstance(dtype, T.DateType):
                df = df.withColumn(name, F.date_format(name, "yyyy-MM-dd"))
            elif isinstance(dtype, T.TimestampNTZType):
                df = df.withColumn(name, F.date_format(name, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS"))
            elif isinstance(dtype, T.TimestampType):
                df = df.withColumn(name, F.date_format(name, "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"))
            else:
                raise ConfigError(
                    f"source.attribute_columns: column {name!r} is {dtype.simpleString()}; "
                    "only strings, numbers, booleans, dates and timestamps map to DynamoDB S, N or BOOL"
                )
        return df

    return transform


def _check_columns(df: DataFrame, columns: Sequence[str]) -> None:
    present = {name.lower() for name in df.columns}
    missing = [name for name in columns if name.lower() not in present]
    if missing:
        raise ConfigError(
            f"source.query returns no column {', '.join(missing)} (source.id_column / source.attribute_columns); "
            f"it returns {', '.join(df.columns)}"
        )



@dataclass(frozen=True)
class IdSet:
    """The id set as one column named source.id_column, and its size (ids, UTF-8 bytes)."""

    ids: DataFrame
    count: int
    bytes: int


def load_id_set(spark: SparkSession, config: Config, ids_from: str, environ: Mapping[str, str]) -> IdSet:
    """The id set: snapshot (default), dynamodb or source, with its size.

    A snapshot's pointer says how many keys its record holds and their bytes, so the set is
    not read before the join that uses it; the other sources are counted in one pass.
    """
    id_col = config.source.id_column
    if ids_from == "source":
        ids = read_source_ids(spark, config, environ)[1].select(id_col)
    elif ids_from == "dynamodb":
        from idstore.dynamodb.scanner import scan_keys

        keys = scan_keys(spark, config.dynamodb)  # described there, paced by the one rule for every scan
        ids = keys.withColumnRenamed("key", id_col)
    else:
        ids, pointer = read_latest_snapshot(spark, config)
        if pointer.keys >= 0 and pointer.key_bytes >= 0:
            return IdSet(ids, pointer.keys, pointer.key_bytes)
    ids = ids.persist(StorageLevel.MEMORY_AND_DISK)  # counted here, then joined
    return IdSet(ids, *id_set_stats(ids, id_col))


def id_set_stats(ids: DataFrame, id_col: str) -> Tuple[int, int]:
    """(ids, UTF-8 bytes of all ids) in one pass."""
    value = F.col(id_col).cast("string")
    row = ids.agg(F.count(value).alias("n"), F.sum(F.octet_length(value)).alias("bytes")).first()
    return int(row["n"]), int(row["bytes"] or 0)
