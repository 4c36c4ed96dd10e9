"""The two jobs, one record each: name, description, command line, typed options, run, metrics.

Importing this module loads no job: a job's code, and pyspark with it, is imported when it runs,
so `--help` and the deploy tooling (which reads the metrics for the dashboard) stay light.
"""
import argparse
from dataclasses import dataclass
from datetime import date
from typing import Any, Callable, List, Optional, Sequence, Tuple

from idstore import metrics as M
from idstore.checks import filter_problems, sync_problems
from idstore.config import Config, IdsFrom
from idstore.errors import exit_codes_text
from idstore.pipeline.options import FilterOptions, SyncOptions

SET_HELP = (
    "override one config key (repeatable). VALUE is read as the key's type, in TOML or plain: "
    "numbers (8, 0.5, 1_000), booleans (true, false), lists as TOML (['a', \"b\"]) or comma-separated (a,b), "
    "strings as they are (spaces and '=' kept) or TOML-quoted. spark.KEY=VALUE sets a Spark setting."
)


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]  # the job's own flags
    options: Callable[[argparse.Namespace], Any]  # its typed options from the parsed flags
    problems: Callable[[Config, Any], List[str]]  # (config, options): what the run needs that the config lacks
    run: Callable[..., None]  # (spark, config, report, environ, options): fills report.result
    metrics: Tuple[str, ...]  # the CloudWatch figures it publishes beside the run metrics

    def parser(self, prog: Optional[str] = None) -> argparse.ArgumentParser:
        """What both jobs take (the config, overrides, the run id, logging) and the job's own flags.

        `prog`: how usage names the program (`idstore sync`); by default the script's name, as
        spark-submit runs it.
        """
        parser = argparse.ArgumentParser(prog=prog, description=self.description, epilog=exit_codes_text())
        parser.add_argument("--config", "--conf", dest="conf", metavar="FILE", required=True,
                            help="TOML config, a local path or s3://bucket/key; layered over the defaults "
                                 "(conf/base.toml). --conf is the old spelling, deprecated")
        parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                            help=SET_HELP)
        parser.add_argument("--run-id",
                            help="id of this run in reports and snapshots (default: a new UTC timestamp id)")
        parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        self.add_arguments(parser)
        return parser

    def parse(self, argv: Optional[Sequence[str]], prog: Optional[str] = None) -> Tuple[argparse.Namespace, Any]:
        """The flags and the job's options; a flag of the other job is a usage error (exit 2) naming it."""
        parser = self.parser(prog)
        args = parser.parse_args(argv)
        start, end = getattr(args, "start", None), getattr(args, "end", None)
        if start and end and start > end:
            parser.error(f"--from {start} is after --to {end}")
        return args, self.options(args)


def _sync_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="read and validate, print the plan (puts, deletes, rate, time), write nothing")
    parser.add_argument("--force", action="store_true",
                        help="mirror mode: delete even past dynamodb.max_delete_fraction or with an empty source")
    parser.add_argument("--full", action="store_true",
                        help="write every id (and in mirror mode scan the table) even when a delta run could; "
                             "repairs changes made to the table behind idstore's back")
    parser.add_argument("--break-lock", action="store_true",
                        help="take the table's run lock even from a run that still holds it (an operator who "
                             "knows that run is gone)")


def _filter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="list the days and files it would read, the id set and the join, "
                             "estimate the time; write nothing")
    parser.add_argument("--from", dest="start", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="first day to read (inclusive; default: the first day in events.path)")
    parser.add_argument("--to", dest="end", type=date.fromisoformat, metavar="YYYY-MM-DD",
                        help="last day to read (inclusive; default: the last day in events.path)")
    parser.add_argument("--ids", choices=[choice.value for choice in IdsFrom], default=IdsFrom.SNAPSHOT.value,
                        help="where the id set comes from (default: the latest complete sync snapshot)")


def _run_sync(*args: Any) -> None:
    from idstore.pipeline.sync import run_sync

    run_sync(*args)


def _run_filter(*args: Any) -> None:
    from idstore.pipeline.filter import run_filter

    run_filter(*args)


SYNC = Job(
    name="sync",
    description="Read a program's ids from Redshift (JDBC), validate them and write them to DynamoDB.",
    add_arguments=_sync_arguments,
    options=lambda args: SyncOptions(args.dry_run, args.force, args.full, args.break_lock),
    problems=lambda config, options: sync_problems(config),
    run=_run_sync,
    metrics=(M.ITEMS_PUT, M.ITEMS_DELETED, M.ITEMS_REJECTED, M.ITEMS_UNCHANGED, M.CONSUMED_WCU, M.CONSUMED_RCU,
             M.THROTTLES, M.RUN_COST_USD, M.ITEMS_IMPORTED, M.IMPORT_GB, M.IMPORT_SECONDS, M.IMPORT_COST_USD,
             M.WRITE_PATH_COST_USD),
)
FILTER = Job(
    name="filter",
    description="Keep the failure events whose product id is in the id set; write Parquet by day.",
    add_arguments=_filter_arguments,
    options=lambda args: FilterOptions(args.dry_run, args.start, args.end, IdsFrom(args.ids)),
    problems=lambda config, options: filter_problems(config, options.ids_from),
    run=_run_filter,
    metrics=(M.EVENTS_READ, M.EVENTS_MATCHED, M.EVENTS_QUARANTINED),
)
JOBS = {job.name: job for job in (SYNC, FILTER)}
