"""What both jobs share: their command line, run ids, outcomes and run reports."""
import argparse
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Dict, List, Optional, Sequence

from idstore import io
from idstore.config import Config
from idstore.secrets import REDACTED, RedactingFilter, looks_secret, scrubbed

log = logging.getLogger(__name__)

# Exit codes, documented in the README.
OK, FAILED, USAGE, REFUSED = 0, 1, 2, 3


class RunRefused(RuntimeError):
    """A safety guard stopped the run before it changed anything."""


class RunFailed(RuntimeError):
    """The run did not complete; the message says what is missing."""


def job_parser(job: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=job, description=description)
    parser.add_argument(
        "--conf", metavar="FILE", help="TOML config, a local path or s3://bucket/key; layered over conf/base.toml",
    )
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one config key (repeatable); the value is read as the key's type",
    )
    parser.add_argument("--run-id", help="id of this run in reports and snapshots (default: a new UTC timestamp id)")
    parser.add_argument("--dry-run", action="store_true", help="read and validate, print the plan, write nothing")
    parser.add_argument(
        "--force", action="store_true",
        help="mirror mode: delete even past dynamodb.max_delete_fraction or with an empty source",
    )
    parser.add_argument("--from", dest="start", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="filter: first day to read (inclusive)")
    parser.add_argument("--to", dest="end", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="filter: last day to read (inclusive)")
    parser.add_argument(
        "--ids", choices=("snapshot", "dynamodb", "source"), default="snapshot",
        help="filter: where the id set comes from (default: the latest complete sync snapshot)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def redacted_config(config: Config) -> Dict[str, Any]:
    """The config for a report: [spark] values whose names look secret are masked."""
    data = config.redacted()
    data["spark"] = {k: REDACTED if looks_secret(k) else v for k, v in data.get("spark", {}).items()}
    return data


@dataclass
class RunReport:
    """What a run did, as a JSON report and a human summary."""

    job: str
    run_id: str
    config: Dict[str, Any]
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    outcome: str = "running"
    error: str = ""
    counts: Dict[str, Any] = field(default_factory=dict)
    details: Dict[str, Any] = field(default_factory=dict)
    durations_s: Dict[str, float] = field(default_factory=dict)
    metrics: Dict[str, float] = field(default_factory=dict)  # CloudWatch figures, by idstore.metrics name
    _clock: float = field(default_factory=time.monotonic, repr=False)

    def timed(self, name: str):
        return _Timer(self, name)

    def finish(self, outcome: str, error: str = "") -> None:
        self.outcome, self.error = outcome, error
        self.durations_s["total"] = round(time.monotonic() - self._clock, 3)

    def as_dict(self) -> Dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        data["finished_at"] = datetime.now(timezone.utc).isoformat()
        return data

    def summary_lines(self) -> List[str]:
        lines = [f"idstore {self.job} run {self.run_id}: {self.outcome.upper()}"]
        if self.error:
            lines.append(f"  error: {self.error}")
        lines += [f"  {name}: {_fmt(value)}" for name, value in self.counts.items()]
        lines += [
            f"  {name}: {_fmt(value)}" for name, value in self.details.items() if not isinstance(value, (dict, list))
        ]
        lines.append("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in self.durations_s.items()))
        return lines


class _Timer:
    def __init__(self, report: RunReport, name: str):
        self.report, self.name = report, name
        self.seconds = 0.0

    def __enter__(self) -> "_Timer":
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = round(time.monotonic() - self.started, 3)
        self.report.durations_s[self.name] = self.seconds


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
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


def parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.start and args.end and args.start > args.end:
        parser.error(f"--from {args.start} is after --to {args.end}")
    return args
