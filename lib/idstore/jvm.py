"""idstore's jar: JVM code for the steps where Spark's built-ins cost the most.

The pre-filter's function and the JSON line parser (on the executors), the Parquet footer
reader (on the driver), and the Redshift driver's JDBC dialect (both).
The jar (jvm/src, built by `make setup` with scripts/build-jvm.sh) lives in this package, so
the wheel the bootstrap action installs carries it to every node. A run adds it to its session
(ADD JAR: the driver loads it, the executors fetch it from the driver) and loads its classes
from there; nothing has to be on a class path when the JVM starts, locally or on EMR.
"""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from py4j.protocol import Py4JError
from pyspark.sql import Column, SparkSession
from pyspark.sql.types import StructType

from idstore.spark import session_hadoop_conf

log = logging.getLogger(__name__)
JAR = Path(__file__).parent / "jars" / "idstore-jvm.jar"
_PLAIN_VALUE_CLASS = "idstore.jvm.PlainValue"
_PARQUET_FOOTERS_CLASS = "idstore.jvm.ParquetFooters"
_JSON_LINES_CLASS = "idstore.jvm.JsonLines"
_BOUNDED_LINES_CLASS = "idstore.jvm.BoundedLines"
REDSHIFT_READ_DRIVER = "idstore.jvm.RedshiftReadDriver"
# footers read at once: each is a few small reads, so latency (S3: tens of ms), not CPU, bounds them
FOOTER_THREADS = 16


@dataclass(frozen=True)
class FileFooter:
    """One Parquet file, as its footer describes it."""

    path: str  # as Spark names the file
    rows: int
    may_miss_id: bool  # the statistics cannot rule out a null or blank id


def _instance(spark: SparkSession, class_name: str):
    """A new `class_name` from the jar, added to the session once (ADD JAR); None when the jar is missing.

    Loaded through the session's jar class loader, which ADD JAR extends: the thread's context
    loader, which registerJavaFunction would use, is not it outside the main thread.
    """
    if not JAR.is_file():
        return None
    session = spark._jsparkSession
    loader = session.sharedState().jarClassLoader()
    if not _holds_jar(loader):
        _on_application_class_path(spark, loader.getParent())
        spark.sql(f"ADD JAR '{JAR}'")
    return loader.loadClass(class_name).newInstance()


def _holds_jar(loader) -> bool:
    try:
        return any(str(url).endswith(JAR.name) for url in loader.getURLs())
    except Py4JError:  # not a URL class loader
        return False


def _on_application_class_path(spark: SparkSession, application) -> None:
    """Put the jar on the application's class path too, as spark.jars would have: before any class loads.

    An observed aggregate (bounded_lines) comes back inside each task's result, which the
    driver's result threads read with the application's class loader (spark-submit's, the
    parent of the session's jar loader that ADD JAR extends), so that loader must know the
    jar's classes; and every class of the jar must come from one loader. A loader that takes
    no jar leaves the aggregate out (the quarantine then reads its files again).
    """
    try:
        application.addURL(spark._jvm.java.io.File(str(JAR)).toURI().toURL())
    except Py4JError:
        log.info("the application class loader takes no jar: bad events are read again for the quarantine")


def plain_value(spark: SparkSession, line: Column, key: str) -> Optional[Column]:
    """The plainly written value of `key` in the raw JSON `line`, or null; None without the jar.

    A StaticInvoke of idstore.jvm.PlainValue.read: compiled into the stage, it reads the line's
    bytes in place (a UDF would convert every line to a java.lang.String first). None too on a
    Spark whose StaticInvoke the jar was not built against (the caller falls back).
    """
    function = _instance(spark, _PLAIN_VALUE_CLASS)
    if function is None:
        return None
    try:
        return Column(function.column(line._jc, key))
    except Py4JError as exc:  # e.g. NoSuchMethodError: another Spark line's constructor
        log.warning("idstore's jar cannot build its candidate test on this Spark (%s)", str(exc).splitlines()[0])
        return None


def json_rows(spark: SparkSession, line: Column, schema: StructType, corrupt: str) -> Optional[Column]:
    """`line` parsed as spark.read.json parses a line, PERMISSIVE, `corrupt` set on a bad one; None without the jar.

    idstore.jvm.JsonLines: Spark's own JSON parser over the line's UTF-8 bytes, where
    from_json decodes every line to chars first (2/5 of its parse time on the narrow
    benchmark lines, 1/5 on the wide ones). A line that is not valid UTF-8 is malformed, as
    in Spark's JSON source; from_json reads its bad bytes as U+FFFD. None too on a Spark whose parser
    classes the jar does not link against (the caller falls back to from_json).
    """
    factory = _instance(spark, _JSON_LINES_CLASS)
    if factory is None:
        return None
    try:
        time_zone = spark.conf.get("spark.sql.session.timeZone")
        return Column(factory.column(line._jc, schema.json(), corrupt, time_zone))
    except Py4JError as exc:  # e.g. NoSuchMethodError: another Spark line's parser classes
        log.warning("idstore's jar cannot parse JSON on this Spark (%s)", str(exc).splitlines()[0])
        return None


def bounded_lines(spark: SparkSession, line: Column, max_lines: int, max_bytes: int) -> Optional[Column]:
    """An aggregate: the non-null values of `line` joined by newlines, null past either bound; None without the jar.

    idstore.jvm.BoundedLines, for an observation (observe takes aggregates only): collect_list
    would hold every value on the executors and the driver, however many there are.
    """
    factory = _instance(spark, _BOUNDED_LINES_CLASS)
    if factory is None:
        return None
    if not _holds_jar(spark._jsparkSession.sharedState().jarClassLoader().getParent()):
        return None  # the driver could not read the task results that carry it
    try:
        return Column(factory.column(line._jc, max_lines, max_bytes))
    except Py4JError as exc:  # e.g. another Spark line's Aggregator
        log.warning("idstore's jar cannot gather bad events on this Spark (%s)", str(exc).splitlines()[0])
        return None


def redshift_read_driver(spark: SparkSession) -> Optional[str]:
    """The driver class to name for jdbc:redshift: reads, which brings idstore's Redshift dialect; None without the jar.

    Loading it registers the dialect (fetch-size reads in a transaction, TIMESTAMPTZ as a
    timestamp) in the driver JVM here, and in each executor's when Spark loads the named driver
    there. Spark finds a driver class through the thread's context loader: made the jar's here.
    """
    if _instance(spark, REDSHIFT_READ_DRIVER) is None:
        log.warning(
            "idstore's jar is missing: reading through the Redshift driver without idstore's dialect "
            "(source.fetchsize has no effect, TIMESTAMPTZ columns are refused)"
        )
        return None
    loader = spark._jsparkSession.sharedState().jarClassLoader()
    spark._jvm.java.lang.Thread.currentThread().setContextClassLoader(loader)
    return REDSHIFT_READ_DRIVER


def parquet_footers(spark: SparkSession, roots: Sequence[str], id_field: str) -> Optional[List[FileFooter]]:
    """Every Parquet data file under `roots` (files or folders), from its footer, read on the driver.

    None when the jar is missing. Listing and reading happen in the JVM (FOOTER_THREADS at a
    time) and come back as one string: file by file over py4j, 10,000 files would take seconds.
    """
    footers = _instance(spark, _PARQUET_FOOTERS_CLASS)
    if footers is None:
        return None
    text = footers.summarise(session_hadoop_conf(spark), list(roots), id_field, FOOTER_THREADS)
    found = []
    for line in text.splitlines():
        path, rows, may_miss = line.rsplit("\t", 2)
        found.append(FileFooter(path, int(rows), may_miss == "1"))
    return found
