"""The filter's quarantine: the malformed and id-less events, each with its reason, day and file.

A second pass, over only the files the filter pass found bad rows in; after a pre-filtered pass,
over only the lines that pass parsed, so the counts agree with the pass's.
"""
import dataclasses
from typing import Dict, Optional, Sequence, Tuple

from pyspark.sql import Observation
from pyspark.sql import functions as F

from idstore import io
from idstore.events.passes import INPUT_FILE, PassCounts, PassInputs, count_by_day, day_of, rows_by_day, tagged_events
from idstore.events.prefilter import CANDIDATE
from idstore.events.reader import CORRUPT
from idstore.events.status import BAD, OK, STATUS

BadByDay = Dict[str, Dict[str, int]]  # {day: {reason: events}}


def quarantine(inputs: PassInputs, counts: PassCounts, run_id: str) -> Tuple[str, BadByDay]:
    """Write the bad events of counts.files_with_bad_rows under quarantine_path/filter/run_id=.../.

    Returns (where, {day: {reason: count}}) for the days in range.
    """
    files = counts.files_with_bad_rows
    dt = inputs.config.events.date_partition
    days = tuple(sorted({day_of(path, dt) for path in files} & set(inputs.days)))
    target = io.join(inputs.config.output.quarantine_path, "filter", f"run_id={run_id}")
    by_day = write_bad_events(dataclasses.replace(inputs, days=days), files, counts.prefilter_keys, target)
    return target, by_day


def write_bad_events(inputs: PassInputs, files: Sequence[str], prefilter_keys, target: str) -> BadByDay:
    dt, days = inputs.config.events.date_partition, inputs.days
    events = tagged_events(inputs, files, prefilter_keys)
    columns = [c for c in events.columns if c not in (STATUS, CORRUPT, dt, INPUT_FILE, CANDIDATE)]
    raw = F.to_json(F.struct(*[F.col(f"`{c}`") for c in columns]))
    if CORRUPT in events.columns:
        raw = F.coalesce(F.col(CORRUPT), raw)
    obs = Observation("idstore_quarantine")
    (
        events.filter(F.col(STATUS) != OK)
        .select(
            F.col(STATUS).alias("reason"),
            F.col(dt).cast("string").alias("dt"),
            F.col(INPUT_FILE).alias("source_file"),
            raw.alias("raw"),
        )
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
