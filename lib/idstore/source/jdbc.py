"""JDBC reads of the source query, split into hash partitions that cover every row once.

Spark's numeric partitionColumn cannot split a string key or a query, so each partition
gets its own WHERE clause on a hash of the id, in the source's own SQL dialect.
"""
import logging
from typing import Dict, List

from pyspark.sql import DataFrame, SparkSession

from idstore.config import ConfigError, SourceConfig, SourceMode
from idstore.jvm import redshift_read_driver
from idstore.source.credentials import Credentials, uses_iam

log = logging.getLogger(__name__)

DRIVERS = {"redshift": "com.amazon.redshift.jdbc.Driver", "postgresql": "org.postgresql.Driver"}
REDSHIFT_CONNECTOR = "io.github.spark_redshift_community.spark.redshift"


def dialect(url: str) -> str:
    if url.startswith("jdbc:redshift:"):
        return "redshift"
    if url.startswith("jdbc:postgresql:"):
        return "postgresql"
    raise ConfigError(f"source.url: expected jdbc:redshift:// or jdbc:postgresql://, got {url.split('//')[0]!r}")


def hash_predicates(url: str, column: str, partitions: int) -> List[str]:
    """One WHERE clause per partition; together they select every row exactly once.

    The remainder is taken before ABS: ABS of the hash itself overflows on INT_MIN.
    NULL ids hash to NULL, so partition 0 also takes them (validation rejects them later).
    """
    quoted = '"' + column.replace('"', '""') + '"'
    if dialect(url) == "redshift":
        # signed 64-bit FNV-1a; a bare VARCHAR is VARCHAR(256) on Redshift, shorter than a key may be
        hashed = f"FNV_HASH(CAST({quoted} AS VARCHAR(65535)))"
    else:
        hashed = f"hashtext(CAST({quoted} AS TEXT))"  # signed 32-bit
    if partitions == 1:
        return ["1 = 1"]
    clauses = [f"ABS({hashed} % {partitions}) = {i}" for i in range(partitions)]
    clauses[0] = f"({clauses[0]} OR {quoted} IS NULL)"
    return clauses


def jdbc_properties(source: SourceConfig, credentials: Credentials) -> Dict[str, str]:
    kind = dialect(source.url)
    props = {"driver": DRIVERS[kind], "fetchsize": str(source.fetchsize)}
    if credentials.user:
        props["user"] = credentials.user
    if credentials.password:
        props["password"] = credentials.password
    if kind == "redshift":
        props["ssl"] = "true" if source.ssl else "false"
        # on, the driver's 1 GB ring buffer makes fetchsize ineffective
        props["enableFetchRingBuffer"] = "true" if source.fetch_ring_buffer else "false"
        if uses_iam(source.url) and credentials.user:
            props["DbUser"] = credentials.user  # the database user the IAM identity signs in as
    return props


def unload_options(source: SourceConfig, credentials: Credentials) -> Dict[str, str]:
    """Options for EMR's Redshift connector: UNLOAD to S3 as Parquet, then read in parallel.

    The config's load checked that the URL is Redshift's and that the two unload keys are set.
    """
    options = {
        "url": source.url,
        "query": source.query,
        "tempdir": source.unload_tempdir,
        "aws_iam_role": source.unload_iam_role,
        "unload_s3_format": "PARQUET",
    }
    if source.secret_id:
        options["secret.id"] = source.secret_id  # the connector reads the secret itself
    else:
        options.update({k: v for k, v in (("user", credentials.user), ("password", credentials.password)) if v})
    return options


def subquery(query: str) -> str:
    """The query as a derived table; a trailing ';' would end the statement early."""
    return f"({query.strip().rstrip(';').rstrip()}) AS idstore_source"


def read_source(spark: SparkSession, source: SourceConfig, credentials: Credentials) -> DataFrame:
    """The source query's rows, in `source.partitions` parallel reads."""
    if not source.query:
        raise ConfigError("source.query: empty; give the query that returns the id set")
    if source.mode == SourceMode.UNLOAD:
        reader = spark.read.format(REDSHIFT_CONNECTOR)
        return reader.options(**unload_options(source, credentials)).load()
    kind = dialect(source.url)
    predicates = hash_predicates(source.url, source.id_column, source.partitions)
    log.info("reading the source in %d hash partitions (%s)", len(predicates), kind)
    properties = jdbc_properties(source, credentials)
    if kind == "redshift":
        properties["driver"] = redshift_read_driver(spark) or properties["driver"]
    return spark.read.jdbc(
        url=source.url,
        table=subquery(source.query),
        predicates=predicates,
        properties=properties,
    )
