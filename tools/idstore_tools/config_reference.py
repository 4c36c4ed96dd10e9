"""docs/config.md, generated from the config defaults (conf/base.toml, idstore_tools/deploy/defaults.toml):
every key's type, default, reader, meaning (its comment there) and the rules the code enforces on it.

    python -m idstore_tools.config_reference [--check]      (make docs)

Types, choices, ranges and what each job requires are derived from the code that checks them; who
reads a key and the rules between keys are written here, and naming a key that no longer exists fails.
"""
import argparse
import dataclasses
import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import tomllib

from idstore.config import (
    BASE_CONF,
    RUN_ID,
    RUN_SECTIONS,
    S3A_ENDPOINT,
    SYNCED_AT,
    Choice,
    ConfigError,
    IdsFrom,
    build_section,
    load_config,
)
from idstore_tools.deploy.config import SECTIONS, TOOLING_DEFAULTS

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "config.md"
TYPED: Mapping[str, type] = {**RUN_SECTIONS, **SECTIONS}
TOOLING = "tooling"

# Who reads each key, found by reading lib/idstore and idstore_tools (grep "\.ttl_days"): by
# section, then the keys that differ. "tooling" is idstore render|deploy|submit|validate, which all
# load and check every key; "(IAM policy)" and the like say what the tooling makes of a run's key.
READ_BY_SECTION = {
    "aws": "sync, filter",
    "source": "sync, filter with --ids source",
    "validation": "sync, filter (event ids are normalised as the synced ids were)",
    "dynamodb": "sync",
    "snapshot": "sync, filter with --ids snapshot (the default); tooling (IAM policy)",
    "cost": "sync",
    "events": "filter",
    "output": "filter",
    "report": "sync, filter; tooling (IAM policy)",
    "cloudwatch": "sync, filter; tooling (IAM policy, template)",
    "deploy": TOOLING,
    "emr": TOOLING,
    "schedule": TOOLING,
    "serverless": TOOLING,
}
READ_BY_KEY = {
    "aws.region": "sync, filter; tooling (the ARNs of the IAM policy, the template)",
    "source.id_column": "sync, filter (the id set's column, whatever --ids)",
    "source.url": "sync, filter with --ids source; tooling (IAM policy of a jdbc:redshift:iam:// URL)",
    "source.user": "sync, filter with --ids source; tooling (IAM policy of a jdbc:redshift:iam:// URL)",
    "source.secret_id": "sync, filter with --ids source; tooling (IAM policy)",
    "source.unload_tempdir": "sync, filter with --ids source; tooling (IAM policy)",
    "validation.max_rejected_fraction": "sync",
    "dynamodb.table": "sync, filter with --ids dynamodb; tooling (IAM policy, validate)",
    "dynamodb.key_attribute": "sync, filter with --ids dynamodb; tooling (validate)",
    "dynamodb.endpoint_url": "sync, filter with --ids dynamodb; tooling (validate)",
    "dynamodb.capacity_fraction": "sync, filter with --ids dynamodb",
    "dynamodb.read_rate": "sync (a full mirror run's scan), filter with --ids dynamodb",
    "dynamodb.write_rate": "sync; tooling (validate)",
    "events.path": "filter; tooling (IAM policy)",
    "events.schema": "filter; tooling (preflight)",
    "events.id_field": "filter; tooling (preflight)",
    "output.path": "filter; tooling (IAM policy)",
    "output.quarantine_path": "sync, filter; tooling (IAM policy)",
    "output.sse_kms_key_id": "sync (its quarantine), filter; tooling (IAM policy)",
    "cloudwatch.alarm_topic_arn": "tooling (template)",
    "deploy.table_billing_mode": "tooling (validate)",
}

# The rules between keys, and those enforced outside the config's load, each written beside the
# key it constrains (idstore/config.py: _check_source, _check_item_attributes, _check_endpoints,
# build_config; idstore/source; idstore_tools/deploy: render, iam, layout, preflight).
RULES = {
    "aws.region": "the one region of a run: `dynamodb.region` is refused",
    "aws.endpoint_url": f"S3A takes it too; a [spark] `{S3A_ENDPOINT}` that disagrees with it (one AWS, the other "
                        "not) is refused",
    "source.url": "`jdbc:redshift://host[:port]/database`, `jdbc:redshift:iam://host[:port]/database` (or "
                  "`cluster-id:region` for the host) or `jdbc:postgresql://...`; one that carries a credential is "
                  "refused; for the tooling's IAM policy, a `jdbc:redshift:iam://` URL names a provisioned "
                  "cluster's host (`cluster.id.region.redshift.amazonaws.com`)",
    "source.user": "with a `jdbc:redshift:iam://` URL, required by the tooling's IAM policy",
    "source.password_env": "not with `source.secret_id`; the variable must be set where the job runs",
    "source.secret_id": "not with `source.password_env`; the secret is JSON with `username` and `password`",
    "source.mode": "`unload` needs `source.unload_tempdir`, `source.unload_iam_role` and a `jdbc:redshift` URL",
    "source.unload_tempdir": "required when `source.mode` is `unload`",
    "source.unload_iam_role": "required when `source.mode` is `unload`",
    "source.attribute_columns": f"none may be `dynamodb.key_attribute`, `{SYNCED_AT}`, `{RUN_ID}` or "
                                "`dynamodb.ttl_attribute`; each a string, number, boolean, date or timestamp "
                                "column of the query",
    "dynamodb.ttl_attribute": f"needs `dynamodb.ttl_days` >= 1; not `dynamodb.key_attribute`, `{SYNCED_AT}` "
                              f"or `{RUN_ID}`",
    "dynamodb.ttl_days": "only with `dynamodb.ttl_attribute`, and then at least 1",
    "dynamodb.endpoint_url": "empty = `aws.endpoint_url`",
    "events.schema": "a Spark DDL struct that holds `events.id_field`",
    "events.id_field": "a scalar field of `events.schema`",
    "deploy.bucket": "required by render and deploy, and by submit to a cluster or to EMR Serverless",
    "deploy.account_id": "12 digits, to render the IAM policy",
    "emr.idle_timeout_s": "0 (off) or 60 to 604800",
    "schedule.cron": "`cron(minutes hours day-of-month month day-of-week year)` with exactly one of "
                     "day-of-month and day-of-week `?`, `rate(n unit)` or `at(yyyy-mm-ddThh:mm:ss)`",
    "schedule.timezone": "an IANA time zone (`UTC`, `Europe/Berlin`)",
    "serverless.application_id": "required for the EMR Serverless files, and for `idstore submit` to EMR "
                                 "Serverless without `--application-id`",
}
# idstore.snapshot.Fingerprint's fields and the keys they come from: what shapes an item, so a
# change makes the next sync a full run (tests/test_config_reference.py holds this to the class)
FINGERPRINT_KEYS = {
    "table": "dynamodb.table",
    "region": "aws.region",
    "key_attribute": "dynamodb.key_attribute",
    "attribute_columns": "source.attribute_columns",
    "ttl_attribute": "dynamodb.ttl_attribute",
    "ttl_days": "dynamodb.ttl_days",
    "id_column": "source.id_column",
}
# The keys that name a login; idstore.checks says which runs need one (NO_CREDENTIALS).
LOGIN_KEYS = ("source.secret_id", "source.password_env")
# Fields of a section's dataclass that are not keys of their own (build_config fills them).
NOT_KEYS = {"dynamodb.region"}

SPARK_RULES = (
    "Any Spark setting, as `\"key\" = value` (quote the dotted key); a table or a list is refused. Values reach "
    "the session as strings (booleans as `true`/`false`); `--set spark.KEY=VALUE` sets one.",
    f"When `aws.endpoint_url` is set, the jobs set `{S3A_ENDPOINT}` (and its region) to it, and path-style "
    f"access for an endpoint that is not AWS; a `{S3A_ENDPOINT}` here that disagrees with it (one AWS, the other "
    "not) is refused.",
)


@dataclass(frozen=True)
class Key:
    section: str
    name: str
    default: str  # the value as written in the file, TOML
    description: str

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"


@dataclass(frozen=True)
class Section:
    name: str
    path: Path
    description: str
    keys: Tuple[Key, ...]


_HEADER = re.compile(r"\[([A-Za-z0-9_-]+)\]")
_KEY = re.compile(r'([A-Za-z0-9_-]+|"[^"\\]*")\s*=\s*(.*)')


def read_defaults(path: Path) -> List[Section]:
    """The sections of a defaults file, each key with its default and its description, read by the
    comment convention of conf/base.toml; what tomllib reads in the file is checked to be the same."""
    found: List[Tuple[str, List[str], List[Key]]] = []  # (name, description lines, keys) of each section
    block: List[str] = []  # the comment lines just read
    under_header = False  # the block started right under a [section] header
    for number, line in enumerate([*path.read_text().splitlines(), ""], 1):
        text = line.strip()
        if text.startswith("#"):
            block.append(text[1:].strip())
            continue
        header = _HEADER.fullmatch(text)
        if not text or header:
            if under_header:
                found[-1][1].extend(block)
            block, under_header = [], bool(header)
            if header:
                found.append((header.group(1), [], []))
            continue
        key = _KEY.fullmatch(text)
        if key is None or not found:
            raise ValueError(f"{path}:{number}: expected a [section], a key = value on one line, a comment "
                             "or a blank line")
        default, comment = _split_comment(key.group(2))
        name = json.loads(key.group(1)) if key.group(1).startswith('"') else key.group(1)
        found[-1][2].append(Key(found[-1][0], name, default, " ".join(part for part in (*block, comment) if part)))
        block, under_header = [], False
    sections = [Section(name, path, " ".join(lines), tuple(keys)) for name, lines, keys in found]
    _check_against_tomllib(path, sections)
    return sections


def _split_comment(text: str) -> Tuple[str, str]:
    """(value, comment) of what follows `key =`: the first # outside a string starts the comment."""
    quote, i = "", 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\" and quote == '"':
                i += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            return text[:i].strip(), text[i + 1:].strip()
        i += 1
    return text.strip(), ""


def _check_against_tomllib(path: Path, sections: Sequence[Section]) -> None:
    data = tomllib.loads(path.read_text())
    read = {s.name: {k.name: _toml_value(k.default) for k in s.keys} for s in sections}
    if read != data:
        raise ValueError(f"{path}: the comment reader and tomllib disagree; keep each value on one line")


def _toml_value(text: str) -> Any:
    return tomllib.loads(f"value = {text}")["value"]


def read_reference(base: Path = BASE_CONF, tooling: Path = TOOLING_DEFAULTS) -> List[Section]:
    """Every section of both defaults files: the jobs', then the tooling's."""
    return read_defaults(base) + read_defaults(tooling)


# -- what the code says ------------------------------------------------------------------
def type_text(typ: Any) -> str:
    if typ == Tuple[str, ...]:
        return "list of str"
    if isinstance(typ, type) and issubclass(typ, Choice):
        return "one of " + ", ".join(_code(json.dumps(choice.value)) for choice in typ)
    return typ.__name__


# each number key is offered -1, 0, 1 and just over 1; what build_section accepts names its range
_PROBES = {int: (-1, 0, 1, 2), float: (-1.0, 0.0, 1.0, 1.5)}
_RANGES = {
    (True, True, True, True): "",
    (False, True, True, True): ">= 0",
    (False, False, True, True): ">= 1",
    (False, True, True, False): "0 to 1",
}


def range_text(section: Section, name: str) -> str:
    """The range the config's load (build_section) accepts for a number key; '' for other keys."""
    cls = TYPED[section.name]
    fields = {f.name: f.type for f in dataclasses.fields(cls)}
    if fields[name] not in _PROBES:
        return ""
    values = {key.name: _toml_value(key.default) for key in section.keys}
    values.update({field: "" for field in fields if field not in values})  # dynamodb.region, a str
    accepted = tuple(_accepts(section.name, cls, {**values, name: probe}) for probe in _PROBES[fields[name]])
    if accepted not in _RANGES:
        raise ValueError(f"{section.name}.{name}: the load accepts {accepted} of {_PROBES[fields[name]]}; "
                         "add the range to config_reference._RANGES")
    return _RANGES[accepted]


def _accepts(section: str, cls: type, values: Mapping[str, Any]) -> bool:
    try:
        build_section(section, cls, values)
    except ConfigError:
        return False
    return True


def required_by() -> Dict[str, List[str]]:
    """{key: the runs that refuse to start while it is empty}, from idstore.checks run on the defaults
    with every text key emptied, then with a URL, so that the login is checked too."""
    from idstore.checks import filter_problems, sync_problems
    from idstore.source.credentials import NO_CREDENTIALS

    runs = {"sync": sync_problems}
    runs.update({f"filter with --ids {ids.value}": (lambda config, ids=ids: filter_problems(config, ids))
                 for ids in IdsFrom})
    emptied = [f"{name}.{f.name}=" for name, cls in RUN_SECTIONS.items() for f in dataclasses.fields(cls)
               if f.type is str and f"{name}.{f.name}" not in NOT_KEYS]
    configs = (load_config(None, emptied), load_config(None, [*emptied, "source.url=jdbc:postgresql://host/db"]))
    needed: Dict[str, List[str]] = defaultdict(list)
    for run, problems in runs.items():
        for problem in (p for config in configs for p in problems(config)):
            empty = re.match(r"([a-z_]+\.[a-z_]+): empty;", problem)
            if problem == NO_CREDENTIALS:
                keys: Sequence[str] = LOGIN_KEYS
            elif empty:
                keys = (empty.group(1),)
            else:
                raise ValueError(f"idstore.checks has a problem this reference cannot place: {problem!r}")
            for key in keys:
                if run not in needed[key]:
                    needed[key].append(run)
    return {key: _collapse_filter(runs) for key, runs in needed.items()}


def _collapse_filter(runs: List[str]) -> List[str]:
    """'filter' in place of a filter run with each --ids."""
    every = [f"filter with --ids {ids.value}" for ids in IdsFrom]
    if not all(run in runs for run in every):
        return runs
    collapsed: List[str] = []
    for run in ("filter" if run in every else run for run in runs):
        if run not in collapsed:
            collapsed.append(run)
    return collapsed


def s3_location_keys() -> List[str]:
    """The keys the tooling turns into S3 permissions (idstore_tools.deploy.layout.data_locations)."""
    from idstore_tools.deploy.config import load_tooling_config
    from idstore_tools.deploy.layout import data_locations

    return [key for key, _path, _read_only in data_locations(load_tooling_config(None))]


def read_by(key: Key) -> str:
    return READ_BY_KEY.get(key.dotted, READ_BY_SECTION.get(key.section, ""))


def rules(section: Section, key: Key, required: Mapping[str, List[str]], s3_keys: Sequence[str]) -> List[str]:
    found = [range_text(section, key.name)]
    if key.dotted in LOGIN_KEYS and key.dotted in required:
        found.append(f"a login is required by {_and(required[key.dotted])}: `source.secret_id`, "
                     "`source.password_env` or a `jdbc:redshift:iam://` URL")
    elif key.dotted in required:
        found.append(f"required by {_and(required[key.dotted])}")
    found.append(RULES.get(key.dotted, ""))
    if key.dotted in FINGERPRINT_KEYS.values():
        found.append("a change makes the next sync a full run")
    if key.dotted in s3_keys:
        found.append("an `s3://` location when the tooling renders the IAM policy")
    return [rule for rule in found if rule]


# -- checks ------------------------------------------------------------------------------
_MENTION = re.compile(r"(?<![\w/.$-])(" + "|".join(TYPED) + r")\.([a-z_]+)\b")


def reference_problems(sections: Sequence[Section]) -> List[str]:
    """What keeps the page from being written: a key without a description, a key without a
    reader, and a key named here or in a comment that the defaults do not hold."""
    keys = {key.dotted: key for section in sections for key in section.keys}
    problems = [f"{name}: no description (a comment above it or after its value)"
                for name, key in keys.items() if not key.description]
    problems += [f"{name}: no reader in READ_BY_SECTION or READ_BY_KEY"
                 for name, key in keys.items() if key.section in TYPED and not read_by(key)]
    named = {
        "READ_BY_KEY": READ_BY_KEY, "RULES": RULES, "FINGERPRINT_KEYS": FINGERPRINT_KEYS.values(),
        "LOGIN_KEYS": LOGIN_KEYS,
    }
    for where, names in named.items():
        problems += [f"{where}: {name} is not a key of the defaults" for name in names if name not in keys]
    problems += [f"READ_BY_SECTION: [{name}] is not a section of the defaults"
                 for name in READ_BY_SECTION if name not in {s.name for s in sections}]
    texts = {**{f"{k.dotted}'s comment": k.description for k in keys.values()},
             **{f"{s.name}'s comment": s.description for s in sections},
             **{f"RULES[{name!r}]": text for name, text in RULES.items()},
             **{f"READ_BY_KEY[{name!r}]": text for name, text in READ_BY_KEY.items()}}
    for where, text in texts.items():
        problems += [f"{where} names {m.group(0)}, not a key" for m in _MENTION.finditer(text)
                     if m.group(0) not in keys and m.group(0) not in NOT_KEYS]
    return problems


# -- the page ----------------------------------------------------------------------------
def _code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text.replace('|', chr(92) + '|')}{pad}{fence}"


def _cell(text: str) -> str:
    """`text` in a table cell: | escaped everywhere, < outside code spans (it would open an HTML tag)."""
    parts = re.split(r"(`[^`]*`)", text.replace("|", "\\|"))
    return "".join(part if part.startswith("`") else part.replace("<", "&lt;") for part in parts)


def _and(items: Sequence[str]) -> str:
    return " and ".join(items) if len(items) < 3 else ", ".join(items[:-1]) + " and " + items[-1]


def _rel(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else path.name


def _intro(sections: Sequence[Section]) -> List[str]:
    from idstore.pipeline.jobs import SET_HELP

    tooling_names = ", ".join(f"`[{name}]`" for name in SECTIONS)
    toc = " · ".join(f"[`[{s.name}]`](#{s.name})" for s in sections)
    return [
        "# Configuration reference",
        "",
        "<!-- Generated by `make docs` (python -m idstore_tools.config_reference) from conf/base.toml,",
        "     tools/idstore_tools/deploy/defaults.toml and the code that checks them. Do not edit: change",
        "     a key's comment in its defaults file, or the rules in the generator, and run `make docs`. -->",
        "",
        "Both jobs read one TOML config, built in layers, each over the one before:",
        "",
        "1. `conf/base.toml` (in the wheel as `idstore/base.toml`): every key the jobs read, with its default.",
        f"2. For `idstore render|deploy|submit|validate` only: `tools/idstore_tools/deploy/defaults.toml`, the "
        f"keys of {tooling_names}.",
        "3. The `--config FILE` of the command line, a local path or `s3://bucket/key` (`--conf` is the old "
        "spelling): only the keys that differ from the defaults.",
        f"4. `--set SECTION.KEY=VALUE`: {SET_HELP}",
        "",
        "An unknown section or key is refused, as is a value of the wrong type, out of range or against a rule "
        "between keys: the command exits 2 naming the key, before Spark starts. A job also refuses to start "
        "without what it needs (`required by` below); `idstore render`, `deploy` and `submit` refuse a config "
        "either job would fail on, and `idstore validate` lists those problems among its checks. The jobs "
        "accept the tooling's sections in their file and ignore them. No key holds a secret: the source's "
        "password comes from `source.password_env` or `source.secret_id`.",
        "",
        "How to read the tables:",
        "",
        "- **Key**: `section.key`, as `--set` takes it.",
        "- **Type**: `str`, `int`, `float` (an integer is taken too), `bool`, `list of str` (a TOML array of "
        "strings), or `one of` the values listed.",
        "- **Default**: the value in the defaults file, as TOML.",
        "- **Read by**: the job that reads the key: `sync`, `filter` (with the `--ids` it needs, when only "
        "then), or `tooling`, which is `idstore render|deploy|submit|validate`; the parentheses say what the "
        "tooling makes of a job's key (its IAM policy, CloudFormation template, `validate`'s checks, or the "
        "preflight every command runs).",
        "- **Meaning**: the key's comment in its defaults file.",
        "- **Rule**: the range and the rules between keys that the config's load enforces, what each run "
        "requires before it starts (`required by`), and the tooling's own checks.",
        "",
        toc,
        "",
    ]


def _table(section: Section, required: Mapping[str, List[str]], s3_keys: Sequence[str]) -> List[str]:
    fields = {f.name: f.type for f in dataclasses.fields(TYPED[section.name])}
    lines = ["| Key | Type | Default | Read by | Meaning | Rule |", "|---|---|---|---|---|---|"]
    for key in section.keys:
        cells = (_code(key.dotted), type_text(fields[key.name]), _code(key.default), _cell(read_by(key)),
                 _cell(key.description), _cell("; ".join(rules(section, key, required, s3_keys))))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _spark(section: Section) -> List[str]:
    from idstore.spark import JOB_DEFAULTS, MIN_SCAN_TASKS_KEY, SCAN_TASK_BYTES

    scan = (f"The filter splits the archive's scan into a task per {SCAN_TASK_BYTES // 2**20} MB, at least 2 "
            f"and at most 8 a core (`{MIN_SCAN_TASKS_KEY}`), unless a key here sets it.")
    lines = [_cell(section.description), "", *(f"- {_cell(rule)}" for rule in (*SPARK_RULES, scan)),
             "- Read by: sync, filter. The jobs' own settings, which a key here replaces:", "",
             "| Setting | Value |", "|---|---|"]
    lines += [f"| {_code(name)} | {_code(value)} |" for name, value in JOB_DEFAULTS.items()]
    return lines


def render_page(sections: Optional[Sequence[Section]] = None) -> str:
    """docs/config.md as Markdown; ValueError naming each problem when the reference is incomplete."""
    sections = read_reference() if sections is None else sections
    problems = reference_problems(sections)
    if problems:
        raise ValueError("the config reference is incomplete:\n  " + "\n  ".join(problems))
    required, s3_keys = required_by(), s3_location_keys()
    lines = _intro(sections)
    heading = ""
    for section in sections:
        if _rel(section.path) != heading:
            heading = _rel(section.path)
            whose = "the deploy tooling's" if section.name in SECTIONS else "the jobs'"
            lines += [f"## Defaults in {heading} ({whose} keys)", ""]
        lines += [f"### [{section.name}]", ""]
        if section.name == "spark":
            lines += _spark(section)
        else:
            if section.description:
                lines += [_cell(section.description), ""]
            lines += _table(section, required, s3_keys)
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m idstore_tools.config_reference",
                                     description="Write docs/config.md from the config defaults.")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the page differs")
    parser.add_argument("--out", type=Path, default=PAGE, help=f"the page (default {_rel(PAGE)})")
    args = parser.parse_args(argv)
    try:
        page = render_page()
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.check:
        if not args.out.exists() or args.out.read_text() != page:
            print(f"{args.out} is stale: run make docs", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(page)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
