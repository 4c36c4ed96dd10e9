"""Running a job from a command line: args -> config -> session -> job -> report -> exit code.

Shared by the spark-submit entry points in jobs/ and by `idstore sync|filter`.
"""
import logging
import os
import re
import sys
import uuid
from datetime import datetime, timezone
from typing import Mapping, Optional, Sequence

from idstore.config import Config, load_config
from idstore.errors import FAILED, OK, USAGE, ConfigError, exit_code
from idstore.pipeline.jobs import JOBS, Job
from idstore.pipeline.report import Outcome, RunReport, redacted_config, write_report
from idstore.redaction import RedactingFilter, scrubbed

log = logging.getLogger(__name__)


def run_job(name: str, argv: Optional[Sequence[str]] = None, master: Optional[str] = None,
            base_spark_conf: Optional[Mapping[str, str]] = None, prog: Optional[str] = None) -> int:
    """Run job `name`; `master` and `base_spark_conf` (under the config's [spark]) for local runs only.

    A config that fails its checks (the load's, then what this job needs) exits 2 before Spark starts.
    """
    job = JOBS[name]
    args, options = job.parse(argv, prog)
    configure_logging(args.verbose)
    try:
        config = load_config(args.conf, args.overrides)
        problems = job.problems(config, options)
        if problems:
            raise ConfigError("; ".join(problems))
    except ConfigError as exc:
        print(f"idstore {job.name}: config error: {exc}", file=sys.stderr)
        return USAGE
    report = RunReport(job=job.name, run_id=args.run_id or new_run_id(), config=redacted_config(config),
                       dry_run=options.dry_run)

    from idstore.spark import build_session, session_conf

    spark = build_session(f"idstore-{job.name}", session_conf(config, base_spark_conf), master=master)
    try:
        code = _run(job, spark, config, report, options)
    finally:
        spark.stop()
    _publish(config, report)
    return code


def _run(job: Job, spark, config: Config, report: RunReport, options) -> int:
    """The job's run, ended in the report; its exit code (idstore.errors.EXIT_CODES)."""
    try:
        job.run(spark, config, report, os.environ, options)
    except Exception as exc:  # noqa: BLE001 - every failure ends in a report and an exit code
        code = exit_code(exc)
        if code == FAILED:
            log.exception("%s run %s failed", job.name, report.run_id)
        report.finish(Outcome.of_exit_code(code), _message(exc, code))
        return code
    report.finish(Outcome.DRY_RUN if options.dry_run else Outcome.SUCCEEDED)
    return OK


def _message(exc: BaseException, code: int) -> str:
    if code == USAGE:
        return f"config error: {exc}"
    return _short(exc) if code == FAILED else str(exc)


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


def _publish(config: Config, report: RunReport) -> None:
    """The JSON report, CloudWatch metrics when [cloudwatch] is on, and the summary on stdout."""
    from idstore.metrics import publish_run_metrics

    try:
        where = write_report(config, report)
    except Exception as exc:  # noqa: BLE001 - a report that cannot be written must not hide the outcome
        log.error("could not write the run report: %s", exc)
        where = None
    publish_run_metrics(config, report)  # never raises
    lines = report.summary_lines()
    lines.append(f"  report: {where}" if where else "  report: none written (report.path is empty)")
    print("\n".join(scrubbed(lines)), flush=True)


def _short(exc: BaseException) -> str:
    """What failed, in a line: a Python error raised in a task, else the JVM's or Python's message.

    A Py4J error carries a whole JVM stack trace; when a task's Python code failed (the writer
    naming what it did not write, say), the Spark message wraps that error's traceback.
    """
    java = getattr(exc, "java_exception", None)  # Py4JJavaError: the JVM's own message says what failed
    text = (str(java.toString()) if java is not None else str(exc)).strip() or type(exc).__name__
    task_error = _task_python_error(text)
    first = task_error or text.splitlines()[0]
    return (first if task_error else f"{type(exc).__name__}: {first}")[:2000]


_PYTHON_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Failed|Refused)): (.+)$")


def _task_python_error(text: str) -> str:
    """The `Name: message` line ending the first Python traceback in `text`, or ''."""
    _, found, rest = text.partition("Traceback (most recent call last):")
    if not found:
        return ""
    for line in rest.splitlines():
        match = _PYTHON_ERROR_LINE.match(line)
        if match:
            return f"{match.group(1).rsplit('.', 1)[-1]}: {match.group(2)}"
    return ""
