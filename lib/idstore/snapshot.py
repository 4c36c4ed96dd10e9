"""The snapshot: the record of what the table holds after the last complete sync run.

Per key: a digest of the attribute values written, when the key was last written and by
which run, and the TTL it was given. Parquet per run under snapshot.path/run_id=<id>/, and a
pointer, _LATEST.json, naming the latest complete one with the fingerprint of everything that
shaped the items. The pointer is written last, after every write of the run succeeded, so a
reader never sees the record of a run that failed half-way. The filter reads the record's key
column as the id set.
"""
import hashlib
import json
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from idstore import io
from idstore.config import Config, ConfigError
from idstore.errors import InputNotReady

POINTER = "_LATEST.json"
FORMAT_VERSION = 2  # 1: ids only (before delta runs)
DIGEST, WRITTEN_AT, WRITTEN_BY, EXPIRES_AT = "_digest", "_written_at", "_written_by", "_expires_at"


@dataclass(frozen=True)
class Fingerprint:
    """Everything that shapes an item: a change to any of it means the record no longer
    describes what the next run would write.

    Read from a pointer (`from_dict`), the fingerprint is what that pointer recorded: a key it
    lacks (an older release wrote it) is None, and keys this release does not know are kept in
    `unknown`. Both differ from any fingerprint of a configuration, so `changes_from` names
    them and the run is a full one.
    """

    table: Optional[str]
    region: Optional[str]
    key_attribute: Optional[str]
    attribute_columns: Optional[Tuple[str, ...]]
    ttl_attribute: Optional[str]
    ttl_days: Optional[int]
    id_column: Optional[str]
    format_version: Optional[int] = FORMAT_VERSION
    unknown: Tuple[Tuple[str, Any], ...] = ()  # (key, value) a pointer recorded that this release does not know

    @classmethod
    def of(cls, config: Config) -> "Fingerprint":
        cfg = config.dynamodb
        return cls(cfg.table, cfg.region, cfg.key_attribute, tuple(config.source.attribute_columns),
                   cfg.ttl_attribute, cfg.ttl_days, config.source.id_column)

    @classmethod
    def from_dict(cls, data: Any) -> "Fingerprint":
        """The fingerprint a pointer recorded; anything but a JSON object recorded nothing (every key None)."""
        recorded = data if isinstance(data, dict) else {}
        known = [f.name for f in fields(cls) if f.name != "unknown"]
        values = {name: recorded.get(name) for name in known}
        if isinstance(values["attribute_columns"], list):
            values["attribute_columns"] = tuple(values["attribute_columns"])
        unknown = tuple(sorted((name, value) for name, value in recorded.items() if name not in known))
        return cls(**values, unknown=unknown)

    def as_dict(self) -> Dict[str, Any]:
        """The JSON object the pointer holds (the inverse of from_dict)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "unknown"}
        if isinstance(self.attribute_columns, tuple):
            data["attribute_columns"] = list(self.attribute_columns)
        data.update(self.unknown)
        return data

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def changes_from(self, recorded: "Fingerprint") -> List[str]:
        """What differs from a recorded fingerprint, as `name: old -> new`; a key only one of them
        has counts as a change (None on the side that lacks it)."""
        mine, theirs = self.as_dict(), recorded.as_dict()
        names = [*mine, *(name for name in theirs if name not in mine)]
        return [f"{name}: {theirs.get(name)!r} -> {mine.get(name)!r}" for name in names
                if name not in mine or name not in theirs or theirs[name] != mine[name]]


@dataclass(frozen=True)
class Pointer:
    """_LATEST.json: where the latest complete record is and what it can be trusted for."""

    run_id: str
    path: str
    id_column: str
    written_at: str  # ISO-8601 UTC
    keys: int  # rows in the record: a record whose files hold another count is incomplete
    fingerprint: Fingerprint
    verified_at: str  # the last full run, which wrote every key and repaired any drift
    runs_since_verify: int  # delta runs since then
    format_version: int = FORMAT_VERSION
    key_bytes: int = -1  # UTF-8 bytes of all keys, so the filter sizes its broadcast without a pass; -1: unknown
    id_type: str = ""  # the id column's Spark type, so a reader skips the schema inference job; "": unknown

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Pointer":
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        if "fingerprint" in values:
            values["fingerprint"] = Fingerprint.from_dict(values["fingerprint"])
        return cls(**values)

    def as_dict(self) -> Dict[str, Any]:
        """The JSON object _LATEST.json holds."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["fingerprint"] = self.fingerprint.as_dict()
        return data


def attribute_digest(columns: Sequence[str]) -> Column:
    """A stable digest of the attribute values of a row (JSON of the typed values, SHA-256)."""
    if not columns:
        return F.lit("")
    return F.sha2(F.to_json(F.struct(*[F.col(c) for c in columns])), 256)


def epoch_seconds(when: datetime) -> int:
    return int(when.timestamp())


def read_pointer(config: Config) -> Pointer:
    """The pointer; FileNotFoundError when there is none, ValueError/KeyError when it is damaged."""
    data = io.read_json(io.join(config.snapshot.path, POINTER), config.aws.endpoint_url, config.aws.region)
    if not isinstance(data, dict):
        raise ValueError("the pointer is not a JSON object")
    if data.get("format_version", 1) != FORMAT_VERSION:
        return Pointer(data["run_id"], data["path"], data["id_column"], data.get("written_at", ""), -1,
                       Fingerprint.from_dict({}), "", 0, int(data.get("format_version", 1)))
    return Pointer.from_dict(data)


@dataclass(frozen=True)
class RecordSize:
    keys: int
    key_bytes: int  # UTF-8 bytes of the keys: the filter sizes its join by them before reading the set


def write_record(record: DataFrame, config: Config, run_id: str, now: datetime, size: RecordSize,
                 delta_of: Optional[Pointer]) -> str:
    """Write the record under snapshot.path/run_id=<id>/, then point _LATEST.json at it.

    `delta_of` is the pointer a delta run diffed against; None for a full run, which verifies the table.
    """
    pointer = store_record(record, config, run_id, now, size, delta_of)
    move_pointer(config, pointer)
    return pointer.path


def store_record(record: DataFrame, config: Config, run_id: str, now: datetime, size: RecordSize,
                 delta_of: Optional[Pointer], folder: str = "") -> Pointer:
    """Write the record under snapshot.path/<folder or run_id=<id>>/; the pointer that would name
    it, not yet moved (an import moves it only once the table holds the record's keys)."""
    target = io.join(config.snapshot.path, folder or f"run_id={run_id}")
    record.write.mode("overwrite").parquet(target)
    stamp = now.astimezone(timezone.utc).isoformat()
    return Pointer(
        run_id=run_id, path=target, id_column=config.source.id_column, written_at=stamp, keys=size.keys,
        fingerprint=Fingerprint.of(config),
        verified_at=stamp if delta_of is None else delta_of.verified_at,
        runs_since_verify=0 if delta_of is None else delta_of.runs_since_verify + 1,
        key_bytes=size.key_bytes,
        id_type=record.schema[config.source.id_column].dataType.simpleString(),
    )


def move_pointer(config: Config, pointer: Pointer) -> None:
    """_LATEST.json names `pointer`'s record from now on."""
    io.write_json(io.join(config.snapshot.path, POINTER), pointer.as_dict(), config.aws.endpoint_url,
                  config.aws.region)


def read_latest_snapshot(spark: SparkSession, config: Config) -> Tuple[DataFrame, Pointer]:
    """The id set of the latest complete snapshot, its id column named source.id_column, and its pointer."""
    if not config.snapshot.path:
        raise ConfigError("snapshot.path: empty; set it or choose --ids source|dynamodb")
    try:
        pointer = read_pointer(config)
    except (FileNotFoundError, OSError, ValueError, KeyError) as exc:
        where = io.join(config.snapshot.path, POINTER)
        raise InputNotReady(f"no complete snapshot at {where} (snapshot.path): run sync first: {exc}") from None
    reader = spark.read
    if pointer.id_type:  # the files' schema need not be read from their footers (a Spark job)
        reader = reader.schema(f"`{pointer.id_column}` {pointer.id_type}")
    ids = reader.parquet(pointer.path).select(pointer.id_column)
    return ids.withColumnRenamed(pointer.id_column, config.source.id_column), pointer


def days_since(stamp: str, now: datetime) -> float:
    then = datetime.fromisoformat(stamp)
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    return (now - then) / timedelta(days=1)
