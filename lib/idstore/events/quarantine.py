"""The filter's quarantine: the malformed and id-less events, each with its reason, day and file.

The filter pass brings its bad events back when they are few (GATHERED_BAD_EVENTS), and they
are written from there. Else a second pass reads the files the filter pass found bad rows in;
after a pre-filtered pass, only the lines that pass parsed, so the counts agree with the pass's.
"""
import dataclasses
import json
import logging
from typing import Dict, Optional, Sequence, Tuple

from pyspark.sql import Observation, SparkSession
from pyspark.sql import functions as F

from idstore import io
from idstore.events.passes import (
    PassCounts,
    PassInputs,
    bad_event_fields,
    count_by_day,
    day_of,
    rows_by_day,
    tagged_events,
)
from idstore.events.reader import hadoop_fs
from idstore.events.status import BAD, OK, STATUS

log = logging.getLogger(__name__)

BadByDay = Dict[str, Dict[str, int]]  # {day: {reason: events}}


def quarantine(inputs: PassInputs, counts: PassCounts, run_id: str) -> Tuple[str, BadByDay]:
    """Write the bad events under quarantine_path/filter/run_id=.../.

    Those the pass brought back (counts.bad_records), or else those read again from
    counts.files_with_bad_rows. Returns (where, {day: {reason: count}}) for the days in range.
    """
    files = counts.files_with_bad_rows
    dt = inputs.config.events.date_partition
    days = tuple(sorted({day_of(path, dt) for path in files} & set(inputs.days)))
    target = io.join(inputs.config.output.quarantine_path, "filter", f"run_id={run_id}")
    if counts.bad_records is not None:
        return target, write_records(inputs.spark, counts.bad_records, days, target)
    log.info("%d file(s) hold more bad events than a pass brings back: reading them again for the quarantine",
             len(files))
    by_day = write_bad_events(dataclasses.replace(inputs, days=days), files, counts.prefilter_keys, target)
    return target, by_day


def write_records(spark: SparkSession, records: Sequence[str], days: Sequence[str], target: str) -> BadByDay:
    """The quarantine from the records the pass brought back, counted here.

    One file, written through the session's Hadoop file system (its encryption settings
    apply): the records are the lines Spark's JSON writer would write, and a Spark job to write
    a few lines cost about a second of a small run.
    """
    path, fs = hadoop_fs(spark, io.join(target, "part-00000.json"))
    fs.delete(path.getParent(), True)  # what an overwrite replaces
    out = fs.create(path)
    try:
        out.write(bytearray("".join(f"{record}\n" for record in records).encode("utf-8")))
    finally:
        out.close()
    by_day = {day: dict.fromkeys(BAD, 0) for day in days}
    for record in map(json.loads, records):
        if record["dt"] in by_day:
            by_day[record["dt"]][record["reason"]] += 1
    return by_day


def write_bad_events(inputs: PassInputs, files: Sequence[str], prefilter_keys, target: str) -> BadByDay:
    dt, days = inputs.config.events.date_partition, inputs.days
    events = tagged_events(inputs, files, prefilter_keys)
    obs = Observation("idstore_quarantine")
    (
        events.filter(F.col(STATUS) != OK)
        .select(*bad_event_fields(events, dt))
        .observe(obs, *[rows_by_day("dt", days, F.col("reason") == reason).alias(reason) for reason in BAD])
        .write.mode("overwrite")
        .json(target)
    )
    by_reason = {reason: count_by_day(obs.get[reason], days) for reason in BAD}
    return {day: {reason: by_reason[reason][day] for reason in BAD} for day in days}


def bad_total(by_day: Optional[BadByDay], reason: Optional[str] = None) -> int:
    """The bad events of every day, of one reason or of all."""
    reasons = BAD if reason is None else (reason,)
    return sum(bad.get(r, 0) for bad in (by_day or {}).values() for r in reasons)
