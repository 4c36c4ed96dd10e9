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
from idstore.redaction import REDACTED, RedactingFilter, looks_secret, scrubbed

log = logging.getLogger(__name__)

# Exit codes, documented in the README.
OK, FAILED, USAGE, REFUSED = 0, 1, 2, 3


class RunRefused(RuntimeError):
    """A safety guard stopped the run before it changed anything."""


class RunFailed(RuntimeError):
    """The run did not complete; the message says what is missing."""


SET_HELP = (
    "override one config key (repeatable). VALUE is read as the key's type, in TOML or plain: "
    "numbers (8, 0.5, 1_000), booleans (true, false), lists as TOML (['a', \"b\"]) or comma-separated (a,b), "
    "strings as they are (spaces and '=' kept) or TOML-quoted. spark.KEY=VALUE sets a Spark setting."
)
DESCRIPTIONS = {
    "sync": "Read a program's ids from Redshift (JDBC), validate them and write them to DynamoDB.",
    "filter": "Keep the failure events whose product id is in the id set; write Parquet by day.",
}
EPILOG = "exit codes: 0 success, 1 the run failed, 2 configuration or usage error, 3 refused by a safety guard"


def _job_parser(job: str) -> argparse.ArgumentParser:
    """What both jobs take: the config, overrides, the run id, a dry run, logging."""
    parser = argparse.ArgumentParser(prog=job, description=DESCRIPTIONS[job], epilog=EPILOG)
    parser.add_argument(
        "--conf", metavar="FILE", help="TOML config, a local path or s3://bucket/key; layered over conf/base.toml",
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help=SET_HELP)
    parser.add_argument("--run-id", help="id of this run in reports and snapshots (default: a new UTC timestamp id)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def sync_parser() -> argparse.ArgumentParser:
    parser = _job_parser("sync")
    parser.add_argument("--dry-run", action="store_true",
                        help="read and validate, print the plan (puts, deletes, rate, time), write nothing")
    parser.add_argument(
        "--force", action="store_true",
        help="mirror mode: delete even past dynamodb.max_delete_fraction or with an empty source",
    )
    parser.add_argument("--full", action="store_true",
                        help="write every id (and in mirror mode scan the table) even when a delta run could; "
                             "repairs changes made to the table behind idstore's back")
    parser.add_argument("--break-lock", action="store_true",
                        help="take the table's run lock even from a run that still holds it (an operator who "
                             "knows that run is gone)")
    return parser


def filter_parser() -> argparse.ArgumentParser:
    parser = _job_parser("filter")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the days and files it would read, the id set and the join, "
                             "estimate the time; write nothing")
    parser.add_argument("--from", dest="start", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="first day to read (inclusive; default: the first day in events.path)")
    parser.add_argument("--to", dest="end", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="last day to read (inclusive; default: the last day in events.path)")
    parser.add_argument(
        "--ids", choices=("snapshot", "dynamodb", "source"), default="snapshot",
        help="where the id set comes from (default: the latest complete sync snapshot)",
    )
    return parser


PARSERS = {"sync": sync_parser, "filter": filter_parser}


def parse_job_args(job: str, argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The job's own flags; one that belongs to the other job is a usage error (exit 2) naming it."""
    parser = PARSERS[job]()
    args = parser.parse_args(argv)
    if getattr(args, "start", None) and getattr(args, "end", None) and args.start > args.end:
        parser.error(f"--from {args.start} is after --to {args.end}")
    return args


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
