"""The filter job: event archive -> events whose id is in the set -> Parquet by day.

Stages: the days in range -> the id set and the join -> (a dry run: the plan) -> the pass
(events/passes.py: read, join, write, counts observed on the way; after a failure that reads
like a damaged file, the damaged files named, and skipped if the config says so) -> the days
that kept nothing cleared -> the quarantine of the bad events -> the output described. Each
stage's result goes into the run's FilterResult, which the report is rendered from.
"""
import logging
from typing import Callable, List, Mapping, Optional, cast

from pyspark.sql import SparkSession

from idstore.config import Config, EventFormat, MissingDays
from idstore.errors import InputNotReady, RunFailed
from idstore.events.integrity import find_corrupt_files, looks_like_corrupt_file
from idstore.events.join import choose_join
from idstore.events.output import apply_hadoop_options, clear_days, describe_days, sse_kms_options
from idstore.events.passes import PassCounts, PassInputs, filter_pass
from idstore.events.quarantine import quarantine
from idstore.events.reader import (
    archive_bytes,
    day_folders,
    days_in_range,
    event_schema,
    json_parser,
    list_files,
    list_partitions,
    missing_days,
)
from idstore.idset import IdSet, load_id_set
from idstore.jvm import JAR
from idstore.pipeline.filter_result import FilterPlan, FilterResult, per_day_table
from idstore.pipeline.options import FilterOptions
from idstore.pipeline.report import RunReport
from idstore.spark import balanced_scan, job_group, keep_observed_metrics, rerun_stages

log = logging.getLogger(__name__)

# Rough scan rates per core on this project's benchmark machine, for the dry run's estimate only:
# gzip JSON is bound by inflating and parsing, plain JSON by parsing, Parquet by decoding.
SCAN_BYTES_PER_CORE_S = {"json.gz": 12e6, "json": 60e6, "parquet": 40e6}


def read_window(spark: SparkSession, config: Config, options: FilterOptions, result: FilterResult) -> None:
    """The days to read, and the days of --from..--to that have no folder (events.missing_days)."""
    events, dt = config.events, config.events.date_partition
    present = list_partitions(spark, events.path, dt)
    result.days = days_in_range(present, options.start, options.end)
    result.missing_days = missing_days(present, options.start, options.end)
    result.windowed = options.start is not None or options.end is not None
    if not result.days and not result.missing_days:
        raise InputNotReady(f"no {dt}= folder in {events.path} (events.path): nothing has arrived there yet")
    if not result.windowed:
        log.warning("no --from/--to: reading every day in %s (%d)", events.path, len(result.days))
    if result.missing_days:
        log.warning("%s", result.missing_text(dt, events.missing_days))


def end_on_missing_days(config: Config, result: FilterResult) -> None:
    """With events.missing_days = fail, a window with missing days ends as input not ready (exit 4)."""
    if result.missing_days and config.events.missing_days == MissingDays.FAIL:
        raise InputNotReady(result.missing_text(config.events.date_partition, MissingDays.FAIL))


def note_engines(spark: SparkSession, inputs: PassInputs, result: FilterResult) -> None:
    """Which candidate test and JSON parser the pass will use; a warning when idstore's jar is not there."""
    events = inputs.config.events
    if inputs.prefilters:
        result.candidate_test = inputs.candidate_test()
        if result.candidate_test != events.candidate_test:
            log.warning("%s is missing (make setup builds it) or does not fit this Spark: the pre-filter uses "
                        "its built-in candidate test, which gives the same answers more slowly", JAR)
    if events.format == EventFormat.JSON:
        result.json_parser = json_parser(spark, events)
        if result.json_parser != "jvm":
            log.warning("%s is missing or does not fit this Spark: lines are parsed with from_json, more slowly, "
                        "and a line that is not UTF-8 is read with U+FFFD in place of its bad bytes instead of "
                        "being quarantined as malformed", JAR)


def plan_filter(inputs: PassInputs, result: FilterResult, id_count: int) -> FilterPlan:
    spark, events = inputs.spark, inputs.config.events
    files = list_files(spark, day_folders(events, inputs.days))
    cores = max(1, spark.sparkContext.defaultParallelism)
    seconds = sum(size / SCAN_BYTES_PER_CORE_S[_scan_kind(events.format, path)] for path, size in files)
    return FilterPlan(inputs.days, len(files), sum(size for _, size in files), id_count, result.ids_from,
                      inputs.join, round(seconds / cores, 1), result.windowed, tuple(result.missing_days))


def _scan_kind(fmt: EventFormat, path: str) -> str:
    return "json.gz" if fmt == EventFormat.JSON and path.endswith(".gz") else fmt.value


def filter_skipping_corrupt_files(inputs: PassInputs, result: FilterResult) -> PassCounts:
    """The filter pass; after a failure that reads like a damaged file, name the damaged files.

    Then fail with their names, or, with events.skip_corrupt_files, run again without them.
    A healthy archive pays nothing for this: the check runs only after such a failure.
    """
    try:
        return filter_pass(inputs)
    except Exception as exc:  # noqa: BLE001 - re-raised unless a damaged input file explains it
        if not looks_like_corrupt_file(exc):
            raise
        failure = exc
    listed = [path for path, _ in list_files(inputs.spark, day_folders(inputs.config.events, inputs.days))]
    damaged = result.corrupt_files = find_corrupt_files(inputs.spark, listed)
    if not damaged:
        raise failure
    if not inputs.config.events.skip_corrupt_files:
        raise RunFailed(
            f"corrupt input file(s): {_name_files(damaged)}; replace or remove them, "
            "or set events.skip_corrupt_files=true to skip them (they are then reported by name)"
        )
    for path, problem in sorted(damaged.items()):
        log.warning("skipping corrupt input file %s: %s (events.skip_corrupt_files)", path, problem)
    files = [path for path in listed if path not in damaged]
    if not files:
        raise RunFailed(f"every input file in range is corrupt: {_name_files(damaged)}")
    return filter_pass(inputs, files)


def _name_files(problems: Mapping[str, str], limit: int = 5) -> str:
    named = [f"{path} ({problem})" for path, problem in sorted(problems.items())[:limit]]
    more = len(problems) - limit
    return ", ".join(named) + (f" and {more} more (all listed in the run report)" if more > 0 else "")


def clear_emptied_days(inputs: PassInputs, counts: PassCounts) -> List[str]:
    """Clear the output of each day that was read but kept nothing: dynamic overwrite would leave its old output."""
    emptied = [day for day in inputs.days if counts.read_per_day[day] and not counts.matched_per_day[day]]
    unread = [day for day in inputs.days if not counts.read_per_day[day]]
    if unread:
        log.warning("no events read for %s; their earlier output, if any, is kept", ", ".join(unread))
    return clear_days(inputs.spark, inputs.config.output.path, inputs.config.events.date_partition, emptied)


# -- the run ----------------------------------------------------------------------------
def run_filter(spark: SparkSession, config: Config, report: RunReport, environ: Mapping[str, str],
               options: Optional[FilterOptions] = None) -> None:
    """One filter run into report.result; raises RunFailed, InputNotReady or ConfigError."""
    options = options or FilterOptions()
    result = FilterResult(options.ids_from)
    report.result = result
    with job_group(spark, f"idstore-filter-{report.run_id}", f"idstore filter {report.run_id}") as group, \
            balanced_scan(spark) as split_scan:
        event_schema(config.events)  # its DDL and id field, before anything is read (ConfigError, exit 2)
        apply_hadoop_options(spark, sse_kms_options(config.output))
        keep_observed_metrics(spark)
        read_window(spark, config, options, result)
        if result.days:
            id_set = _filter(spark, config, report, environ, options, split_scan)
            id_set.ids.unpersist()  # after the quarantine, which joins the set again after a pre-filtered pass
        result.reruns = rerun_stages(spark, group) if result.passed and result.passed.read_in_map_stage else 0
    if result.reruns:
        log.warning(result.counts_note())
    for line in per_day_table(result.per_day()):
        log.info(line)
    if not options.dry_run:
        end_on_missing_days(config, result)


def _filter(spark: SparkSession, config: Config, report: RunReport, environ: Mapping[str, str],
            options: FilterOptions, split_scan: Callable[[int], None]) -> IdSet:
    result = cast(FilterResult, report.result)
    with report.timed("ids"):
        id_set = load_id_set(spark, config, options.ids_from, environ)
    events = config.events
    join = result.join = choose_join(id_set.count, events.broadcast_max_rows, id_set.bytes, events.broadcast_max_bytes)
    log.info(join.why)
    result.ids = id_set.count
    inputs = PassInputs(spark, config, tuple(result.days), id_set.ids.select(config.source.id_column), join)
    split_scan(archive_bytes(spark, events, inputs.days))
    note_engines(spark, inputs, result)
    if options.dry_run:
        result.plan = plan_filter(inputs, result, id_set.count)
        log.info("plan: %s", result.plan.text())
        return id_set

    with report.timed("filter_write"):
        counts = result.passed = filter_skipping_corrupt_files(inputs, result)
    result.cleared_days = clear_emptied_days(inputs, counts)
    if counts.files_with_bad_rows:
        with report.timed("quarantine"):
            result.quarantine, result.bad_per_day = quarantine(inputs, counts, report.run_id)
    result.output_path = config.output.path
    result.output = describe_days(spark, config.output.path, events.date_partition, result.days)
    return id_set
