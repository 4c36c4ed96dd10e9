"""Every rule a config can be checked against without AWS, before anything is rendered, shipped
or started: what each job needs (idstore.checks, the same checks the jobs run at start), the
events' schema and id field (Spark's DDL parser, on a local JVM), and the schedule.

`idstore validate` lists the problems; `render`, `deploy` and `submit` refuse a config that has
any (exit 2, naming the key), so it fails on the laptop, not after a cluster has booted.
"""
import re
from typing import List
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from idstore.checks import filter_problems, sync_problems
from idstore.config import Config, ConfigError, IdsFrom
from idstore_tools.deploy.config import ScheduleConfig, ToolingConfig

# EventBridge Scheduler: cron(minutes hours day-of-month month day-of-week year), rate(n unit), at(...)
_CRON = re.compile(r"cron\((\S+ \S+ \S+ \S+ \S+ \S+)\)")
_RATE = re.compile(r"rate\([1-9][0-9]* (minute|minutes|hour|hours|day|days)\)")
_AT = re.compile(r"at\(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\)")


def schedule_problems(schedule: ScheduleConfig) -> List[str]:
    problems = []
    cron = _CRON.fullmatch(schedule.cron)
    if not (cron or _RATE.fullmatch(schedule.cron) or _AT.fullmatch(schedule.cron)):
        problems.append(f"schedule.cron: {schedule.cron!r} is not an EventBridge Scheduler expression: "
                        "cron(minutes hours day-of-month month day-of-week year), rate(1 day) or at(...)")
    elif cron:
        day_of_month, day_of_week = cron.group(1).split()[2], cron.group(1).split()[4]
        if (day_of_month == "?") == (day_of_week == "?"):
            problems.append(f"schedule.cron: {schedule.cron!r}: exactly one of day-of-month and day-of-week "
                            "must be '?'")
    try:
        ZoneInfo(schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"schedule.timezone: {schedule.timezone!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)")
    return problems


def event_schema_problems(config: Config) -> List[str]:
    """events.schema parsed by Spark, as the filter will parse it, and events.id_field in it."""
    from idstore.events.reader import event_schema
    from idstore.spark import build_session

    build_session("idstore-preflight", {"spark.ui.enabled": "false"}, master="local[1]")  # Spark's DDL parser
    try:
        event_schema(config.events)
    except ConfigError as exc:
        return [str(exc)]
    return []


def config_problems(config: ToolingConfig) -> List[str]:
    """Every problem, each naming its key; [] when both jobs and the schedule can run on it."""
    problems = [*sync_problems(config.run), *filter_problems(config.run, IdsFrom.SNAPSHOT)]
    problems += event_schema_problems(config.run) + schedule_problems(config.schedule)
    return list(dict.fromkeys(problems))  # snapshot.path is the sync's and the filter's


def refuse_bad_config(config: ToolingConfig) -> None:
    problems = config_problems(config)
    if problems:
        raise ConfigError("; ".join(problems))
