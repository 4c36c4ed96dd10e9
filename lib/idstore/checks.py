"""What each job needs of its config, checked before any Spark or AWS work.

The config's load already checked every key's type, choices and the rules between keys; what is
left depends on the job (and the filter's id source). `idstore validate` lists these problems,
the jobs refuse to start on the first (exit 2), so a config that would fail on the cluster fails
on the laptop, before a cluster has booted.
"""
from typing import List

from idstore.config import Config, IdsFrom
from idstore.source.credentials import NO_CREDENTIALS, names_credentials


def _empty(config: Config, *keys: str) -> List[str]:
    problems = []
    for key in keys:
        section, name = key.split(".")
        if not getattr(getattr(config, section), name):
            problems.append(f"{key}: empty; {_WHY[key]}")
    return problems


_WHY = {
    "source.url": "the JDBC URL of the source (jdbc:redshift://host:5439/db)",
    "source.query": "the query that returns the id set",
    "dynamodb.table": "the lookup table the ids are written to",
    "snapshot.path": "the sync keeps its run lock and its record of the table there",
    "events.path": "the archive of failure events (dt=YYYY-MM-DD folders)",
    "output.path": "where the kept events are written",
    "output.quarantine_path": "where the malformed and id-less events are kept",
}


def source_problems(config: Config) -> List[str]:
    """What reading the source needs: a URL, a query and a way to log in."""
    problems = _empty(config, "source.url", "source.query")
    if config.source.url and not names_credentials(config.source):
        problems.append(NO_CREDENTIALS)
    return problems


def sync_problems(config: Config) -> List[str]:
    return [*source_problems(config), *_empty(config, "dynamodb.table", "snapshot.path")]


def filter_problems(config: Config, ids_from: IdsFrom) -> List[str]:
    problems = _empty(config, "events.path", "output.path", "output.quarantine_path")
    if ids_from == IdsFrom.SNAPSHOT:
        problems += _empty(config, "snapshot.path")
    elif ids_from == IdsFrom.DYNAMODB:
        problems += _empty(config, "dynamodb.table")
    else:
        problems += source_problems(config)
    return problems
