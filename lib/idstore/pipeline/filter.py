"""The filter job: event archive -> events whose id is in the set -> Parquet by day.

One pass reads the dt= folders in range, tags each JSON event ok | malformed | missing_id,
keeps the ok events whose id is in the set (broadcast left-semi join), and writes them;
the counts are observed in that same pass. A Parquet archive has no malformed rows: its pass
is a plain semi-join, and its read counts and the files that may hold a missing id come from
its footers. Bad rows are written to the quarantine in a second pass over only the files that
hold them.
"""
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from idstore import io
from idstore import metrics as M
from idstore.config import Config, ConfigError
from idstore.events.join import STATUS, JoinChoice, choose_join, join_keys, semi_join, with_status
from idstore.events.integrity import find_corrupt_files, looks_like_corrupt_file
from idstore.events.output import (
    apply_hadoop_options,
    clear_days,
    describe_days,
    shaped_for_write,
    sse_kms_options,
    write_by_day,
)
from idstore.events.prefilter import (
    CANDIDATE,
    UNDECIDED,
    decided_by_parse,
    key_name,
    plain_shape_possible,
    with_candidate_key,
)
from idstore.events.reader import (
    CORRUPT,
    LINE,
    day_folders,
    days_in_range,
    event_schema,
    id_column,
    id_field_type,
    json_parser,
    list_files,
    list_partitions,
    parse_lines,
    read_events,
    read_lines,
)
from idstore.idset import load_id_set
from idstore.jvm import JAR, parquet_footers, plain_value
from idstore.pipeline.common import RunFailed
from idstore.spark import InBackground
from idstore.validation import normalised_key

log = logging.getLogger(__name__)

REASONS = ("malformed", "missing_id")
INPUT_FILE = "_idstore_input_file"
SOURCE_FILE = "_idstore_bad_row_file"
EXCLUDED_RULES_KEY = "spark.sql.adaptive.optimizer.excludedRules"
EMPTY_RELATION_RULE = "org.apache.spark.sql.execution.adaptive.AQEPropagateEmptyRelation"
LOST_COUNTS = "the filter pass lost its observed counts (was AQEPropagateEmptyRelation re-enabled?)"
MIN_SCAN_TASKS_KEY = "spark.sql.files.minPartitionNum"
SCAN_TASKS_PER_CORE = 2


@dataclass
class PassCounts:
    """What one filter pass saw: its observed metrics (and a Parquet archive's footers)."""

    read: int
    matched: int
    read_per_day: Dict[str, int]
    matched_per_day: Dict[str, int]
    # the files the quarantine pass reads: JSON, those that held bad rows; Parquet, those
    # whose footers cannot rule out a missing id (the quarantine counts what they hold)
    files_with_bad_rows: List[str] = field(default_factory=list)
    # the join keys of a pre-filtered pass (validate = kept): the quarantine routes lines the same way
    prefilter_keys: Optional[DataFrame] = None
    # read counts observed in the scan, a map stage: a re-run of it adds them again (JSON);
    # Parquet's come from the footers
    read_in_map_stage: bool = True


def _rows_by_day(dt: str, days: Sequence[str], only: Optional[Column] = None) -> Column:
    """One aggregate for the rows of each day: a histogram of the day's offset from the first day.

    Exact: histogram_numeric adds a row to the bin of its exact value and merges partial
    histograms by concatenating them; it averages bins only to keep at most its bin count,
    which 2^31 - 1 never reaches. One aggregate instead of one sum per day: each sum is a
    compare and an add on every row (10 days cost 0.5-1 s of a 4M-line pass).
    """
    offset = F.datediff(F.col(dt), F.lit(days[0]))
    if only is not None:
        offset = F.when(only, offset)  # the other rows are null, which the histogram skips
    return F.to_json(F.histogram_numeric(offset, F.lit(2**31 - 1)))


def _count_by_day(histogram: Optional[str], days: Sequence[str]) -> Dict[str, int]:
    """_rows_by_day's value as {day: rows}; days without rows are 0."""
    counts = dict.fromkeys(days, 0)
    first = date.fromisoformat(days[0])
    for bin_ in json.loads(histogram or "[]"):
        day = (first + timedelta(days=int(bin_["x"]))).isoformat()
        counts[day] += int(bin_["y"])
    return counts


def _spark_path(spark: SparkSession, uri: str) -> str:
    """A path as Spark's file index names it, from the URL-encoded form a scan gives a row's file."""
    jvm = spark.sparkContext._jvm
    return str(jvm.org.apache.hadoop.fs.Path(jvm.java.net.URI(uri)))


def prefilters(config: Config, join: JoinChoice) -> bool:
    """Whether a pass parses only the candidate and undecided lines (docs/filter.md).

    JSON with events.validate = kept, a broadcast set (a sort-merge join would shuffle the
    raw lines), and a string id whose key the cheap test can read.
    """
    cfg = config.events
    return (cfg.format == "json" and cfg.validate == "kept" and join.broadcast
            and id_field_type(event_schema(cfg), cfg.id_field) == "string"
            and plain_shape_possible(key_name(cfg.id_field)))


def candidate_test(spark: SparkSession, config: Config) -> str:
    """How the pre-filter reads plain ids: "jvm" (idstore's jar) as configured, else "builtin"."""
    usable = config.events.candidate_test == "jvm" and plain_value(spark, F.col(LINE), "id") is not None
    return "jvm" if usable else "builtin"


def tagged_events(spark: SparkSession, config: Config, days: Sequence[str],
                  files: Optional[Sequence[str]], prefilter_keys: Optional[DataFrame] = None,
                  read_obs: Optional[Observation] = None) -> DataFrame:
    """The events of `days`, dt as read (a date), each event's file and STATUS.

    With `prefilter_keys` (a join_keys frame), a JSON line is parsed only if its plain id is
    in the set or the cheap test cannot read it. `read_obs` counts the JSON lines read per
    day, before any is dropped.
    """
    cfg = config.events

    def with_file(rows: DataFrame) -> DataFrame:
        # taken at the scan (input_file_name() refuses a plan that joined another source).
        # Parquet: the metadata column, a constant vector of each batch (input_file_name() on
        # every row cost 1 s of a 5 s pass); text lines: input_file_name(), as the row-wise
        # metadata struct cost 2 s of a 12 s pass
        file = F.col("_metadata.file_path") if cfg.format == "parquet" else F.input_file_name()
        return rows.withColumn(INPUT_FILE, file)

    if cfg.format == "parquet":
        return read_events(spark, cfg, days, files).transform(with_file).transform(with_status(id_column(cfg)))
    lines = read_lines(spark, cfg, days, files)
    if read_obs is not None:
        lines = lines.observe(read_obs, _rows_by_day(cfg.date_partition, days).alias("read"))
    lines = lines.transform(with_file)
    if prefilter_keys is not None:
        trim, case = config.validation.trim, config.validation.case
        lines = (
            lines.transform(with_candidate_key(LINE, key_name(cfg.id_field), trim, case,
                                               jvm=candidate_test(spark, config) == "jvm"))
            .transform(lambda df: semi_join(df, F.col(CANDIDATE), prefilter_keys))
        )
    return parse_lines(lines, cfg).transform(with_status(id_column(cfg)))


def parquet_footers_by_day(spark: SparkSession, config: Config, days: Sequence[str],
                           files: Optional[Sequence[str]]) -> Tuple[Dict[str, int], List[str]]:
    """A Parquet archive's events per day, and the files that may hold a missing id, before the pass.

    From the files' footers, read on the driver by idstore's jar: no task, no column. Without
    the jar, two Spark jobs do it: one over the footers, one over the id column.
    """
    cfg, dt = config.events, config.events.date_partition
    footers = parquet_footers(spark, list(files) if files is not None else day_folders(cfg, days), cfg.id_field)
    if footers is None:
        return _parquet_rows_by_day(spark, config, days, files), _files_with_missing_ids(spark, config, days, files)
    read = dict.fromkeys(days, 0)
    for footer in footers:
        read[_day_of(footer.path, dt)] += footer.rows
    return read, sorted(footer.path for footer in footers if footer.may_miss_id)


def _parquet_rows_by_day(spark: SparkSession, config: Config, days: Sequence[str],
                         files: Optional[Sequence[str]]) -> Dict[str, int]:
    dt = config.events.date_partition
    rows = read_events(spark, config.events, days, files).groupBy(dt).count().collect()
    counted = {str(row[dt]): int(row["count"]) for row in rows}
    return {day: counted.get(day, 0) for day in days}


def _files_with_missing_ids(spark: SparkSession, config: Config, days: Sequence[str],
                            files: Optional[Sequence[str]]) -> List[str]:
    events = tagged_events(spark, config, days, files)
    rows = events.filter(F.col(STATUS) != "ok").select(INPUT_FILE).distinct().collect()
    return sorted(_spark_path(spark, row[0]) for row in rows)


def filter_pass(spark: SparkSession, config: Config, ids: DataFrame, join: JoinChoice,
                days: Sequence[str], files: Optional[Sequence[str]] = None) -> PassCounts:
    """Read, join, write: one Spark job over the events of `days` (or of just `files`)."""
    run_pass = parquet_pass if config.events.format == "parquet" else json_pass
    return run_pass(spark, config, ids, join, days, files)


def json_pass(spark: SparkSession, config: Config, ids: DataFrame, join: JoinChoice,
              days: Sequence[str], files: Optional[Sequence[str]] = None) -> PassCounts:
    """Read, tag, join, write JSON lines, counts observed on the way."""
    cfg, dt = config.events, config.events.date_partition
    status = F.col(STATUS)
    prefilter = prefilters(config, join)
    keys = join_keys(ids, config.source.id_column, join.broadcast, undecided=True)
    read_obs, observed = Observation("idstore_read"), Observation("idstore_kept")
    events = tagged_events(spark, config, days, files, keys if prefilter else None, read_obs)
    key = normalised_key(id_column(cfg), config.validation.trim, config.validation.case)
    # a bad event goes through the join on the sentinel key and on to the write's shuffle, so
    # one observation after it, over the few rows the join keeps, collects the bad files and
    # counts the kept events; after the pre-filter's join, a plain line is looked up only if
    # its parsed id is its plain id
    lookup = F.when(status != "ok", F.lit(UNDECIDED)).when(decided_by_parse(key) if prefilter else F.lit(True), key)
    bad_file, ok = F.col(SOURCE_FILE), F.col(SOURCE_FILE).isNull()
    joined = (
        semi_join(events, lookup, keys)
        .withColumn(SOURCE_FILE, F.when(status != "ok", F.col(INPUT_FILE)))  # null: ok, as the shuffle carries it
        .drop(STATUS, INPUT_FILE, CANDIDATE, *([CORRUPT] if CORRUPT in events.columns else []))
    )
    matched = (
        joined
        .transform(shaped_for_write(dt, config.output.files_per_day, id_column(cfg), len(days)))
        # after the shuffle: counted in the result stage, once per partition even on retries
        .observe(observed, F.concat_ws("\n", F.collect_set(bad_file)).alias("bad_files"),
                 _rows_by_day(dt, days, ok).alias("by_day"))
        .filter(ok)
        .drop(SOURCE_FILE)
    )
    write_by_day(matched, config.output.path, dt)
    kept, seen = observed.get, read_obs.get
    if "bad_files" not in kept or "read" not in seen:
        raise RunFailed(LOST_COUNTS)
    read_per_day, matched_per_day = _count_by_day(seen["read"], days), _count_by_day(kept["by_day"], days)
    return PassCounts(
        read=sum(read_per_day.values()),
        matched=sum(matched_per_day.values()),
        read_per_day=read_per_day,
        matched_per_day=matched_per_day,
        files_with_bad_rows=sorted(_spark_path(spark, uri) for uri in (kept["bad_files"] or "").split("\n") if uri),
        prefilter_keys=keys if prefilter else None,
    )


def parquet_pass(spark: SparkSession, config: Config, ids: DataFrame, join: JoinChoice,
                 days: Sequence[str], files: Optional[Sequence[str]] = None) -> PassCounts:
    """The Parquet pass: the plain semi-join a user would write, with the footers read beside it.

    Parquet has no malformed rows, only missing ids, and the footers say which files may hold
    one (parquet_footers_by_day), so nothing is routed through the join: a null or blank id
    is never a join key, and the quarantine pass reads those files. Tagging every row and
    carrying its file cost about 5% of the pass; the footers are read on the driver while the
    pass builds its broadcast, when the cores are idle.
    """
    cfg, dt = config.events, config.events.date_partition
    footers = InBackground(lambda: parquet_footers_by_day(spark, config, days, files))
    id_col = F.col(config.source.id_column).cast("string")
    # sync never stores a blank id; a set from elsewhere might, and no event is kept by one
    keys = join_keys(ids.filter(F.trim(id_col) != ""), config.source.id_column, join.broadcast)
    key = normalised_key(id_column(cfg), config.validation.trim, config.validation.case)
    observed = Observation("idstore_kept")
    matched = (
        semi_join(read_events(spark, cfg, days, files), key, keys)
        .transform(shaped_for_write(dt, config.output.files_per_day, id_column(cfg), len(days)))
        .observe(observed, _rows_by_day(dt, days).alias("by_day"))  # result stage: once per partition
    )
    try:
        write_by_day(matched, config.output.path, dt)
    finally:
        footers.wait()  # never left running, even when the pass failed
    read_per_day, may_miss_id = footers.result()
    if "by_day" not in observed.get:
        raise RunFailed(LOST_COUNTS)
    matched_per_day = _count_by_day(observed.get["by_day"], days)
    return PassCounts(
        read=sum(read_per_day.values()),
        matched=sum(matched_per_day.values()),
        read_per_day=read_per_day,
        matched_per_day=matched_per_day,
        files_with_bad_rows=may_miss_id,
        read_in_map_stage=False,
    )


def quarantine(spark: SparkSession, config: Config, days: Sequence[str], files: Sequence[str],
               run_id: str, counts: Optional[PassCounts] = None) -> Tuple[str, Dict[str, Dict[str, int]]]:
    """Write the malformed and id-less events of `files` with a reason, their day and file.

    Returns (where, {day: {reason: count}}). Reads only the files that hold bad rows, and
    of them, after a pre-filtered pass (`counts`), only the lines that pass parsed.
    """
    dt = config.events.date_partition
    target = io.join(config.output.quarantine_path, "filter", f"run_id={run_id}")
    events = tagged_events(spark, config, days, files, counts.prefilter_keys if counts is not None else None)
    columns = [c for c in events.columns if c not in (STATUS, CORRUPT, dt, INPUT_FILE, CANDIDATE)]
    raw = F.to_json(F.struct(*[F.col(f"`{c}`") for c in columns]))
    if CORRUPT in events.columns:
        raw = F.coalesce(F.col(CORRUPT), raw)
    obs = Observation("idstore_quarantine")
    counts = [_rows_by_day("dt", days, F.col("reason") == reason).alias(reason) for reason in REASONS]
    (
        events.filter(F.col(STATUS) != "ok")
        .select(
            F.col(STATUS).alias("reason"),
            F.col(dt).cast("string").alias("dt"),
            F.col(INPUT_FILE).alias("source_file"),
            raw.alias("raw"),
        )
        .observe(obs, *counts)
        .write.mode("overwrite")
        .json(target)
    )
    seen = obs.get
    by_reason = {reason: _count_by_day(seen[reason], days) for reason in REASONS}
    return target, {day: {reason: by_reason[reason][day] for reason in REASONS} for day in days}


def _name_files(problems: Mapping[str, str], limit: int = 5) -> str:
    named = [f"{path} ({problem})" for path, problem in sorted(problems.items())[:limit]]
    more = len(problems) - limit
    return ", ".join(named) + (f" and {more} more (all listed in the run report)" if more > 0 else "")


def keep_observed_metrics(spark: SparkSession) -> None:
    """Stop AQE from replacing a stage that yields no rows with an empty relation.

    That rewrite drops the plan's observed metrics with it (Spark 3.5): a day, or a whole
    run, that keeps no events would lose its read counts.
    """
    current = [r for r in (spark.conf.get(EXCLUDED_RULES_KEY, "") or "").split(",") if r]
    if EMPTY_RELATION_RULE not in current:
        spark.conf.set(EXCLUDED_RULES_KEY, ",".join([*current, EMPTY_RELATION_RULE]))


@contextmanager
def balanced_scan(spark: SparkSession) -> Iterator[None]:
    """Split the archive's scan into at least SCAN_TASKS_PER_CORE tasks a core, unless [spark] says otherwise.

    Spark packs files into tasks of up to 128 MB, but never fewer tasks than cores: 200 MB
    on 2 cores is 3 tasks, and the third runs alone while a core idles (a third of the pass).
    Twice the cores keeps the last wave full; over 128 MB a core, nothing changes. Restored
    afterwards, so a session that runs other work after the filter keeps its own setting.
    """
    if spark.conf.get(MIN_SCAN_TASKS_KEY, None) is not None:
        yield
        return
    cores = max(1, spark.sparkContext.defaultParallelism)
    spark.conf.set(MIN_SCAN_TASKS_KEY, str(SCAN_TASKS_PER_CORE * cores))
    try:
        yield
    finally:
        spark.conf.unset(MIN_SCAN_TASKS_KEY)


@contextmanager
def job_group(spark: SparkSession, group: str, description: str) -> Iterator[str]:
    """Tag this thread's Spark jobs with `group` (for the status tracker), then restore the old tags."""
    context = spark.sparkContext
    keys = ("spark.jobGroup.id", "spark.job.description")
    previous = [context.getLocalProperty(key) for key in keys]
    context.setJobGroup(group, description)
    try:
        yield group
    finally:
        for key, value in zip(keys, previous):
            context.setLocalProperty(key, value)


# Rough scan rates per core on this project's benchmark machine, for the dry run's estimate only:
# gzip JSON is bound by inflating and parsing, plain JSON by parsing, Parquet by decoding.
SCAN_BYTES_PER_CORE_S = {"json.gz": 12e6, "json": 60e6, "parquet": 40e6}


@dataclass(frozen=True)
class FilterPlan:
    """What a filter run would read and how: the dry run's answer."""

    days: Sequence[str]
    files: int
    bytes: int
    ids: int
    ids_from: str
    join: JoinChoice
    estimated_s: float

    def text(self) -> str:
        span = self.days[0] if len(self.days) == 1 else f"{self.days[0]} .. {self.days[-1]}"
        return (
            f"would read {len(self.days)} day(s) ({span}): {self.files:,} files, {self.bytes / 1e6:,.1f} MB; "
            f"{self.ids:,} ids from {self.ids_from}; {self.join.why}; about {self.estimated_s:,.0f} s on "
            "this cluster's cores; dry run: nothing written"
        )


def plan_filter(spark: SparkSession, config: Config, days: Sequence[str], ids_from: str, id_count: int,
                join: JoinChoice) -> FilterPlan:
    files = list_files(spark, day_folders(config.events, days))
    total = sum(size for _, size in files)
    cores = max(1, spark.sparkContext.defaultParallelism)
    seconds = sum(size / SCAN_BYTES_PER_CORE_S[_scan_kind(config.events.format, path)] for path, size in files)
    return FilterPlan(days, len(files), total, id_count, ids_from, join, round(seconds / cores, 1))


def _scan_kind(fmt: str, path: str) -> str:
    return "json.gz" if fmt == "json" and path.endswith(".gz") else fmt


def run_filter(spark: SparkSession, config: Config, report, environ: Mapping[str, str],
               start: Optional[date] = None, end: Optional[date] = None, ids_from: str = "snapshot",
               dry_run: bool = False) -> None:
    with job_group(spark, f"idstore-filter-{report.run_id}", f"idstore filter {report.run_id}") as group, \
            balanced_scan(spark):
        _run_filter(spark, config, report, environ, start, end, ids_from, group, dry_run)


def _run_filter(spark: SparkSession, config: Config, report, environ: Mapping[str, str],
                start: Optional[date], end: Optional[date], ids_from: str, group: str, dry_run: bool) -> None:
    events_cfg, dt = config.events, config.events.date_partition
    apply_hadoop_options(spark, sse_kms_options(config.output))
    keep_observed_metrics(spark)
    days = days_in_range(list_partitions(spark, events_cfg.path, dt), start, end)
    if not days:
        raise ConfigError(f"events.path: no {dt}= folders between {start or 'the first'} and {end or 'the last'}")
    report.details["days"] = days
    report.details["ids_from"] = ids_from

    id_col = config.source.id_column
    with report.timed("ids"):
        id_set = load_id_set(spark, config, ids_from, environ)
        ids, id_count, id_bytes = id_set.ids.select(id_col), id_set.count, id_set.bytes
    join = choose_join(id_count, events_cfg.broadcast_max_rows, id_bytes, events_cfg.broadcast_max_bytes)
    log.info(join.why)
    report.counts["ids"] = id_count
    report.details["join"] = join.why
    if prefilters(config, join):
        report.details["candidate_test"] = candidate_test(spark, config)
        if report.details["candidate_test"] != events_cfg.candidate_test:
            log.warning("%s is missing (make setup builds it) or does not fit this Spark: the pre-filter uses "
                        "its built-in candidate test, which gives the same answers more slowly", JAR)
    if events_cfg.format == "json":
        report.details["json_parser"] = json_parser(spark, events_cfg)
        if report.details["json_parser"] != "jvm":
            log.warning("%s is missing or does not fit this Spark: lines are parsed with from_json, more slowly, "
                        "and a line that is not UTF-8 is read with U+FFFD in place of its bad bytes instead of "
                        "being quarantined as malformed", JAR)
    if dry_run:
        id_set.ids.unpersist()
        plan = plan_filter(spark, config, days, ids_from, id_count, join)
        report.counts.update(files=plan.files, bytes=plan.bytes)
        report.details.update(plan=plan.text(), estimated_s=plan.estimated_s)
        log.info("plan: %s", report.details["plan"])
        return

    with report.timed("filter_write"):
        counts, skipped = filter_skipping_corrupt_files(spark, config, ids, join, days, report)

    # a day that was read but kept nothing: dynamic overwrite would leave its old output
    emptied = [day for day in days if counts.read_per_day[day] and not counts.matched_per_day[day]]
    cleared = clear_days(spark, config.output.path, dt, emptied)
    unread = [day for day in days if not counts.read_per_day[day]]
    if unread:
        log.warning("no events read for %s; their earlier output, if any, is kept", ", ".join(unread))

    bad_per_day: Dict[str, Dict[str, int]] = {}
    if counts.files_with_bad_rows:
        with report.timed("quarantine"):
            bad_days = sorted({_day_of(path, dt) for path in counts.files_with_bad_rows} & set(days))
            where, bad_per_day = quarantine(spark, config, bad_days, counts.files_with_bad_rows, report.run_id,
                                            counts)
        if any(sum(bad.values()) for bad in bad_per_day.values()):
            report.details["quarantine"] = where
    id_set.ids.unpersist()  # after the quarantine, which joins the set again after a pre-filtered pass
    output = describe_days(spark, config.output.path, dt, days)
    fill_report(report, days, counts, bad_per_day, output)
    report.metrics.update({
        M.EVENTS_READ: counts.read, M.EVENTS_MATCHED: counts.matched,
        M.EVENTS_QUARANTINED: sum(sum(bad.values()) for bad in bad_per_day.values()),
    })
    report.details["output"] = config.output.path
    for name, value in (("cleared_days", cleared), ("days_without_events", unread), ("skipped_files", skipped)):
        if value:
            report.details[name] = value
    reruns = rerun_stages(spark, group) if counts.read_in_map_stage else 0
    if reruns:
        # observed counts of a map stage are added again when Spark re-runs it (lost executor)
        report.details["counts_note"] = (
            f"{reruns} stage(s) ran more than once; events_read and the per-day read counts may be too high"
        )
        log.warning(report.details["counts_note"])
    for line in per_day_table(report.details["per_day"]):
        log.info(line)


def filter_skipping_corrupt_files(spark: SparkSession, config: Config, ids: DataFrame, join: JoinChoice,
                                  days: Sequence[str], report) -> Tuple[PassCounts, Dict[str, str]]:
    """The filter pass; after a failure that reads like a damaged file, name the damaged files.

    Then fail with their names, or, with events.skip_corrupt_files, run again without them.
    A healthy archive pays nothing for this: the check runs only after such a failure.
    """
    events_cfg = config.events
    try:
        return filter_pass(spark, config, ids, join, days), {}
    except Exception as exc:  # noqa: BLE001 - re-raised unless a damaged input file explains it
        if not looks_like_corrupt_file(exc):
            raise
        failure = exc
    listed = [path for path, _ in list_files(spark, day_folders(events_cfg, days))]
    damaged = find_corrupt_files(spark, listed)
    if not damaged:
        raise failure
    report.details["corrupt_files"] = damaged
    if not events_cfg.skip_corrupt_files:
        raise RunFailed(
            f"corrupt input file(s): {_name_files(damaged)}; replace or remove them, "
            "or set events.skip_corrupt_files=true to skip them (they are then reported by name)"
        )
    for path, problem in sorted(damaged.items()):
        log.warning("skipping corrupt input file %s: %s (events.skip_corrupt_files)", path, problem)
    files = [path for path in listed if path not in damaged]
    if not files:
        raise RunFailed(f"every input file in range is corrupt: {_name_files(damaged)}")
    return filter_pass(spark, config, ids, join, days, files), damaged


def fill_report(report, days: Sequence[str], counts: PassCounts, bad_per_day: Mapping[str, Mapping[str, int]],
                output: Mapping[str, Mapping[str, int]]) -> None:
    """Totals in report.counts, one row per day in report.details["per_day"]."""
    report.counts.update(
        events_read=counts.read,
        matched=counts.matched,
        **{reason: sum(bad.get(reason, 0) for bad in bad_per_day.values()) for reason in REASONS},
        output_files=sum(d["files"] for d in output.values()),
        output_bytes=sum(d["bytes"] for d in output.values()),
        corrupt_files_skipped=len(report.details.get("corrupt_files", {})),
    )
    report.details["per_day"] = {
        day: {
            "read": counts.read_per_day[day],
            "matched": counts.matched_per_day[day],
            **{reason: bad_per_day.get(day, {}).get(reason, 0) for reason in REASONS},
            "output_files": output[day]["files"],
            "output_bytes": output[day]["bytes"],
        }
        for day in days
    }


def rerun_stages(spark: SparkSession, group: str) -> int:
    """How many stages of the jobs in `group` ran more than one attempt."""
    tracker = spark.sparkContext.statusTracker()
    stages = set()
    for job_id in tracker.getJobIdsForGroup(group):
        job = tracker.getJobInfo(job_id)
        stages.update(job.stageIds if job else [])
    infos = [tracker.getStageInfo(stage_id) for stage_id in stages]
    return sum(1 for info in infos if info is not None and info.currentAttemptId > 0)


def _day_of(path: str, dt: str) -> str:
    prefix = f"/{dt}="
    return path[path.rindex(prefix) + len(prefix):].split("/", 1)[0]


def per_day_table(per_day: Mapping[str, Mapping[str, int]]) -> List[str]:
    """The per-day counts as aligned text lines for the log."""
    columns = ("read", "matched", "malformed", "missing_id", "output_files", "output_bytes")
    lines = ["day         " + " ".join(f"{c:>13}" for c in columns)]
    for day, values in per_day.items():
        lines.append(f"{day:<11} " + " ".join(f"{values[c]:>13,}" for c in columns))
    return lines
