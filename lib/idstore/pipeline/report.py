"""A run's outcome and its report: the JSON file, the summary lines and the figures CloudWatch gets.

A job fills a typed result (sync.SyncResult, filter.FilterResult) stage by stage; the report
renders counts, details and metrics from it when asked, so a run that stops half-way still
reports every stage it finished, and no stage reads what another wrote into the report.
"""
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from idstore import io
from idstore.config import Choice, Config
from idstore.errors import INPUT_NOT_READY, OK, REFUSED
from idstore.redaction import REDACTED, looks_secret, scrubbed


class Outcome(Choice):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DRY_RUN = "dry_run"
    FAILED = "failed"
    REFUSED = "refused"
    INPUT_NOT_READY = "input_not_ready"

    @classmethod
    def of_exit_code(cls, code: int) -> "Outcome":
        return {OK: cls.SUCCEEDED, REFUSED: cls.REFUSED, INPUT_NOT_READY: cls.INPUT_NOT_READY}.get(code, cls.FAILED)


class JobResult:
    """What a job found, stage by stage; rendered into the report's three sections."""

    def counts(self) -> Dict[str, Any]:
        return {}

    def details(self) -> Dict[str, Any]:
        return {}

    def metrics(self) -> Dict[str, float]:
        """CloudWatch figures by idstore.metrics name."""
        return {}


def redacted_config(config: Config) -> Dict[str, Any]:
    """The config for a report: [spark] values whose names look secret are masked."""
    data = config.redacted()
    data["spark"] = {k: REDACTED if looks_secret(k) else v for k, v in data.get("spark", {}).items()}
    return data


@dataclass
class RunReport:
    """One run: its id, the typed result its job fills, stage timings and how it ended."""

    job: str
    run_id: str
    config: Dict[str, Any]
    result: JobResult = field(default_factory=JobResult)
    dry_run: bool = False
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    outcome: Outcome = Outcome.RUNNING
    error: str = ""
    durations_s: Dict[str, float] = field(default_factory=dict)
    _clock: float = field(default_factory=time.monotonic, repr=False)

    @property
    def counts(self) -> Dict[str, Any]:
        return self.result.counts()

    @property
    def details(self) -> Dict[str, Any]:
        return self.result.details()

    @property
    def metrics(self) -> Dict[str, float]:
        return self.result.metrics()

    def timed(self, name: str) -> "_Timer":
        return _Timer(self.durations_s, name)

    def finish(self, outcome: Outcome, error: str = "") -> None:
        self.outcome, self.error = Outcome(outcome), error
        self.durations_s["total"] = round(time.monotonic() - self._clock, 3)

    def as_dict(self) -> Dict[str, Any]:
        return {
            "job": self.job, "run_id": self.run_id, "dry_run": self.dry_run, "config": self.config,
            "started_at": self.started_at, "outcome": self.outcome.value, "error": self.error,
            "counts": self.counts, "details": self.details, "durations_s": self.durations_s, "metrics": self.metrics,
            "finished_at": datetime.now(timezone.utc).isoformat(),
        }

    def summary_lines(self) -> List[str]:
        lines = [f"idstore {self.job} run {self.run_id}: {self.outcome.value.upper()}"]
        if self.error:
            lines.append(f"  error: {self.error}")
        lines += [f"  {name}: {_fmt(value)}" for name, value in self.counts.items()]
        lines += [
            f"  {name}: {_fmt(value)}" for name, value in self.details.items() if not isinstance(value, (dict, list))
        ]
        lines.append("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.durations_s.items()))
        return lines


class _Timer:
    """Times a stage into `durations`; `seconds` is there for the stage's own rate figures."""

    def __init__(self, durations: Dict[str, float], name: str):
        self.durations, self.name = durations, name
        self.seconds = 0.0

    def __enter__(self) -> "_Timer":
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = round(time.monotonic() - self.started, 3)
        self.durations[self.name] = self.seconds


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        # seconds and units to a tenth; a figure under 1 (a delta run's dollars) to the millionth
        return f"{value:,.1f}" if abs(value) >= 1 or value == 0 else f"{value:.6f}".rstrip("0").rstrip(".")
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_report(config: Config, report: RunReport) -> Optional[str]:
    """Write the JSON report under report.path/<job>/; returns where, or None when unset."""
    if not config.report.path:
        return None
    target = io.join(config.report.path, report.job, f"run_id={report.run_id}.json")
    io.write_json(target, scrubbed(report.as_dict()), config.aws.endpoint_url, config.aws.region)
    return target

