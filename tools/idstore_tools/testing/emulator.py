"""A local DynamoDB *capacity emulator* for tests and benchmarks.

It speaks DynamoDB's JSON 1.0 protocol over HTTP (point any boto3 client at
``endpoint_url``; signatures are not checked) and adds what moto lacks:

* a write budget per table (WCU/s), enforced with a continuously refilled
  token bucket plus a burst, returning ``UnprocessedItems`` and throttle
  errors the way DynamoDB does;
* per-request latency (slept without holding the lock, so requests overlap);
* seeded fault injection: unprocessed items, HTTP 500, throttle errors,
  dropped connections, and a "down" switch;
* metrics for benchmarks: items written/deleted, requests by outcome and a
  per-second series of consumed WCU.

In-process use::

    with DynamoDBEmulator(latency_s=0.01, burst_s=1.0, seed=1) as emu:
        client = boto3.client("dynamodb", endpoint_url=emu.endpoint_url, ...)
        emu.set_write_rate("IdentifierStore", 500)
        emu.set_faults(unprocessed_fraction=0.1)
        emu.metrics(); emu.items("IdentifierStore")

From another process (e.g. Spark executors)::

    python -m idstore_tools.testing.emulator --port 0 --latency-ms 10 --write-rate 10000

prints its endpoint URL as the first stdout line and serves until killed.
Admin paths on the same server: ``GET /_emulator/metrics``,
``GET /_emulator/items?table=T``, ``GET /_emulator/faults``,
``POST /_emulator/faults`` (JSON body with
the keyword arguments of :meth:`DynamoDBEmulator.set_faults`),
``POST /_emulator/rate`` ``{"table": T or null, "wcu": N or null, "burst_s": S}``,
``POST /_emulator/latency`` ``{"latency_s": S}``, ``POST /_emulator/down``
``{"down": true}`` and ``POST /_emulator/reset``.

Supported operations: CreateTable, DescribeTable, UpdateTable, DeleteTable,
ListTables, DescribeLimits, PutItem, GetItem, DeleteItem, BatchWriteItem,
BatchGetItem, Scan. Not supported (rejected with ValidationException rather
than silently ignored): condition and filter expressions, secondary indexes.
Projection expressions select top-level attributes only.

Runs on Python 3.9, standard library only.
"""

import argparse
import base64
import bisect
import json
import math
import random
import signal
import socket
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

__all__ = ["THROTTLE_ERRORS", "DynamoDBEmulator", "EmulatorError", "item_size", "main"]

ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
TARGET_PREFIX = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"
ADMIN_PREFIX = "/_emulator/"

MAX_ITEM_BYTES = 400 * 1024
MAX_BATCH_WRITE = 25
MAX_BATCH_GET = 100
MAX_REQUEST_BYTES = 16 * 1024 * 1024
MAX_HASH_KEY_BYTES = 2048
MAX_RANGE_KEY_BYTES = 1024
SCAN_PAGE_BYTES = 1024 * 1024
ACCOUNT_ID = "123456789012"

THROTTLE_ERRORS = {
    "ProvisionedThroughputExceededException": (
        "The level of configured provisioned throughput for the table was exceeded. "
        "Consider increasing your provisioning level with the UpdateTable API."
    ),
    "ThrottlingException": "Throughput exceeds the current capacity for your table or index.",
    "RequestLimitExceeded": (
        "Throughput exceeds the current throughput limit for your account. "
        "Please contact AWS Support at https://aws.amazon.com/support request a limit increase"
    ),
}

WRITE_OPS = ("BatchWriteItem", "PutItem", "DeleteItem")
READ_OPS = ("GetItem", "BatchGetItem", "Scan")
DEFAULT_FAULT_OPS = WRITE_OPS

OUTCOMES = ("ok", "partial", "throttled", "5xx", "dropped", "refused", "error")

_HASH_SPACE = 1 << 32
_EMPTY_VALUE = "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"
_ONE_WRITE_REQUEST = "Supplied WriteRequest must contain exactly one of PutRequest or DeleteRequest"
_DROP = object()  # sentinel result: close the connection without answering


class EmulatorError(Exception):
    """An error answered to the client as DynamoDB would."""

    def __init__(self, name: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.name = name
        self.message = message
        self.status = status


def _validation(message: str) -> EmulatorError:
    return EmulatorError("ValidationException", message)


def _not_found(message: str = "Requested resource not found") -> EmulatorError:
    return EmulatorError("ResourceNotFoundException", message)


# --------------------------------------------------------------------------
# item sizes (DynamoDB's documented approximation)


def _utf8_len(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8"))


def _number_size(v: str) -> int:
    s = v.strip().lstrip("+-")
    cut = s.find("e")
    if cut < 0:
        cut = s.find("E")
    if cut >= 0:
        s = s[:cut]
    digits = s.replace(".", "").strip("0")
    return (len(digits) + 1) // 2 + 1


def _b64_len(v: str) -> int:
    n = len(v)
    return n * 3 // 4 - (2 if v.endswith("==") else 1 if v.endswith("=") else 0)


def _value_size(av: dict[str, Any]) -> int:
    for t, v in av.items():
        if t == "S":
            return _utf8_len(v)
        if t == "N":
            return _number_size(v)
        if t == "B":
            return _b64_len(v)
        if t == "BOOL" or t == "NULL":
            return 1
        if t == "SS":
            return sum(_utf8_len(x) for x in v)
        if t == "NS":
            return sum(_number_size(x) for x in v)
        if t == "BS":
            return sum(_b64_len(x) for x in v)
        if t == "L":
            return 3 + sum(1 + _value_size(x) for x in v)
        if t == "M":
            return 3 + sum(1 + _utf8_len(k) + _value_size(x) for k, x in v.items())
        raise _validation("Supplied AttributeValue has an unknown data type: %s" % t)
    raise _validation(_EMPTY_VALUE)


def item_size(item: dict[str, Any]) -> int:
    """Approximate DynamoDB item size in bytes: attribute names + values."""
    try:
        return sum(_utf8_len(k) + _value_size(v) for k, v in item.items())
    except EmulatorError:
        raise
    except (AttributeError, TypeError, ValueError):  # a malformed attribute value from the client
        raise _validation(_EMPTY_VALUE) from None


def _write_units(size: int) -> int:
    return max(1, -(-size // 1024))


def _read_units(size: int, consistent: bool) -> float:
    units = max(1, -(-size // 4096))
    return float(units) if consistent else units / 2.0


# --------------------------------------------------------------------------
# tables


def _key_component(name: str, typ: str, val: Any, limit: int) -> Any:
    """A hashable, sortable form of a key attribute value."""
    if typ == "S":
        if not isinstance(val, str):
            raise _validation("One or more parameter values were invalid: Invalid value for key %s" % name)
        if not val:
            raise _validation(
                "One or more parameter values are not valid. The AttributeValue for a key attribute "
                "cannot contain an empty string value. Key: %s" % name
            )
        if _utf8_len(val) > limit:
            raise _validation(
                "One or more parameter values were invalid: Size of %s has exceeded the maximum size limit of %d bytes"
                % ("hashkey" if limit == MAX_HASH_KEY_BYTES else "rangekey", limit)
            )
        return val
    if typ == "N":
        try:
            d = Decimal(val)
        except (InvalidOperation, TypeError, ValueError):
            raise _validation("A value provided cannot be converted into a number") from None
        if not d.is_finite():
            raise _validation("A value provided cannot be converted into a number")
        return d
    # B
    try:
        b = base64.b64decode(val)
    except (TypeError, ValueError):  # binascii.Error is a ValueError
        raise _validation(
            "One or more parameter values were invalid: Invalid binary value for key %s" % name
        ) from None
    if not b:
        raise _validation(
            "One or more parameter values are not valid. The AttributeValue for a key attribute "
            "cannot contain an empty binary value. Key: %s" % name
        )
    if len(b) > limit:
        raise _validation("One or more parameter values were invalid: Size of key %s exceeds %d bytes" % (name, limit))
    return b


def _component_bytes(c: Any) -> bytes:
    if isinstance(c, str):
        return c.encode("utf-8")
    if isinstance(c, Decimal):
        return str(c.normalize()).encode("ascii")
    return c


class _Bucket:
    """Token bucket; ``rate`` None = unlimited."""

    __slots__ = ("burst_s", "last", "rate", "tokens")

    def __init__(self, rate: Optional[float], burst_s: float, now: float) -> None:
        self.rate = rate
        self.burst_s = burst_s
        self.tokens = self.capacity
        self.last = now

    @property
    def capacity(self) -> float:
        return 0.0 if self.rate is None else self.rate * self.burst_s

    def configure(self, rate: Optional[float], burst_s: float, now: float) -> None:
        self.refill(now)
        was_unlimited = self.rate is None
        self.rate = rate
        self.burst_s = burst_s
        if rate is None:
            self.tokens = 0.0
        elif was_unlimited:
            self.tokens = self.capacity
        else:
            self.tokens = min(self.tokens, self.capacity)

    def refill(self, now: float) -> None:
        if self.rate is not None:
            cap = self.rate * self.burst_s
            t = self.tokens + (now - self.last) * self.rate
            self.tokens = min(t, cap)
        self.last = now

    def take(self, cost: float, now: float) -> bool:
        if self.rate is None:
            return True
        self.refill(now)
        # A full bucket may go into debt, so an item bigger than the burst
        # can still be written eventually.
        if self.tokens >= cost or self.tokens >= self.rate * self.burst_s:
            self.tokens -= cost
            return True
        return False


class _Table:
    def __init__(self, req: dict[str, Any], region: str, now_mono: float) -> None:
        name = req.get("TableName")
        if not isinstance(name, str) or not 3 <= len(name) <= 255:
            raise _validation("1 validation error detected: Value at 'tableName' failed to satisfy constraint")
        for unsupported in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "StreamSpecification"):
            if req.get(unsupported):
                raise _validation("%s is not supported by the emulator" % unsupported)
        key_schema = req.get("KeySchema") or []
        attr_defs = req.get("AttributeDefinitions") or []
        types = {}
        for a in attr_defs:
            if a.get("AttributeType") not in ("S", "N", "B"):
                raise _validation("One or more parameter values were invalid: invalid AttributeType")
            types[a.get("AttributeName")] = a["AttributeType"]
        hashes = [k for k in key_schema if k.get("KeyType") == "HASH"]
        ranges = [k for k in key_schema if k.get("KeyType") == "RANGE"]
        if len(hashes) != 1 or len(ranges) > 1 or len(key_schema) != len(hashes) + len(ranges):
            raise _validation(
                "1 validation error detected: Invalid KeySchema: exactly one HASH and at most one RANGE key"
            )
        if key_schema[0].get("KeyType") != "HASH":
            raise _validation("Invalid KeySchema: The first KeySchemaElement is not a HASH key type")
        key_names = [k.get("AttributeName") for k in key_schema]
        if set(key_names) != set(types) or len(set(key_names)) != len(key_names):
            raise _validation(
                "One or more parameter values were invalid: Number of attributes in KeySchema does not "
                "exactly match number of attributes defined in AttributeDefinitions"
            )
        self.name = name
        self.key_schema = key_schema
        self.attr_defs = attr_defs
        self.hash_name = key_names[0]
        self.hash_type = types[self.hash_name]
        self.range_name = key_names[1] if len(key_names) > 1 else None
        self.range_type = types[self.range_name] if self.range_name else None
        self.key_names = key_names
        self.billing_mode = "PROVISIONED"
        self.read_units = 0
        self.write_units = 0
        self.on_demand: Optional[dict[str, Any]] = None
        self.warm: Optional[dict[str, Any]] = None
        self._apply_capacity(req, creating=True)
        self.created = time.time()
        self.table_id = str(uuid.uuid4())
        self.arn = "arn:aws:dynamodb:%s:%s:table/%s" % (region, ACCOUNT_ID, name)
        self.items: dict[tuple, dict[str, Any]] = {}
        self.sizes: dict[tuple, int] = {}
        self.version = 0
        self._sorted: list[tuple] = []
        self._sorted_version = -1
        self.bucket = _Bucket(None, 1.0, now_mono)

    # capacity settings -----------------------------------------------------

    def _apply_capacity(self, req: dict[str, Any], creating: bool) -> None:
        mode = req.get("BillingMode") or (self.billing_mode if not creating else "PROVISIONED")
        if mode not in ("PROVISIONED", "PAY_PER_REQUEST"):
            raise _validation(
                "1 validation error detected: Value '%s' at 'billingMode' failed to satisfy constraint" % mode
            )
        pt = req.get("ProvisionedThroughput")
        if mode == "PROVISIONED":
            if pt is None and (creating or self.billing_mode != "PROVISIONED"):
                raise _validation(
                    "One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits "
                    "must both be specified when BillingMode is PROVISIONED"
                )
            if pt is not None:
                r, w = pt.get("ReadCapacityUnits"), pt.get("WriteCapacityUnits")
                if not isinstance(r, int) or not isinstance(w, int) or r < 1 or w < 1:
                    raise _validation("One or more parameter values were invalid: ProvisionedThroughput must be >= 1")
                self.read_units, self.write_units = r, w
        else:
            if pt is not None:
                raise _validation(
                    "One or more parameter values were invalid: Neither ReadCapacityUnits nor WriteCapacityUnits "
                    "can be specified when BillingMode is PAY_PER_REQUEST"
                )
            self.read_units = self.write_units = 0
        self.billing_mode = mode
        if req.get("OnDemandThroughput") is not None:
            self.on_demand = dict(req["OnDemandThroughput"])
        if req.get("WarmThroughput") is not None:
            self.warm = dict(req["WarmThroughput"])

    def default_write_rate(self) -> Optional[float]:
        """The table's own write budget: provisioned WCU, else on-demand max/warm, else unlimited."""
        if self.billing_mode == "PROVISIONED":
            return float(self.write_units)
        if self.on_demand:
            w = self.on_demand.get("MaxWriteRequestUnits")
            if isinstance(w, (int, float)) and w > 0:
                return float(w)
        if self.warm:
            w = self.warm.get("WriteUnitsPerSecond")
            if isinstance(w, (int, float)) and w > 0:
                return float(w)
        return None

    @property
    def budget_error(self) -> str:
        return "ProvisionedThroughputExceededException" if self.billing_mode == "PROVISIONED" else "ThrottlingException"

    # keys --------------------------------------------------------------------

    def _component(self, attrs: dict[str, Any], name: str, typ: str, limit: int, is_item: bool) -> Any:
        av = attrs.get(name)
        if av is None:
            if is_item:
                raise _validation("One or more parameter values were invalid: Missing the key %s in the item" % name)
            raise _validation("The provided key element does not match the schema")
        if not isinstance(av, dict) or len(av) != 1:
            raise _validation("Supplied AttributeValue is empty, must contain exactly one of the supported datatypes")
        for actual, val in av.items():
            if actual != typ:
                raise _validation(
                    "One or more parameter values were invalid: Type mismatch for key %s expected: %s actual: %s"
                    % (name, typ, actual)
                )
            return _key_component(name, typ, val, limit)

    def key_of_item(self, item: Any) -> tuple:
        if not isinstance(item, dict):
            raise _validation(
                "1 validation error detected: Value null at 'item' failed to satisfy constraint: "
                "Member must not be null"
            )
        h = self._component(item, self.hash_name, self.hash_type, MAX_HASH_KEY_BYTES, True)
        if self.range_name is None:
            return (h,)
        return (h, self._component(item, self.range_name, self.range_type, MAX_RANGE_KEY_BYTES, True))

    def key_of_key(self, key: Any) -> tuple:
        if not isinstance(key, dict) or len(key) != len(self.key_names):
            raise _validation("The provided key element does not match the schema")
        h = self._component(key, self.hash_name, self.hash_type, MAX_HASH_KEY_BYTES, False)
        if self.range_name is None:
            return (h,)
        return (h, self._component(key, self.range_name, self.range_type, MAX_RANGE_KEY_BYTES, False))

    def key_dict(self, item: dict[str, Any]) -> dict[str, Any]:
        return {n: item[n] for n in self.key_names}

    # storage -----------------------------------------------------------------

    def put(self, key: tuple, item: dict[str, Any], size: int) -> Optional[dict[str, Any]]:
        old = self.items.get(key)
        self.items[key] = item
        self.sizes[key] = size
        self.version += 1
        return old

    def delete(self, key: tuple) -> Optional[dict[str, Any]]:
        old = self.items.pop(key, None)
        if old is not None:
            del self.sizes[key]
            self.version += 1
        return old

    def sorted_keys(self) -> list[tuple]:
        """Keys in scan order: crc32 of the hash key, then the key itself."""
        if self._sorted_version != self.version:
            crc = zlib.crc32
            cb = _component_bytes
            self._sorted = sorted((crc(cb(k[0])),) + k for k in self.items)
            self._sorted_version = self.version
        return self._sorted

    def description(self, status: str = "ACTIVE") -> dict[str, Any]:
        d: dict[str, Any] = {
            "AttributeDefinitions": self.attr_defs,
            "TableName": self.name,
            "KeySchema": self.key_schema,
            "TableStatus": status,
            "CreationDateTime": self.created,
            "ProvisionedThroughput": {
                "NumberOfDecreasesToday": 0,
                "ReadCapacityUnits": self.read_units,
                "WriteCapacityUnits": self.write_units,
            },
            "TableSizeBytes": sum(self.sizes.values()),
            "ItemCount": len(self.items),
            "TableArn": self.arn,
            "TableId": self.table_id,
            "BillingModeSummary": {"BillingMode": self.billing_mode},
            "DeletionProtectionEnabled": False,
        }
        if self.warm is not None:
            w = dict(self.warm)
            w.setdefault("Status", "ACTIVE")
            d["WarmThroughput"] = w
        if self.on_demand is not None:
            d["OnDemandThroughput"] = self.on_demand
        return d


def _projection(req: dict[str, Any]) -> Optional[list[str]]:
    """Top-level attribute names to return, or None for all."""
    pe = req.get("ProjectionExpression")
    if pe is None:
        atg = req.get("AttributesToGet")
        return list(atg) if atg else None
    names = req.get("ExpressionAttributeNames") or {}
    out = []
    for part in pe.split(","):
        part = part.strip()
        for sep in (".", "["):
            i = part.find(sep)
            if i > 0:
                part = part[:i]
        if part.startswith("#"):
            if part not in names:
                raise _validation(
                    "Invalid ProjectionExpression: An expression attribute name used in the document path "
                    "is not defined; attribute name: %s" % part
                )
            part = names[part]
        if not part:
            raise _validation("Invalid ProjectionExpression: Syntax error")
        out.append(part)
    return out


def _project(item: dict[str, Any], names: Optional[list[str]]) -> dict[str, Any]:
    if names is None:
        return item
    return {n: item[n] for n in names if n in item}


def _reject_unsupported(req: dict[str, Any], keys: Iterable[str]) -> None:
    for k in keys:
        if req.get(k):
            raise _validation("%s is not supported by the emulator" % k)


# --------------------------------------------------------------------------
# the emulator


class DynamoDBEmulator:
    """DynamoDB over HTTP with write budgets, latency, faults and metrics.

    Args:
        host, port: where to listen (port 0 = any free port).
        latency_s: seconds slept per DynamoDB request before answering.
        write_rate: WCU/s for every table; None = each table's own
            (provisioned WCU; on-demand: OnDemandThroughput max write units,
            else WarmThroughput write units, else unlimited); 0 or inf =
            unlimited. Per table: :meth:`set_write_rate`.
        burst_s: bucket size in seconds of the write rate (the burst).
        unprocessed_fraction, error_5xx_fraction, throttle_fraction,
        throttle_error, drop_connection_fraction, fault_ops: see
            :meth:`set_faults`.
        seed: RNG seed for fault injection (reproducible runs).
        region: region used in table ARNs.
        clock: the monotonic clock of the write budgets and the per-second
            series (default ``time.monotonic``); a test may pass a simulated
            one. Latency is always slept for real.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_s: float = 0.0,
        write_rate: Optional[float] = None,
        burst_s: float = 1.0,
        unprocessed_fraction: float = 0.0,
        error_5xx_fraction: float = 0.0,
        throttle_fraction: float = 0.0,
        throttle_error: str = "ProvisionedThroughputExceededException",
        drop_connection_fraction: float = 0.0,
        fault_ops: Iterable[str] = DEFAULT_FAULT_OPS,
        seed: Optional[int] = None,
        region: str = "us-east-1",
        clock: Optional[Callable[[], float]] = None,
    ) -> None:
        self._clock: Callable[[], float] = clock or time.monotonic
        self._in_flight = 0
        self.host = host
        self.port = port
        self.region = region
        self._lock = threading.Lock()
        self._latency_s = 0.0
        self._down = False
        self._default_rate = self._norm_rate(write_rate)  # "table" or None or float
        self._default_burst = float(burst_s)
        self._rate_overrides: dict[str, tuple[Any, float]] = {}
        self._seed = seed
        self._rng = random.Random(seed)
        self._faults: dict[str, Any] = {
            "unprocessed_fraction": 0.0,
            "error_5xx_fraction": 0.0,
            "throttle_fraction": 0.0,
            "throttle_error": "ProvisionedThroughputExceededException",
            "drop_connection_fraction": 0.0,
            "fault_ops": list(DEFAULT_FAULT_OPS),
        }
        self._fault_ops = frozenset(DEFAULT_FAULT_OPS)
        self.set_latency(latency_s)
        self.set_faults(
            unprocessed_fraction=unprocessed_fraction,
            error_5xx_fraction=error_5xx_fraction,
            throttle_fraction=throttle_fraction,
            throttle_error=throttle_error,
            drop_connection_fraction=drop_connection_fraction,
            fault_ops=fault_ops,
        )
        self._tables: dict[str, _Table] = {}
        self._reset_metrics()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._ops = {
            "CreateTable": self._op_create_table,
            "DescribeTable": self._op_describe_table,
            "UpdateTable": self._op_update_table,
            "DeleteTable": self._op_delete_table,
            "ListTables": self._op_list_tables,
            "DescribeLimits": self._op_describe_limits,
            "PutItem": self._op_put_item,
            "GetItem": self._op_get_item,
            "DeleteItem": self._op_delete_item,
            "BatchWriteItem": self._op_batch_write_item,
            "BatchGetItem": self._op_batch_get_item,
            "Scan": self._op_scan,
        }

    # lifecycle -----------------------------------------------------------------

    def start(self) -> "DynamoDBEmulator":
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler)
        server.emulator = self
        self._server = server
        self.port = server.server_address[1]
        with self._lock:
            self._t0 = self._clock()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="dynamodb-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_all_connections()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> "DynamoDBEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return "http://%s:%d" % (self.host, self.port)

    # configuration ---------------------------------------------------------------

    @staticmethod
    def _norm_rate(rate: Any) -> Any:
        if rate is None or rate == "table":
            return "table"
        rate = float(rate)
        if rate <= 0 or math.isinf(rate):
            return None
        return rate

    def _effective_rate(self, table: _Table) -> tuple[Optional[float], float]:
        rate, burst = self._rate_overrides.get(table.name, (self._default_rate, self._default_burst))
        if rate == "table":
            rate = table.default_write_rate()
        return rate, burst

    def _configure_bucket(self, table: _Table) -> None:
        rate, burst = self._effective_rate(table)
        table.bucket.configure(rate, burst, self._clock())

    def set_write_rate(self, table: Optional[str], wcu_per_s: Optional[float], burst_s: Optional[float] = None) -> None:
        """Set the write budget of ``table`` (None = the default for all tables).

        ``wcu_per_s``: None = the table's own capacity, 0 or inf = unlimited.
        ``burst_s``: bucket size in seconds (None = keep the default).
        """
        with self._lock:
            rate = self._norm_rate(wcu_per_s)
            if table is None:
                self._default_rate = rate
                if burst_s is not None:
                    self._default_burst = float(burst_s)
            else:
                self._rate_overrides[table] = (rate, float(burst_s) if burst_s is not None else self._default_burst)
            for t in self._tables.values():
                self._configure_bucket(t)

    def write_rate(self, table: str) -> Optional[float]:
        """The WCU/s budget in force for ``table`` (None = unlimited)."""
        with self._lock:
            t = self._tables.get(table)
            if t is None:
                raise KeyError(table)
            return t.bucket.rate

    def set_latency(self, latency_s: float) -> None:
        if latency_s < 0:
            raise ValueError("latency_s must be >= 0")
        self._latency_s = float(latency_s)

    def set_down(self, down: bool = True) -> None:
        """While down, every DynamoDB request's connection is closed unanswered."""
        self._down = bool(down)

    def set_faults(
        self,
        unprocessed_fraction: Optional[float] = None,
        error_5xx_fraction: Optional[float] = None,
        throttle_fraction: Optional[float] = None,
        throttle_error: Optional[str] = None,
        drop_connection_fraction: Optional[float] = None,
        fault_ops: Optional[Iterable[str]] = None,
        seed: Optional[int] = None,
    ) -> dict[str, Any]:
        """Change fault injection; arguments left None keep their value.

        Per request (for the operations in ``fault_ops``, by default the
        write operations), one draw picks at most one of: drop the
        connection (``drop_connection_fraction``), answer HTTP 500
        (``error_5xx_fraction``), answer a ``throttle_error``
        (``throttle_fraction``); nothing is written then. Otherwise each
        write request of a batch is returned unprocessed with probability
        ``unprocessed_fraction``. ``seed`` re-seeds the RNG. Returns the
        fault settings now in force.
        """
        with self._lock:
            f = dict(self._faults)
            for name, val in (
                ("unprocessed_fraction", unprocessed_fraction),
                ("error_5xx_fraction", error_5xx_fraction),
                ("throttle_fraction", throttle_fraction),
                ("drop_connection_fraction", drop_connection_fraction),
            ):
                if val is not None:
                    val = float(val)
                    if not 0.0 <= val <= 1.0:
                        raise ValueError("%s must be within [0, 1]" % name)
                    f[name] = val
            if throttle_error is not None:
                if throttle_error not in THROTTLE_ERRORS:
                    raise ValueError("throttle_error must be one of %s" % ", ".join(sorted(THROTTLE_ERRORS)))
                f["throttle_error"] = throttle_error
            if fault_ops is not None:
                ops = [str(o) for o in fault_ops]
                f["fault_ops"] = ops
            if f["drop_connection_fraction"] + f["error_5xx_fraction"] + f["throttle_fraction"] > 1.0 + 1e-9:
                raise ValueError("drop_connection + error_5xx + throttle fractions must not exceed 1")
            self._faults = f
            self._fault_ops = frozenset(f["fault_ops"])
            if seed is not None:
                self._seed = seed
                self._rng = random.Random(seed)
            return dict(f)

    def faults(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._faults)

    # metrics ---------------------------------------------------------------------

    def _reset_metrics(self) -> None:
        self._t0 = self._clock()
        self._requests = dict.fromkeys(OUTCOMES, 0)
        self._ops_count: dict[str, int] = {}
        self._items_written = 0
        self._items_deleted = 0
        self._delete_requests = 0
        self._items_unprocessed = 0
        self._faults_injected = {"unprocessed_items": 0, "5xx": 0, "throttle": 0, "drop": 0}
        self._budget_throttles = 0
        self._wcu_total = 0.0
        self._wcu_by_second: dict[int, float] = {}
        self._in_flight_peak = 0

    def reset(self) -> None:
        """Drop all tables and zero the metrics (settings and faults stay; the RNG is re-seeded)."""
        with self._lock:
            self._tables.clear()
            self._reset_metrics()
            self._rng = random.Random(self._seed)

    def wcu_series(self) -> list[tuple[int, float]]:
        """[(second since start/reset, WCU consumed in that second)], gaps filled with 0."""
        with self._lock:
            return self._series_locked()

    def _series_locked(self) -> list[tuple[int, float]]:
        if not self._wcu_by_second:
            return []
        last = max(self._wcu_by_second)
        get = self._wcu_by_second.get
        return [(s, get(s, 0.0)) for s in range(last + 1)]

    def metrics(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot of the counters.

        ``items_written``: acknowledged puts (overwrites included);
        ``items_deleted``: items actually removed; ``delete_requests``:
        acknowledged deletes (absent keys included); ``items_unprocessed``:
        write requests returned as UnprocessedItems (budget or fault);
        ``requests``: answers by outcome (ok, partial = some items returned
        unprocessed, throttled = a throttle error from the budget or a fault,
        5xx, dropped, refused = while down, error = any other 4xx);
        ``wcu_per_second``: [[second since start/reset, WCU], ...];
        ``in_flight_peak``: the most DynamoDB requests being answered at once
        (their latency included).
        """
        with self._lock:
            return {
                "uptime_s": self._clock() - self._t0,
                "requests": dict(self._requests),
                "ops": dict(self._ops_count),
                "items_written": self._items_written,
                "items_deleted": self._items_deleted,
                "delete_requests": self._delete_requests,
                "items_unprocessed": self._items_unprocessed,
                "budget_throttles": self._budget_throttles,
                "faults_injected": dict(self._faults_injected),
                "wcu_consumed": self._wcu_total,
                "wcu_per_second": [list(p) for p in self._series_locked()],
                "in_flight_peak": self._in_flight_peak,
                "tables": {
                    n: {"item_count": len(t.items), "write_rate": t.bucket.rate, "burst_s": t.bucket.burst_s}
                    for n, t in self._tables.items()
                },
                "faults": dict(self._faults),
                "latency_s": self._latency_s,
                "down": self._down,
            }

    def items(self, table: str) -> list[dict[str, Any]]:
        """The items stored in ``table`` (shallow copies), in scan order."""
        with self._lock:
            t = self._tables.get(table)
            if t is None:
                raise KeyError(table)
            return [dict(t.items[k[1:]]) for k in t.sorted_keys()]

    def table_names(self) -> list[str]:
        with self._lock:
            return sorted(self._tables)

    # request handling ------------------------------------------------------------

    def _charge(self, wcu: float, now: float) -> None:
        self._wcu_total += wcu
        s = int(now - self._t0)
        self._wcu_by_second[s] = self._wcu_by_second.get(s, 0.0) + wcu

    def handle(self, target: Optional[str], body: bytes) -> Any:
        """Answer one DynamoDB request: (status, JSON bytes), or _DROP."""
        with self._lock:
            self._in_flight += 1
            self._in_flight_peak = max(self._in_flight_peak, self._in_flight)
        try:
            return self._handle(target, body)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _handle(self, target: Optional[str], body: bytes) -> Any:
        if not target or not target.startswith(TARGET_PREFIX):
            with self._lock:
                self._requests["error"] += 1
            return _error_body(EmulatorError("UnknownOperationException", "Missing or unknown X-Amz-Target"))
        op = target[len(TARGET_PREFIX):]
        fn = self._ops.get(op)
        if fn is None:
            with self._lock:
                self._requests["error"] += 1
            return _error_body(EmulatorError("UnknownOperationException", "Operation %s is not supported" % op))
        try:
            req = json.loads(body) if body else {}
            if not isinstance(req, dict):
                raise ValueError
        except ValueError:
            with self._lock:
                self._requests["error"] += 1
            return _error_body(
                EmulatorError("SerializationException", "Start of structure or map found where not expected")
            )
        if self._latency_s:
            time.sleep(self._latency_s)
        with self._lock:
            self._ops_count[op] = self._ops_count.get(op, 0) + 1
            if op in self._fault_ops:
                f = self._faults
                p_drop = f["drop_connection_fraction"]
                p_5xx = f["error_5xx_fraction"]
                p_thr = f["throttle_fraction"]
                if p_drop or p_5xx or p_thr:
                    r = self._rng.random()
                    if r < p_drop:
                        self._requests["dropped"] += 1
                        self._faults_injected["drop"] += 1
                        return _DROP
                    if r < p_drop + p_5xx:
                        self._requests["5xx"] += 1
                        self._faults_injected["5xx"] += 1
                        return _error_body(EmulatorError("InternalServerError", "Internal server error", 500))
                    if r < p_drop + p_5xx + p_thr:
                        self._requests["throttled"] += 1
                        self._faults_injected["throttle"] += 1
                        name = f["throttle_error"]
                        return _error_body(EmulatorError(name, THROTTLE_ERRORS[name]))
            try:
                if op == "BatchWriteItem" and len(body) > MAX_REQUEST_BYTES:
                    raise _validation("Request size exceeded 16 MB")
                resp, outcome = fn(req)
            except EmulatorError as e:
                if e.name in THROTTLE_ERRORS:
                    self._requests["throttled"] += 1
                elif e.status >= 500:
                    self._requests["5xx"] += 1
                else:
                    self._requests["error"] += 1
                return _error_body(e)
            except Exception as e:  # noqa: BLE001 - a malformed request we did not anticipate: answer, not crash
                self._requests["error"] += 1
                return _error_body(_validation("Malformed request: %s: %s" % (type(e).__name__, e)))
            self._requests[outcome] += 1
        return 200, json.dumps(resp, separators=(",", ":")).encode("utf-8")

    def _table(self, name: Any) -> _Table:
        t = self._tables.get(name)
        if t is None:
            raise _not_found()
        return t

    # control plane ---------------------------------------------------------------

    def _op_create_table(self, req: dict[str, Any]) -> tuple[dict[str, Any], str]:
        name = req.get("TableName")
        if name in self._tables:
            raise EmulatorError("ResourceInUseException", "Table already exists: %s" % name)
        t = _Table(req, self.region, self._clock())
        self._configure_bucket(t)
        self._tables[t.name] = t
        return {"TableDescription": t.description()}, "ok"

    def _op_describe_table(self, req: dict[str, Any]) -> tuple[dict[str, Any], str]:
        name = req.get("TableName")
        t = self._tables.get(name)
        if t is None:
            raise _not_found("Requested resource not found: Table: %s not found" % name)
        return {"Table": t.description()}, "ok"

    def _op_update_table(self, req: dict[str, Any]) -> tuple[dict[str, Any], str]:
        t = self._table(req.get("TableName"))
        _reject_unsupported(req, ("GlobalSecondaryIndexUpdates", "StreamSpecification", "ReplicaUpdates"))
        t._apply_capacity(req, creating=False)
        self._configure_bucket(t)
        return {"TableDescription": t.description()}, "ok"

    def _op_delete_table(self, req: dict[str, Any]) -> tuple[dict[str, Any], str]:
        t = self._table(req.get("TableName"))
        del self._tables[t.name]
        return {"TableDescription": t.description("DELETING")}, "ok"

    def _op_list_tables(self, req: dict[str, Any]) -> tuple[dict[str, Any], str]:
        names = sorted(self._tables)
        start = req.get("ExclusiveStartTableName")
        if start:
            names = names[bisect.bisect_right(names, start):]
        limit = req.get("Limit") or 100
        resp: dict[str, Any] = {"TableNames": names[:limit]}
        if len(names) > limit:
            resp["LastEvaluatedTableName"] = names[limit - 1]
        return resp, "ok"

    def _op_describe_limits(self, req: dict[str, Any]) -> tuple[dict[str, Any], str]:
        return {
            "AccountMaxReadCapacityUnits": 80000,
            "AccountMaxWriteCapacityUnits": 80000,
            "TableMaxReadCapacityUnits": 40000,
            "TableMaxWriteCapacityUnits": 40000,
        }, "ok"

    # writes ------------------------------------------------------------------------

    def _throttle(self, t: _Table) -> EmulatorError:
        self._budget_throttles += 1
        name = t.budget_error
        return EmulatorError(name, THROTTLE_ERRORS[name])

    @staticmethod
    def _single_capacity(req: dict[str, Any], table: str, units: float) -> Optional[dict[str, Any]]:
        rcc = req.get("ReturnConsumedCapacity")
        if rcc == "TOTAL":
            return {"TableName": table, "CapacityUnits": units}
        if rcc == "INDEXES":
            return {"TableName": table, "CapacityUnits": units, "Table": {"CapacityUnits": units}}
        return None

    def _op_put_item(self, req: dict[str, Any]) -> tuple[dict[str, Any], str]:
        t = self._table(req.get("TableName"))
        _reject_unsupported(req, ("ConditionExpression", "Expected"))
        item = req.get("Item")
        key = t.key_of_item(item)
        size = item_size(item)
        if size > MAX_ITEM_BYTES:
            raise _validation("Item size has exceeded the maximum allowed size")
        cost = _write_units(size)
        now = self._clock()
        if not t.bucket.take(cost, now):
            raise self._throttle(t)
        old = t.put(key, item, size)
        self._items_written += 1
        self._charge(cost, now)
        resp: dict[str, Any] = {}
        if req.get("ReturnValues") == "ALL_OLD" and old is not None:
            resp["Attributes"] = old
        cc = self._single_capacity(req, t.name, float(cost))
        if cc is not None:
            resp["ConsumedCapacity"] = cc
        return resp, "ok"

    def _op_delete_item(self, req: dict[str, Any]) -> tuple[dict[str, Any], str]:
        t = self._table(req.get("TableName"))
        _reject_unsupported(req, ("ConditionExpression", "Expected"))
        key = t.key_of_key(req.get("Key"))
        now = self._clock()
        if not t.bucket.take(1, now):
            raise self._throttle(t)
        old = t.delete(key)
        self._delete_requests += 1
        if old is not None:
            self._items_deleted += 1
        self._charge(1, now)
        resp: dict[str, Any] = {}
        if req.get("ReturnValues") == "ALL_OLD" and old is not None:
            resp["Attributes"] = old
        cc = self._single_capacity(req, t.name, 1.0)
        if cc is not None:
            resp["ConsumedCapacity"] = cc
        return resp, "ok"

    def _op_batch_write_item(self, req: dict[str, Any]) -> tuple[dict[str, Any], str]:
        request_items = req.get("RequestItems")
        if not isinstance(request_items, dict) or not request_items:
            raise _validation(
                "1 validation error detected: Value null at 'requestItems' failed to satisfy constraint: "
                "Member must not be null"
            )
        total = 0
        for reqs in request_items.values():
            if not isinstance(reqs, list) or not reqs:
                raise _validation(
                    "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: "
                    "Map value must satisfy constraint: [Member must have length greater than or equal to 1]"
                )
            total += len(reqs)
        if total > MAX_BATCH_WRITE:
            raise _validation(
                "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Map value "
                "must satisfy constraint: [Member must have length less than or equal to 25, Member must have "
                "length greater than or equal to 1]"
            )
        # validate everything before writing anything
        plan = []  # (table, key, item or None, size, cost, request)
        for tname, reqs in request_items.items():
            t = self._table(tname)
            seen = set()
            for r in reqs:
                if not isinstance(r, dict) or len(r) != 1:
                    raise _validation("Supplied WriteRequest must contain exactly one of PutRequest or DeleteRequest")
                put = r.get("PutRequest")
                if put is not None:
                    item = put.get("Item")
                    key = t.key_of_item(item)
                    size = item_size(item)
                    if size > MAX_ITEM_BYTES:
                        raise _validation("Item size has exceeded the maximum allowed size")
                    cost = _write_units(size)
                else:
                    dele = r.get("DeleteRequest")
                    if dele is None:
                        raise _validation(_ONE_WRITE_REQUEST)
                    key = t.key_of_key(dele.get("Key"))
                    item, size, cost = None, 0, 1
                if key in seen:
                    raise _validation("Provided list of item keys contains duplicates")
                seen.add(key)
                plan.append((t, key, item, size, cost, r))
        now = self._clock()
        unp_frac = self._faults["unprocessed_fraction"] if "BatchWriteItem" in self._fault_ops else 0.0
        rng = self._rng
        unprocessed: dict[str, list[Any]] = {}
        consumed = {n: 0.0 for n in request_items}
        blocked: dict[str, _Table] = {}
        done = 0
        fault_unprocessed = 0
        for t, key, item, size, cost, r in plan:
            if t.name in blocked:
                unprocessed.setdefault(t.name, []).append(r)
                continue
            if unp_frac and rng.random() < unp_frac:
                unprocessed.setdefault(t.name, []).append(r)
                fault_unprocessed += 1
                continue
            if not t.bucket.take(cost, now):
                blocked[t.name] = t
                unprocessed.setdefault(t.name, []).append(r)
                continue
            if item is not None:
                t.put(key, item, size)
                self._items_written += 1
            else:
                self._delete_requests += 1
                if t.delete(key) is not None:
                    self._items_deleted += 1
            consumed[t.name] += cost
            done += 1
        if done == 0 and blocked and not fault_unprocessed:
            raise self._throttle(next(iter(blocked.values())))
        self._faults_injected["unprocessed_items"] += fault_unprocessed
        n_unprocessed = len(plan) - done
        self._items_unprocessed += n_unprocessed
        wcu = sum(consumed.values())
        if wcu:
            self._charge(wcu, now)
        resp: dict[str, Any] = {"UnprocessedItems": unprocessed}
        rcc = req.get("ReturnConsumedCapacity")
        if rcc == "TOTAL":
            resp["ConsumedCapacity"] = [{"TableName": n, "CapacityUnits": u} for n, u in consumed.items()]
        elif rcc == "INDEXES":
            resp["ConsumedCapacity"] = [
                {"TableName": n, "CapacityUnits": u, "Table": {"CapacityUnits": u}} for n, u in consumed.items()
            ]
        return resp, ("partial" if n_unprocessed else "ok")

    # reads -------------------------------------------------------------------------

    def _op_get_item(self, req: dict[str, Any]) -> tuple[dict[str, Any], str]:
        t = self._table(req.get("TableName"))
        key = t.key_of_key(req.get("Key"))
        names = _projection(req)
        item = t.items.get(key)
        resp: dict[str, Any] = {}
        if item is not None:
            resp["Item"] = _project(item, names)
        units = _read_units(t.sizes.get(key, 0), bool(req.get("ConsistentRead")))
        cc = self._single_capacity(req, t.name, units)
        if cc is not None:
            resp["ConsumedCapacity"] = cc
        return resp, "ok"

    def _op_batch_get_item(self, req: dict[str, Any]) -> tuple[dict[str, Any], str]:
        request_items = req.get("RequestItems")
        if not isinstance(request_items, dict) or not request_items:
            raise _validation("1 validation error detected: Value null at 'requestItems' failed to satisfy constraint")
        total = sum(len(v.get("Keys") or []) for v in request_items.values())
        if total > MAX_BATCH_GET:
            raise _validation("Too many items requested for the BatchGetItem call")
        responses: dict[str, list[Any]] = {}
        capacity = []
        for tname, spec in request_items.items():
            t = self._table(tname)
            keys = spec.get("Keys") or []
            if not keys:
                raise _validation(
                    "1 validation error detected: Value at 'requestItems.%s.member.keys' failed to satisfy constraint"
                    % tname
                )
            names = _projection(spec)
            consistent = bool(spec.get("ConsistentRead"))
            parsed = [t.key_of_key(k) for k in keys]
            if len(set(parsed)) != len(parsed):
                raise _validation("Provided list of item keys contains duplicates")
            out = []
            units = 0.0
            for key in parsed:
                item = t.items.get(key)
                if item is not None:
                    out.append(_project(item, names))
                    units += _read_units(t.sizes[key], consistent)
            responses[tname] = out
            capacity.append({"TableName": tname, "CapacityUnits": units})
        resp: dict[str, Any] = {"Responses": responses, "UnprocessedKeys": {}}
        rcc = req.get("ReturnConsumedCapacity")
        if rcc == "TOTAL":
            resp["ConsumedCapacity"] = capacity
        elif rcc == "INDEXES":
            resp["ConsumedCapacity"] = [dict(c, Table={"CapacityUnits": c["CapacityUnits"]}) for c in capacity]
        return resp, "ok"

    def _op_scan(self, req: dict[str, Any]) -> tuple[dict[str, Any], str]:
        t = self._table(req.get("TableName"))
        _reject_unsupported(req, ("FilterExpression", "ScanFilter", "IndexName"))
        seg, total = req.get("Segment"), req.get("TotalSegments")
        if (seg is None) != (total is None):
            raise _validation(
                "The TotalSegments parameter is required but was not present in the request when Segment "
                "parameter is present" if total is None else
                "The Segment parameter is required but was not present in the request when parameter "
                "TotalSegments is present"
            )
        if total is None:
            seg, total = 0, 1
        elif not (isinstance(total, int) and 1 <= total <= 1000000 and isinstance(seg, int) and 0 <= seg < total):
            raise _validation("The Segment parameter is zero-based and must be less than parameter TotalSegments")
        limit = req.get("Limit")
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise _validation(
                "1 validation error detected: Value at 'limit' failed to satisfy constraint: "
                "Member must have value greater than or equal to 1"
            )
        select = req.get("Select") or "ALL_ATTRIBUTES"
        if select not in ("ALL_ATTRIBUTES", "COUNT", "SPECIFIC_ATTRIBUTES"):
            raise _validation("Select %s is not supported by the emulator" % select)
        names = _projection(req)
        keys = t.sorted_keys()
        lo = bisect.bisect_left(keys, ((seg * _HASH_SPACE) // total,))
        hi = bisect.bisect_left(keys, (((seg + 1) * _HASH_SPACE) // total,)) if seg + 1 < total else len(keys)
        esk = req.get("ExclusiveStartKey")
        if esk:
            k = t.key_of_key(esk)
            lo = max(lo, bisect.bisect_right(keys, (zlib.crc32(_component_bytes(k[0])),) + k))
        end = hi if limit is None else min(hi, lo + limit)
        items = t.items
        sizes = t.sizes
        out = []
        read_bytes = 0
        i = lo
        while i < end:
            key = keys[i][1:]
            read_bytes += sizes[key]
            out.append(items[key])
            i += 1
            if read_bytes >= SCAN_PAGE_BYTES:
                break
        resp: dict[str, Any] = {}
        if select != "COUNT":
            resp["Items"] = out if names is None else [_project(it, names) for it in out]
        resp["Count"] = len(out)
        resp["ScannedCount"] = len(out)
        # Like DynamoDB: a page cut by Limit or by the 1 MB cap carries a
        # LastEvaluatedKey, even when nothing is left after it.
        if out and (i < hi or (limit is not None and len(out) == limit)):
            resp["LastEvaluatedKey"] = t.key_dict(out[-1])
        units = max(1, -(-read_bytes // 4096)) * (1.0 if req.get("ConsistentRead") else 0.5)
        cc = self._single_capacity(req, t.name, units)
        if cc is not None:
            resp["ConsumedCapacity"] = cc
        return resp, "ok"

    # admin -------------------------------------------------------------------------

    def handle_admin(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        parts = urlsplit(path)
        action = parts.path[len(ADMIN_PREFIX):].strip("/")
        try:
            args = json.loads(body) if body else {}
            if not isinstance(args, dict):
                raise ValueError("JSON object expected")
            if method == "GET" and action == "metrics":
                out: Any = self.metrics()
            elif method == "GET" and action == "items":
                table = (parse_qs(parts.query).get("table") or [None])[0]
                out = {"items": self.items(table)} if table else {"tables": self.table_names()}
            elif method == "GET" and action == "faults":
                out = self.faults()
            elif method == "POST" and action == "faults":
                out = self.set_faults(**args)
            elif method == "POST" and action == "reset":
                self.reset()
                out = {"reset": True}
            elif method == "POST" and action == "rate":
                self.set_write_rate(args.get("table"), args.get("wcu"), args.get("burst_s"))
                out = {"table": args.get("table"), "wcu": args.get("wcu")}
            elif method == "POST" and action == "latency":
                self.set_latency(float(args.get("latency_s", 0.0)))
                out = {"latency_s": self._latency_s}
            elif method == "POST" and action == "down":
                self.set_down(bool(args.get("down", True)))
                out = {"down": self._down}
            else:
                return 404, json.dumps({"error": "unknown admin path %s %s" % (method, parts.path)}).encode()
        except (ValueError, TypeError, KeyError) as e:
            return 400, json.dumps({"error": "%s: %s" % (type(e).__name__, e)}).encode()
        return 200, json.dumps(out).encode()


def _error_body(e: EmulatorError) -> tuple[int, bytes]:
    return e.status, json.dumps({"__type": ERROR_PREFIX + e.name, "message": e.message}).encode("utf-8")


# --------------------------------------------------------------------------
# HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._conns: set = set()
        self._conns_lock = threading.Lock()
        self.emulator: Optional[DynamoDBEmulator] = None
        super().__init__(*args, **kwargs)

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def close_all_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # client went away; nothing to report


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "idstore-dynamodb-emulator"
    _request_counter = 0

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.server.track(self.connection, True)  # type: ignore[attr-defined]

    def finish(self) -> None:
        self.server.track(self.connection, False)  # type: ignore[attr-defined]
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, status: int, payload: bytes, content_type: str = CONTENT_TYPE) -> None:
        _Handler._request_counter += 1
        head = (
            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            "x-amzn-RequestId: EMU%012d\r\nx-amz-crc32: %d\r\n%s\r\n"
            % (
                status,
                _REASONS.get(status, "Error"),
                content_type,
                len(payload),
                _Handler._request_counter,
                zlib.crc32(payload),
                "Connection: close\r\n" if self.close_connection else "",
            )
        ).encode("latin-1")
        self.wfile.write(head + payload)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_POST(self) -> None:
        emu = self.server.emulator  # type: ignore[attr-defined]
        if self.path.startswith(ADMIN_PREFIX):
            status, payload = emu.handle_admin("POST", self.path, self._body())
            self._send(status, payload, "application/json")
            return
        if emu._down:
            with emu._lock:
                emu._requests["refused"] += 1
            self._drop()
            return
        result = emu.handle(self.headers.get("X-Amz-Target"), self._body())
        if result is _DROP:
            self._drop()
            return
        self._send(result[0], result[1])

    def do_GET(self) -> None:
        emu = self.server.emulator  # type: ignore[attr-defined]
        if self.path.startswith(ADMIN_PREFIX):
            status, payload = emu.handle_admin("GET", self.path, b"")
            self._send(status, payload, "application/json")
            return
        if emu._down:
            self._drop()
            return
        self._send(200, b'{"healthy":true,"service":"dynamodb-emulator"}', "application/json")


# --------------------------------------------------------------------------
# command line


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m idstore_tools.testing.emulator",
        description="Serve a DynamoDB capacity emulator until killed; prints its endpoint URL first.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = any free port (default)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="per-request latency in ms")
    p.add_argument(
        "--write-rate", type=float, default=None,
        help="WCU/s for every table; 0 = unlimited; omitted = each table's provisioned WCU",
    )
    p.add_argument("--burst-s", type=float, default=1.0, help="token bucket size in seconds of the rate")
    p.add_argument("--unprocessed-fraction", type=float, default=0.0)
    p.add_argument("--error-5xx-fraction", type=float, default=0.0)
    p.add_argument("--throttle-fraction", type=float, default=0.0)
    p.add_argument(
        "--throttle-error", default="ProvisionedThroughputExceededException", choices=sorted(THROTTLE_ERRORS)
    )
    p.add_argument("--drop-connection-fraction", type=float, default=0.0)
    p.add_argument(
        "--fault-ops", default=",".join(DEFAULT_FAULT_OPS), help="comma-separated operations faults apply to"
    )
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--region", default="us-east-1")
    a = p.parse_args(argv)
    emu = DynamoDBEmulator(
        host=a.host,
        port=a.port,
        latency_s=a.latency_ms / 1000.0,
        write_rate=a.write_rate,
        burst_s=a.burst_s,
        unprocessed_fraction=a.unprocessed_fraction,
        error_5xx_fraction=a.error_5xx_fraction,
        throttle_fraction=a.throttle_fraction,
        throttle_error=a.throttle_error,
        drop_connection_fraction=a.drop_connection_fraction,
        fault_ops=[o for o in a.fault_ops.split(",") if o],
        seed=a.seed,
        region=a.region,
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    emu.start()
    sys.stdout.write(emu.endpoint_url + "\n")
    sys.stdout.flush()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
