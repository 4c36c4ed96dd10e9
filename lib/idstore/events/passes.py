"""The filter's pass: read the events of the days in range, keep those whose id is in the set,
write them by day, and observe the counts in that same Spark job.

JSON lines are tagged ok | malformed | missing_id on the way; a bad event goes through the join
on a sentinel key so that one observation after the join names the files that hold bad rows
and, when they are few, brings back the bad events themselves for the quarantine.
A Parquet archive has no malformed rows: its pass is a plain semi-join, and its read counts and
the files that may hold a missing id come from its footers.
"""
import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Dict, List, Optional, Sequence, Tuple

from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from idstore.config import CandidateTest, Config, EventFormat, LineValidation
from idstore.events.join import JoinChoice, join_keys, semi_join
from idstore.events.output import shaped_for_write, write_by_day
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
    event_schema,
    id_column,
    id_field_type,
    parse_lines,
    read_events,
    read_lines,
)
from idstore.events.status import OK, STATUS, with_status
from idstore.jvm import bounded_lines, parquet_footers, plain_value
from idstore.spark import InBackground, spark_path
from idstore.validation import normalised_key

INPUT_FILE = "_idstore_input_file"
SOURCE_FILE = "_idstore_bad_row_file"
BAD_RECORD = "_idstore_bad_record"
# The bad events a pass brings back with its counts, at most: past either bound the quarantine
# reads their files again. Bounded, as the driver holds them, and a rehearsal with a renamed id
# field makes every event bad.
GATHERED_BAD_EVENTS = 10_000
GATHERED_BAD_BYTES = 16 * 2**20
LOST_COUNTS = "the filter pass lost its observed counts (was AQEPropagateEmptyRelation re-enabled?)"


class CountsLost(RuntimeError):
    """Spark dropped a pass's observed metrics: the run cannot say what it read."""


@dataclass(frozen=True)
class PassInputs:
    """What every pass of one run shares: the session, the config, the days in range, the set and the join."""

    spark: SparkSession
    config: Config
    days: Tuple[str, ...]
    ids: DataFrame  # the set, one column named source.id_column
    join: JoinChoice

    @property
    def prefilters(self) -> bool:
        """Whether a pass parses only the candidate and undecided lines (docs/filter.md).

        JSON with events.validate = kept, a broadcast set (a sort-merge join would shuffle the
        raw lines), and a string id whose key the cheap test can read.
        """
        cfg = self.config.events
        return (cfg.format == EventFormat.JSON and cfg.validate == LineValidation.KEPT and self.join.broadcast
                and id_field_type(event_schema(cfg), cfg.id_field) == "string"
                and plain_shape_possible(key_name(cfg.id_field)))

    def candidate_test(self) -> CandidateTest:
        """How the pre-filter reads plain ids: the JVM's test (idstore's jar) as configured, else the built-in."""
        usable = (self.config.events.candidate_test == CandidateTest.JVM
                  and plain_value(self.spark, F.col(LINE), "id") is not None)
        return CandidateTest.JVM if usable else CandidateTest.BUILTIN


@dataclass
class PassCounts:
    """What one filter pass saw: its observed metrics (and a Parquet archive's footers)."""

    read_per_day: Dict[str, int]
    matched_per_day: Dict[str, int]
    # the files the quarantine pass reads: JSON, those that held bad rows; Parquet, those
    # whose footers cannot rule out a missing id (the quarantine counts what they hold)
    files_with_bad_rows: List[str] = field(default_factory=list)
    # the join keys of a pre-filtered pass (validate = kept): the quarantine routes lines the same way
    prefilter_keys: Optional[DataFrame] = None
    # the bad events' quarantine records as JSON (bad_event_fields), when the pass brought them back:
    # then the quarantine writes these instead of reading files_with_bad_rows again
    bad_records: Optional[List[str]] = None
    # read counts observed in the scan, a map stage: a re-run of it adds them again (JSON);
    # Parquet's come from the footers
    read_in_map_stage: bool = True

    @property
    def read(self) -> int:
        return sum(self.read_per_day.values())

    @property
    def matched(self) -> int:
        return sum(self.matched_per_day.values())


def rows_by_day(dt: str, days: Sequence[str], only: Optional[Column] = None) -> Column:
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


def count_by_day(histogram: Optional[str], days: Sequence[str]) -> Dict[str, int]:
    """rows_by_day's value as {day: rows}; days without rows are 0."""
    counts = dict.fromkeys(days, 0)
    first = date.fromisoformat(days[0])
    for bin_ in json.loads(histogram or "[]"):
        day = (first + timedelta(days=int(bin_["x"]))).isoformat()
        counts[day] += int(bin_["y"])
    return counts


def observed(observation: Observation, name: str) -> Optional[str]:
    """An observed metric, or CountsLost when Spark dropped it."""
    values = observation.get
    if name not in values:
        raise CountsLost(LOST_COUNTS)
    return values[name]


def tagged_events(inputs: PassInputs, files: Optional[Sequence[str]], prefilter_keys: Optional[DataFrame] = None,
                  read_obs: Optional[Observation] = None) -> DataFrame:
    """The events of the inputs' days (or of `files`), dt as read (a date), each event's file and STATUS.

    With `prefilter_keys` (a join_keys frame), a JSON line is parsed only if its plain id is
    in the set or the cheap test cannot read it. `read_obs` counts the JSON lines read per
    day, before any is dropped.
    """
    spark, cfg, days = inputs.spark, inputs.config.events, inputs.days
    if cfg.format == EventFormat.PARQUET:
        # the metadata column, a constant vector of each batch (input_file_name() on every
        # row cost 1 s of a 5 s pass)
        events = read_events(spark, cfg, days, files).withColumn(INPUT_FILE, F.col("_metadata.file_path"))
        return events.transform(with_status(id_column(cfg)))
    lines = read_lines(spark, cfg, days, files)
    if read_obs is not None:
        lines = lines.observe(read_obs, rows_by_day(cfg.date_partition, days).alias("read"))
    # taken at the scan (input_file_name() refuses a plan that joined another source); not the
    # row-wise metadata struct, which cost 2 s of a 12 s pass
    lines = lines.withColumn(INPUT_FILE, F.input_file_name())
    if prefilter_keys is not None:
        validation = inputs.config.validation
        lines = (
            lines.transform(with_candidate_key(LINE, key_name(cfg.id_field), validation.trim, validation.case,
                                               jvm=inputs.candidate_test() == CandidateTest.JVM))
            .transform(lambda df: semi_join(df, F.col(CANDIDATE), prefilter_keys))
        )
    return parse_lines(lines, cfg).transform(with_status(id_column(cfg)))


def bad_event_fields(events: DataFrame, dt: str) -> List[Column]:
    """A bad event's quarantine record: reason, dt, source_file and raw (its line, or the parsed event)."""
    columns = [c for c in events.columns if c not in (STATUS, CORRUPT, dt, INPUT_FILE, CANDIDATE)]
    raw = F.to_json(F.struct(*[F.col(f"`{c}`") for c in columns]))
    if CORRUPT in events.columns:
        raw = F.coalesce(F.col(CORRUPT), raw)
    return [F.col(STATUS).alias("reason"), F.col(dt).cast("string").alias("dt"),
            F.col(INPUT_FILE).alias("source_file"), raw.alias("raw")]


def filter_pass(inputs: PassInputs, files: Optional[Sequence[str]] = None) -> PassCounts:
    """Read, join, write: one Spark job over the events of the inputs' days (or of just `files`)."""
    run_pass = parquet_pass if inputs.config.events.format == EventFormat.PARQUET else json_pass
    return run_pass(inputs, files)


def _event_key(config: Config) -> Column:
    return normalised_key(id_column(config.events), config.validation.trim, config.validation.case)


def json_pass(inputs: PassInputs, files: Optional[Sequence[str]] = None) -> PassCounts:
    """Read, tag, join, write JSON lines, counts observed on the way."""
    config, days = inputs.config, inputs.days
    dt, status, prefilter = config.events.date_partition, F.col(STATUS), inputs.prefilters
    keys = join_keys(inputs.ids, config.source.id_column, inputs.join.broadcast, undecided=True)
    read_obs, kept_obs = Observation("idstore_read"), Observation("idstore_kept")
    events = tagged_events(inputs, files, keys if prefilter else None, read_obs)
    key = _event_key(config)
    # a bad event goes through the join on the sentinel key and on to the write's shuffle, so
    # one observation after it, over the few rows the join keeps, collects the bad files and
    # counts the kept events; after the pre-filter's join, a plain line is looked up only if
    # its parsed id is its plain id
    lookup = F.when(status != OK, F.lit(UNDECIDED)).when(decided_by_parse(key) if prefilter else F.lit(True), key)
    bad_file, ok = F.col(SOURCE_FILE), F.col(SOURCE_FILE).isNull()
    joined = (
        semi_join(events, lookup, keys)
        # both null for an ok event, as the shuffle carries them
        .withColumn(SOURCE_FILE, F.when(status != OK, F.col(INPUT_FILE)))
        .withColumn(BAD_RECORD, F.when(status != OK, F.to_json(F.struct(*bad_event_fields(events, dt)))))
        .drop(STATUS, INPUT_FILE, CANDIDATE, *([CORRUPT] if CORRUPT in events.columns else []))
    )
    gathered = bounded_lines(inputs.spark, F.col(BAD_RECORD), GATHERED_BAD_EVENTS, GATHERED_BAD_BYTES)
    matched = (
        joined
        .transform(shaped_for_write(dt, config.output.files_per_day, id_column(config.events), len(days)))
        # after the shuffle: counted in the result stage, once per partition even on retries
        .observe(kept_obs, F.concat_ws("\n", F.collect_set(bad_file)).alias("bad_files"),
                 rows_by_day(dt, days, ok).alias("by_day"),
                 (gathered if gathered is not None else F.lit(None).cast("string")).alias("bad_records"))
        .filter(ok)
        .drop(SOURCE_FILE, BAD_RECORD)
    )
    write_by_day(matched, config.output.path, dt)
    bad_files = observed(kept_obs, "bad_files") or ""
    records = observed(kept_obs, "bad_records")  # null: past the bounds, or no jar
    return PassCounts(
        read_per_day=count_by_day(observed(read_obs, "read"), days),
        matched_per_day=count_by_day(observed(kept_obs, "by_day"), days),
        files_with_bad_rows=sorted(spark_path(inputs.spark, uri) for uri in bad_files.split("\n") if uri),
        prefilter_keys=keys if prefilter else None,
        bad_records=None if records is None else [record for record in records.split("\n") if record],
    )


def parquet_pass(inputs: PassInputs, files: Optional[Sequence[str]] = None) -> PassCounts:
    """The Parquet pass: the plain semi-join a user would write, with the footers read beside it.

    Parquet has no malformed rows, only missing ids, and the footers say which files may hold
    one (parquet_footers_by_day), so nothing is routed through the join: a null or blank id
    is never a join key, and the quarantine pass reads those files. Tagging every row and
    carrying its file cost about 5% of the pass; the footers are read on the driver while the
    pass builds its broadcast, when the cores are idle.
    """
    config, days = inputs.config, inputs.days
    dt = config.events.date_partition
    footers = InBackground(lambda: parquet_footers_by_day(inputs, files))
    id_col = F.col(config.source.id_column).cast("string")
    # sync never stores a blank id; a set from elsewhere might, and no event is kept by one
    keys = join_keys(inputs.ids.filter(F.trim(id_col) != ""), config.source.id_column, inputs.join.broadcast)
    kept_obs = Observation("idstore_kept")
    matched = (
        semi_join(read_events(inputs.spark, config.events, days, files), _event_key(config), keys)
        .transform(shaped_for_write(dt, config.output.files_per_day, id_column(config.events), len(days)))
        .observe(kept_obs, rows_by_day(dt, days).alias("by_day"))  # result stage: once per partition
    )
    try:
        write_by_day(matched, config.output.path, dt)
    finally:
        footers.wait()  # never left running, even when the pass failed
    read_per_day, may_miss_id = footers.result()
    return PassCounts(
        read_per_day=read_per_day,
        matched_per_day=count_by_day(observed(kept_obs, "by_day"), days),
        files_with_bad_rows=may_miss_id,
        read_in_map_stage=False,
    )


def parquet_footers_by_day(inputs: PassInputs, files: Optional[Sequence[str]]) -> Tuple[Dict[str, int], List[str]]:
    """A Parquet archive's events per day, and the files that may hold a missing id, before the pass.

    From the files' footers, read on the driver by idstore's jar: no task, no column. Without
    the jar, two Spark jobs do it: one over the footers, one over the id column.
    """
    cfg, days = inputs.config.events, inputs.days
    footers = parquet_footers(inputs.spark, list(files) if files is not None else day_folders(cfg, days),
                              cfg.id_field)
    if footers is None:
        return parquet_rows_by_day(inputs, files), files_with_missing_ids(inputs, files)
    read = dict.fromkeys(days, 0)
    for footer in footers:
        read[day_of(footer.path, cfg.date_partition)] += footer.rows
    return read, sorted(footer.path for footer in footers if footer.may_miss_id)


def parquet_rows_by_day(inputs: PassInputs, files: Optional[Sequence[str]]) -> Dict[str, int]:
    dt = inputs.config.events.date_partition
    rows = read_events(inputs.spark, inputs.config.events, inputs.days, files).groupBy(dt).count().collect()
    counted = {str(row[dt]): int(row["count"]) for row in rows}
    return {day: counted.get(day, 0) for day in inputs.days}


def files_with_missing_ids(inputs: PassInputs, files: Optional[Sequence[str]]) -> List[str]:
    events = tagged_events(inputs, files)
    rows = events.filter(F.col(STATUS) != OK).select(INPUT_FILE).distinct().collect()
    return sorted(spark_path(inputs.spark, row[0]) for row in rows)


def day_of(path: str, dt: str) -> str:
    """The day of a file under a dt= folder."""
    prefix = f"/{dt}="
    return path[path.rindex(prefix) + len(prefix):].split("/", 1)[0]
