"""The filter's plan and result, typed, and how a run's FilterResult renders into its report."""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

from idstore import metrics as M
from idstore.config import IdsFrom, MissingDays
from idstore.events.join import JoinChoice
from idstore.events.passes import PassCounts
from idstore.events.quarantine import BadByDay, bad_total
from idstore.events.status import BAD, MALFORMED, MISSING_ID
from idstore.pipeline.report import JobResult

PER_DAY_COLUMNS = ("read", "matched", MALFORMED, MISSING_ID, "output_files", "output_bytes")


@dataclass(frozen=True)
class FilterPlan:
    """What a filter run would read and how: the dry run's answer."""

    days: Sequence[str]
    files: int
    bytes: int
    ids: int
    ids_from: IdsFrom
    join: JoinChoice
    estimated_s: float
    windowed: bool = True  # --from or --to given; else every day in the archive
    missing: Sequence[str] = ()  # days of the window without a folder

    def text(self) -> str:
        span = self.days[0] if len(self.days) == 1 else f"{self.days[0]} .. {self.days[-1]}"
        every = "" if self.windowed else ", every day in events.path (no --from/--to)"
        missing = f"; {len(self.missing)} day(s) of the window missing: {', '.join(self.missing)}" * bool(self.missing)
        return (
            f"would read {len(self.days)} day(s) ({span}{every}): {self.files:,} files, {self.bytes / 1e6:,.1f} MB"
            f"{missing}; {self.ids:,} ids from {self.ids_from}; {self.join.why}; about {self.estimated_s:,.0f} s on "
            "this cluster's cores; dry run: nothing written"
        )


@dataclass
class FilterResult(JobResult):
    """What a filter run found and did, stage by stage; empty where a stage did not run (yet)."""

    ids_from: IdsFrom
    days: Sequence[str] = ()
    missing_days: Sequence[str] = ()  # days of --from..--to without a folder
    windowed: bool = False  # --from or --to given
    ids: Optional[int] = None
    join: Optional[JoinChoice] = None
    candidate_test: str = ""  # set when the pass pre-filters
    json_parser: str = ""  # set for a JSON archive
    plan: Optional[FilterPlan] = None  # a dry run's
    corrupt_files: Mapping[str, str] = field(default_factory=dict)  # path: problem
    passed: Optional[PassCounts] = None
    cleared_days: List[str] = field(default_factory=list)  # read, kept nothing: their old output removed
    quarantine: str = ""
    bad_per_day: BadByDay = field(default_factory=dict)
    output_path: str = ""
    output: Optional[Mapping[str, Mapping[str, int]]] = None  # {day: {files, bytes}}, once written
    reruns: int = 0  # stages Spark ran more than once: a map stage's observed counts are added again

    def missing_text(self, dt: str, setting: MissingDays) -> str:
        """The missing days, and what the run makes of them."""
        named = ", ".join(self.missing_days)
        if setting == MissingDays.SKIP:
            return (f"{len(self.missing_days)} day(s) of the window have no {dt}= folder and were skipped: {named} "
                    "(events.missing_days = skip)")
        done = "the other days were filtered; " if self.days else ""
        return (f"input not ready: {len(self.missing_days)} day(s) of the window have no {dt}= folder yet: {named}; "
                f"{done}run the window again when they have arrived (events.missing_days = fail)")

    @property
    def unread_days(self) -> List[str]:
        return [day for day in self.days if not self.passed.read_per_day[day]] if self.passed else []

    def per_day(self) -> Dict[str, Dict[str, int]]:
        if self.passed is None or self.output is None:
            return {}
        return {
            day: {
                "read": self.passed.read_per_day[day],
                "matched": self.passed.matched_per_day[day],
                **{reason: self.bad_per_day.get(day, {}).get(reason, 0) for reason in BAD},
                "output_files": self.output[day]["files"],
                "output_bytes": self.output[day]["bytes"],
            }
            for day in self.days
        }

    def counts(self) -> Dict[str, Any]:
        counts: Dict[str, Any] = {}
        if self.ids is not None:
            counts["ids"] = self.ids
        if self.plan:
            counts.update(files=self.plan.files, bytes=self.plan.bytes)
        if self.passed and self.output is not None:
            counts.update(
                events_read=self.passed.read, matched=self.passed.matched,
                **{reason: bad_total(self.bad_per_day, reason) for reason in BAD},
                output_files=sum(d["files"] for d in self.output.values()),
                output_bytes=sum(d["bytes"] for d in self.output.values()),
                corrupt_files_skipped=len(self.corrupt_files),
            )
        return counts

    def details(self) -> Dict[str, Any]:
        details: Dict[str, Any] = {}
        if self.days or self.missing_days:
            details.update(days=list(self.days), ids_from=self.ids_from)
        if self.missing_days:
            details["missing_days"] = list(self.missing_days)
        if self.join:
            details["join"] = self.join.why
        for name in ("candidate_test", "json_parser"):
            if getattr(self, name):
                details[name] = getattr(self, name)
        if self.plan:
            details.update(plan=self.plan.text(), estimated_s=self.plan.estimated_s)
        if self.corrupt_files:
            details["corrupt_files"] = dict(self.corrupt_files)
        if self.quarantine and bad_total(self.bad_per_day):
            details["quarantine"] = self.quarantine
        if self.output is not None:
            details.update(per_day=self.per_day(), output=self.output_path)
            finished = {"cleared_days": self.cleared_days, "days_without_events": self.unread_days,
                        "skipped_files": dict(self.corrupt_files)}
            details.update({name: value for name, value in finished.items() if value})
        if self.reruns:
            details["counts_note"] = self.counts_note()
        return details

    def counts_note(self) -> str:
        return f"{self.reruns} stage(s) ran more than once; events_read and the per-day read counts may be too high"

    def metrics(self) -> Dict[str, float]:
        if self.passed is None or self.output is None:
            return {}
        return {M.EVENTS_READ: self.passed.read, M.EVENTS_MATCHED: self.passed.matched,
                M.EVENTS_QUARANTINED: bad_total(self.bad_per_day)}


def per_day_table(per_day: Mapping[str, Mapping[str, int]]) -> List[str]:
    """The per-day counts as aligned text lines for the log."""
    lines = ["day         " + " ".join(f"{c:>13}" for c in PER_DAY_COLUMNS)]
    for day, values in per_day.items():
        lines.append(f"{day:<11} " + " ".join(f"{values[c]:>13,}" for c in PER_DAY_COLUMNS))
    return lines
