"""Typed, frozen run configuration, layered from TOML files and --set overrides.

Layers: conf/base.toml (every key the jobs read, and its default) -> the --conf file -> --set
section.key=value. Parsed and validated once; every error names the key. The deploy tooling's
sections may sit in the same file: the jobs accept and ignore them (idstore_tools checks them).
"""
import dataclasses
import re
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

if sys.version_info >= (3, 11):
    import tomllib
else:  # EMR 7's python3 is 3.9
    import tomli as tomllib

from idstore.errors import ConfigError
from idstore.redaction import url_credential_options

BASE_CONF = Path(__file__).resolve().parent / "base.toml"
# Attributes the sync writes on every item: when, and by which run, it was last written.
SYNCED_AT, RUN_ID = "synced_at", "run_id"




class Choice(str, Enum):
    """A value from a fixed set: compares equal to its string, and prints and serialises as it."""

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__  # the value in f-strings on every Python (3.11 would print Class.NAME)


class SourceMode(Choice):
    JDBC = "jdbc"
    UNLOAD = "unload"


class Case(Choice):
    KEEP = "keep"
    LOWER = "lower"
    UPPER = "upper"


class WriteMode(Choice):
    UPSERT = "upsert"
    MIRROR = "mirror"  # also deletes the keys that left the set


class CreateMode(Choice):
    """What a sync does when its table does not exist."""

    NEVER = "never"  # the run fails, naming the table: it must be created first
    IMPORT = "import"  # the run creates it by DynamoDB's import from S3, spending no write units


class BillingMode(Choice):
    PAY_PER_REQUEST = "PAY_PER_REQUEST"
    PROVISIONED = "PROVISIONED"


class SyncStrategy(Choice):
    DELTA = "delta"
    FULL = "full"


class EventFormat(Choice):
    JSON = "json"
    PARQUET = "parquet"


class LineValidation(Choice):
    KEPT = "kept"  # only the lines whose id may be in the set are parsed, so checked
    ALL = "all"


class CandidateTest(Choice):
    JVM = "jvm"
    BUILTIN = "builtin"


class MissingDays(Choice):
    """What a filter run does about a day of its window that has no dt= folder."""

    FAIL = "fail"  # filters the other days, then ends as input not ready (exit 4)
    SKIP = "skip"  # filters the other days and succeeds, naming the missing ones


class IdsFrom(Choice):
    """Where the filter's id set comes from."""

    SNAPSHOT = "snapshot"
    DYNAMODB = "dynamodb"
    SOURCE = "source"


@dataclass(frozen=True)
class AwsConfig:
    region: str
    endpoint_url: str  # moto locally; empty on AWS


@dataclass(frozen=True)
class SourceConfig:
    url: str
    query: str
    id_column: str
    user: str
    password_env: str
    secret_id: str
    partitions: int
    fetchsize: int
    ssl: bool
    mode: SourceMode
    unload_tempdir: str
    unload_iam_role: str
    attribute_columns: Tuple[str, ...]
    fetch_ring_buffer: bool  # Redshift driver's enableFetchRingBuffer


@dataclass(frozen=True)
class ValidationConfig:
    trim: bool
    case: Case
    max_rejected_fraction: float


@dataclass(frozen=True)
class DynamoDBConfig:
    table: str
    key_attribute: str
    region: str  # not a key of its own: aws.region, the one region of a run
    endpoint_url: str
    write_rate: float
    capacity_fraction: float
    mode: WriteMode
    max_delete_fraction: float
    max_in_flight: int
    no_progress_timeout_s: float
    ttl_attribute: str
    ttl_days: int
    read_rate: float  # every Scan's RCU/s; 0 = capacity_fraction x provisioned RCU
    strategy: SyncStrategy
    verify_every_runs: int  # every Nth run is full; 0 = never
    verify_after_days: float  # a full run when the last one is older; 0 = never
    lock_lease_s: float
    create: CreateMode
    import_path: str  # with create = import: the s3:// prefix the set is staged under
    import_keep_staging: bool
    create_billing_mode: BillingMode  # the rest: what a table created by import gets
    create_read_capacity: int
    create_write_capacity: int
    create_kms_key_id: str
    create_point_in_time_recovery: bool
    create_deletion_protection: bool

    @property
    def imports(self) -> bool:
        return self.create == CreateMode.IMPORT


@dataclass(frozen=True)
class SnapshotConfig:
    path: str


@dataclass(frozen=True)
class CostConfig:
    """Prices of DynamoDB request units, for the plan, the report and the metrics."""

    write_unit_usd_per_million: float
    read_unit_usd_per_million: float
    import_usd_per_gb: float  # DynamoDB's import from S3, per GB (2^30 bytes) of uncompressed input


@dataclass(frozen=True)
class EventsConfig:
    path: str
    format: EventFormat
    schema: str
    id_field: str
    date_partition: str
    broadcast_max_rows: int
    skip_corrupt_files: bool
    broadcast_max_bytes: int  # estimated broadcast hash-table bytes; above it, a shuffle join
    validate: LineValidation  # which JSON lines are fully parsed, so checked and counted when bad
    candidate_test: CandidateTest  # how validate = kept reads the plain id off a raw line
    missing_days: MissingDays


@dataclass(frozen=True)
class OutputConfig:
    path: str
    quarantine_path: str
    files_per_day: int
    sse_kms_key_id: str  # SSE-KMS for the output buckets on EMR; empty = the bucket's default


@dataclass(frozen=True)
class ReportConfig:
    path: str


@dataclass(frozen=True)
class CloudWatchConfig:
    enabled: bool
    namespace: str
    alarm_topic_arn: str


@dataclass(frozen=True)
class Config:
    aws: AwsConfig
    source: SourceConfig
    validation: ValidationConfig
    dynamodb: DynamoDBConfig
    snapshot: SnapshotConfig
    cost: CostConfig
    events: EventsConfig
    output: OutputConfig
    report: ReportConfig
    cloudwatch: CloudWatchConfig
    spark: Mapping[str, str] = field(default_factory=dict)

    def redacted(self) -> Dict[str, Any]:
        """The config as plain data for reports; holds no secret (none is ever loaded)."""
        return dataclasses.asdict(self)


# {section: its dataclass}: what a run reads, so what load_config types, checks and builds
RUN_SECTIONS: Mapping[str, type] = {f.name: f.type for f in dataclasses.fields(Config) if f.name != "spark"}
# The deploy tooling's sections (idstore_tools.deploy.config types and checks them): one file
# may hold them beside the run's, and a run accepts and ignores them, --set included.
TOOLING_SECTIONS = ("deploy", "emr", "schedule", "serverless")
_FRACTIONS = {
    ("dynamodb", "capacity_fraction"),
    ("dynamodb", "max_delete_fraction"),
    ("validation", "max_rejected_fraction"),
}


def load_config(
    conf: Optional[str] = None,
    overrides: Sequence[str] = (),
    read_text=None,
) -> Config:
    """Load base.toml, then the file `conf` (local path or s3://), then `overrides`."""
    return build_config(load_layers(conf, overrides, read_text))


def load_layers(
    conf: Optional[str] = None,
    overrides: Sequence[str] = (),
    read_text=None,
    defaults: Sequence[Path] = (BASE_CONF,),
    sections: Optional[Mapping[str, type]] = None,
) -> Dict[str, Any]:
    """The layers merged as plain data, checked by no one yet: each file of `defaults`, then the
    file `conf` (local path or s3://), then `overrides`, each read as the type of its key in
    `sections` ({section: dataclass}; RUN_SECTIONS when None)."""
    layers = [_parse_toml(path.read_text(), str(path)) for path in defaults]
    if conf:
        if read_text is None:
            from idstore.io import read_text
        try:
            layers.append(_parse_toml(read_text(conf), conf))
        except FileNotFoundError:
            raise ConfigError(f"--config {conf}: no such file") from None
    merged: Dict[str, Any] = {}
    for layer in layers:
        _merge(merged, layer)
    for item in overrides:
        _apply_override(merged, item, RUN_SECTIONS if sections is None else sections)
    return merged


def build_config(data: Mapping[str, Any]) -> Config:
    """The run's Config from merged layers; the tooling's sections are left to the tooling."""
    unknown = set(data) - set(RUN_SECTIONS) - set(TOOLING_SECTIONS) - {"spark"}
    if unknown:
        raise ConfigError(f"unknown config section(s): {', '.join(sorted(unknown))}")
    sections = {name: build_section(name, cls, data.get(name, {})) for name, cls in RUN_SECTIONS.items()
                if name != "dynamodb"}
    dynamodb = data.get("dynamodb", {})
    if isinstance(dynamodb, Mapping) and "region" in dynamodb:
        raise ConfigError("dynamodb.region: not a key; the table is in aws.region, the one region of a run")
    sections["dynamodb"] = build_section("dynamodb", DynamoDBConfig, {
        **dynamodb, "region": sections["aws"].region,
        # one endpoint for every client: DynamoDB's own only where it differs (an emulator)
        "endpoint_url": dynamodb.get("endpoint_url") or sections["aws"].endpoint_url,
    })
    spark_conf = data.get("spark", {})
    for key, value in spark_conf.items():
        if isinstance(value, (dict, list)):
            raise ConfigError(f"spark.{key}: expected a scalar Spark setting, got {type(value).__name__}")
    config = Config(spark={str(k): _spark_str(v) for k, v in spark_conf.items()}, **sections)
    _check_secrets(config)
    _check_endpoints(config)
    _check_source(config.source)
    _check_item_attributes(config.dynamodb, config.source.attribute_columns)
    _check_import(config)
    return config


def build_section(name: str, cls, values: Mapping[str, Any]):
    """The frozen dataclass `cls` of section `name`: every key present, known, of its type and in range."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"[{name}]: expected a table, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        keys = ", ".join(f"{name}.{k}" for k in sorted(unknown))
        raise ConfigError(f"unknown config key(s): {keys}")
    missing = set(fields) - set(values)
    if missing:
        keys = ", ".join(f"{name}.{k}" for k in sorted(missing))
        raise ConfigError(f"missing config key(s): {keys}")
    kwargs = {key: _typed(f"{name}.{key}", values[key], fields[key].type) for key in fields}
    for key, value in kwargs.items():
        _check_value(name, key, value)
    return cls(**kwargs)


def _typed(key: str, value: Any, typ) -> Any:
    if typ == Tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return tuple(value)
    if isinstance(typ, type) and issubclass(typ, Choice):
        choices = [choice.value for choice in typ]
        if value not in choices:
            raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
        return typ(value)
    expected = typ
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {expected.__name__}, got {value!r}")
    return value


def _check_value(section: str, key: str, value: Any) -> None:
    name = f"{section}.{key}"
    if (section, key) in _FRACTIONS and not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}: expected a fraction between 0 and 1, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise ConfigError(f"{name}: expected a non-negative number, got {value!r}")
    if (section, key) == ("source", "partitions") and value < 1:
        raise ConfigError(f"{name}: expected at least 1 partition, got {value!r}")


S3A_ENDPOINT = "spark.hadoop.fs.s3a.endpoint"


def is_aws_endpoint(url: str) -> bool:
    """Whether `url` reaches AWS itself: empty (the SDK's default), or a host under amazonaws.com
    (a VPC endpoint, a FIPS or dual-stack one); anything else is an emulator or another store."""
    host = (urlsplit(url).hostname or "") if "//" in url else url.split("/")[0]  # S3A takes a bare host too
    return not url or host.endswith((".amazonaws.com", ".amazonaws.com.cn"))


def _check_endpoints(config: Config) -> None:
    """boto3 and S3A must reach the same kind of S3: a run whose boto3 talks to moto while its
    s3:// reads and writes go to AWS (or the reverse) would touch a real bucket of the same name."""
    s3a = config.spark.get(S3A_ENDPOINT, "")
    if s3a and is_aws_endpoint(s3a) != is_aws_endpoint(config.aws.endpoint_url):
        raise ConfigError(
            f"aws.endpoint_url ({config.aws.endpoint_url or 'AWS'}) and [spark] {S3A_ENDPOINT} ({s3a}) disagree: "
            "one is AWS, the other is not; set aws.endpoint_url alone, which reaches S3A too"
        )


def _check_source(source: SourceConfig) -> None:
    """The source's rules that need no connection."""
    if source.secret_id and source.password_env:
        raise ConfigError("source.secret_id and source.password_env are both set; keep one")
    if source.mode == SourceMode.UNLOAD:
        if source.url and not source.url.lower().startswith("jdbc:redshift"):
            raise ConfigError("source.mode: unload needs a jdbc:redshift:// URL")
        if not source.unload_tempdir or not source.unload_iam_role:
            raise ConfigError("source.mode: unload needs source.unload_tempdir and source.unload_iam_role")


def _check_item_attributes(cfg: DynamoDBConfig, attribute_columns: Sequence[str]) -> None:
    """The item's attributes never overwrite one another, and a TTL is named and has a length."""
    written = {cfg.key_attribute, SYNCED_AT, RUN_ID}
    if cfg.ttl_attribute:
        if cfg.ttl_days <= 0:
            raise ConfigError("dynamodb.ttl_days: expected at least 1 when dynamodb.ttl_attribute is set")
        if cfg.ttl_attribute in written:
            raise ConfigError(f"dynamodb.ttl_attribute: {cfg.ttl_attribute!r} is already an attribute idstore writes")
        written.add(cfg.ttl_attribute)
    elif cfg.ttl_days:
        raise ConfigError("dynamodb.ttl_days: set, but dynamodb.ttl_attribute is empty")
    clashes = sorted(set(attribute_columns) & written)
    if clashes:
        raise ConfigError(
            f"source.attribute_columns: {', '.join(clashes)} would overwrite the key or an attribute idstore writes"
        )


def _check_import(config: Config) -> None:
    """A table created by import: where the set is staged, where the import's state is kept, and
    capacity that matches the billing mode."""
    cfg = config.dynamodb
    if cfg.imports:
        if not cfg.import_path.startswith(("s3://", "s3a://")):
            raise ConfigError("dynamodb.import_path: create = import stages the set in S3 for DynamoDB to read; "
                              f"expected an s3:// prefix, got {cfg.import_path!r}")
        if not config.snapshot.path:
            raise ConfigError("snapshot.path: create = import keeps the import's state and the record there "
                              "(a run killed during an import resumes it); set it")
    provisioned = (cfg.create_read_capacity, cfg.create_write_capacity)
    if cfg.create_billing_mode == BillingMode.PROVISIONED and min(provisioned) < 1:
        raise ConfigError("dynamodb.create_read_capacity and create_write_capacity: expected at least 1 each "
                          "when create_billing_mode is PROVISIONED")
    if cfg.create_billing_mode == BillingMode.PAY_PER_REQUEST and max(provisioned) > 0:
        raise ConfigError("dynamodb.create_read_capacity and create_write_capacity: set only with "
                          "create_billing_mode = PROVISIONED")


def _check_secrets(config: Config) -> None:
    """Refuse credentials where they would leak: in the JDBC URL (never echoing them)."""
    options = url_credential_options(config.source.url)
    if options:
        raise ConfigError(
            f"source.url: carries a credential ({', '.join(options)}); remove it and use "
            "source.password_env, source.secret_id or a jdbc:redshift:iam:// URL with the cluster's role"
        )
    _check_source_url(config.source.url)


# The URL forms idstore takes: each one is accepted by the Redshift JDBC driver's own
# acceptsURL (tests/integration/test_redshift_driver.py checks it through Spark's JVM).
# A host list (host[:port], comma-separated, IPv6 in brackets), then a database name; the IAM
# form may name cluster-id:region instead of host:port.
_HOST = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?)"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_REDSHIFT_URL = re.compile(
    rf"jdbc:redshift://{_HOST}(?::{_PORT})?(?:,{_HOST}(?::{_PORT})?)*/[^/?;\s]+(?:[?;]\S*)?"
    rf"|jdbc:redshift:iam://{_HOST}(?::(?:{_PORT}|[a-z]{{2}}(?:-[a-z]+)+-[0-9]))?/[^/?;\s]+(?:[?;]\S*)?"
)


def _check_source_url(url: str) -> None:
    """Refuse, before any connection, a source URL the JDBC driver would not take."""
    if not url or url.startswith("jdbc:postgresql:"):
        return
    if url.lower().startswith("jdbc:redshift"):
        if not _REDSHIFT_URL.fullmatch(url):
            raise ConfigError(
                "source.url: not a URL the Redshift JDBC driver accepts; expected "
                "jdbc:redshift://host[:port]/database or "
                "jdbc:redshift:iam://host[:port]/database (or cluster-id:region), options after ? or ;"
            )
        return
    raise ConfigError(
        f"source.url: expected jdbc:redshift://, jdbc:redshift:iam:// or jdbc:postgresql://, got {url.split('//')[0]!r}"
    )


def _parse_toml(text: str, where: str) -> Dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None


def _merge(into: Dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def _apply_override(merged: Dict[str, Any], item: str, sections: Mapping[str, type]) -> None:
    """Apply `section.key=value`; the value is read as the key's type and may hold '=' and spaces."""
    dotted, sep, raw = item.partition("=")
    section, dot, key = dotted.strip().partition(".")
    if not sep or not dot or not key:
        raise ConfigError(f"--set {item!r}: expected section.key=value")
    if section == "spark":
        merged.setdefault("spark", {})[key] = raw
        return
    if section not in sections:
        if section in TOOLING_SECTIONS:  # not this loader's to type or check: kept as given
            merged.setdefault(section, {})[key] = raw
            return
        raise ConfigError(f"--set {dotted}: unknown section {section!r}")
    types = {f.name: f.type for f in dataclasses.fields(sections[section])}
    if key not in types:
        raise ConfigError(f"--set {dotted}: unknown key")
    merged.setdefault(section, {})[key] = _from_string(dotted, raw, types[key])


def _from_string(key: str, raw: str, typ) -> Any:
    """A --set value as the key's type: TOML (8, 0.5, true, ["a", "b"], "text") or the plain forms.

    Plain forms kept from before: yes/no/1/0 for booleans, a,b for lists, any text for strings.
    """
    text = raw.strip()
    value = _toml_value(text)
    if typ == Tuple[str, ...]:
        if text.startswith("["):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"--set {key}: expected a TOML list of strings such as [\"a\", \"b\"], got {raw!r}")
            return value
        return [part.strip() for part in raw.split(",") if part.strip()]
    if typ is bool:
        if isinstance(value, bool):
            return value
        if text.lower() in ("true", "false", "1", "0", "yes", "no"):
            return text.lower() in ("true", "1", "yes")
    elif typ in (int, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if typ is int and isinstance(value, float):
                raise ConfigError(f"--set {key}: expected int, got {raw!r}")
            return typ(value)
    elif typ is str or (isinstance(typ, type) and issubclass(typ, Choice)):
        return value if isinstance(value, str) and text.startswith(('"', "'")) else raw
    raise ConfigError(f"--set {key}: expected {getattr(typ, '__name__', 'a list')}, got {raw!r}")


def _toml_value(text: str) -> Any:
    """`text` read as one TOML value, or None when it is not one."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return None


def _spark_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
