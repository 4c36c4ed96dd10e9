"""The per-partition DynamoDB batch writer, run inside mapInArrow on the executors.

Arrow batches of ids (and attribute columns) come in; one stats row per partition goes
out. Batches hold at most 25 requests and 16 MB and never two requests for one key;
a token bucket holds the task's share of the write budget; UnprocessedItems and every
transient error are retried with full-jitter backoff until nothing has been written
for `no_progress_timeout_s`, and then the task fails loudly, naming what is unwritten.
"""
import random
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

import pyarrow as pa

from idstore.dynamodb import items as I
from idstore.dynamodb.retry import full_jitter, retry_reason

STATS_FIELDS = (
    ("partition_id", pa.int64()),
    ("items_in", pa.int64()),
    ("written", pa.int64()),
    ("duplicates", pa.int64()),
    ("rejected_key_too_long", pa.int64()),
    ("rejected_item_too_large", pa.int64()),
    ("requests", pa.int64()),
    ("unprocessed_resent", pa.int64()),
    ("retries_throttle", pa.int64()),
    ("retries_5xx", pa.int64()),
    ("retries_connection", pa.int64()),
    ("consumed_wcu", pa.float64()),
    ("throttled_s", pa.float64()),
    ("latency_p50_ms", pa.float64()),
    ("latency_p99_ms", pa.float64()),
    ("seconds", pa.float64()),
)
STATS_SCHEMA = pa.schema(STATS_FIELDS)
STATS_DDL = ", ".join(
    f"{name} {'bigint' if typ == pa.int64() else 'double'}" for name, typ in STATS_FIELDS
)


class WriteFailed(RuntimeError):
    """A task could not write its partition before the no-progress deadline."""


@dataclass(frozen=True)
class WriterSettings:
    """Everything an executor needs; pickled into each task."""

    table: str
    key_attribute: str
    region: str
    endpoint_url: str
    task_rate: float  # WCU/s for this task
    action: str = I.PUT  # put | delete
    max_in_flight: int = 4
    no_progress_timeout_s: float = 300.0
    constant_attributes: Mapping[str, Any] = field(default_factory=dict)
    burst_s: float = 1.0
    backoff_base_s: float = 0.025
    backoff_cap_s: float = 5.0
    progress_address: Optional[Tuple[str, int]] = None


def dynamodb_client(settings: WriterSettings):
    import boto3
    from botocore.config import Config

    config = Config(
        # retries are ours: botocore's would not know about the budget or the deadline
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=settings.max_in_flight + 2,
        connect_timeout=5,
        read_timeout=30,
    )
    return boto3.client(
        "dynamodb",
        region_name=settings.region,
        endpoint_url=settings.endpoint_url or None,
        config=config,
    )


class _Progress:
    """Shared counters of one task, guarded by a lock (several batches are in flight)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Dict[str, float] = {name: 0 for name, _ in STATS_FIELDS}
        self.latencies_ms: List[float] = []
        self.last_progress = time.monotonic()

    def add(self, **deltas: float) -> None:
        with self.lock:
            for name, delta in deltas.items():
                self.counts[name] += delta
            if deltas.get("written"):
                self.last_progress = time.monotonic()


class PartitionWriter:
    """Writes one partition's requests; `run` returns its stats row."""

    def __init__(self, settings: WriterSettings, client=None, rng=None, partition_id: int = 0):
        from idstore.dynamodb.rate import TokenBucket
        from idstore.progress import ProgressSender

        self.settings = settings
        self.client = client or dynamodb_client(settings)
        self.bucket = TokenBucket(settings.task_rate, settings.task_rate * settings.burst_s)
        self.rng = rng or random.Random()
        self.progress = _Progress()
        self.sender = ProgressSender(settings.progress_address, partition_id)

    # -- building batches -------------------------------------------------------------
    def batches(self, rows: Iterable[Tuple[str, Dict[str, Any]]]) -> Iterator[List[Tuple[str, Dict, int]]]:
        """Valid requests in batches of <= 25 requests and <= 16 MB, no key twice."""
        seen = set()
        batch: List[Tuple[str, Dict, int]] = []
        batch_bytes = 0
        for key, attributes in rows:
            self.progress.add(items_in=1)
            if key in seen:
                self.progress.add(duplicates=1)
                continue
            seen.add(key)
            request, size = I.build_request(
                self.settings.action, self.settings.key_attribute, key, attributes
            )
            reason = I.rejection(key, size)
            if reason:
                self.progress.add(**{f"rejected_{reason}": 1})
                continue
            if len(batch) == I.MAX_BATCH_REQUESTS or batch_bytes + size > I.MAX_BATCH_BYTES:
                yield batch
                batch, batch_bytes = [], 0
            batch.append((key, request, size))
            batch_bytes += size
        if batch:
            yield batch

    # -- sending ------------------------------------------------------------------------
    def send(self, batch: List[Tuple[str, Dict, int]]) -> None:
        """Send one batch until every request in it is written, or the deadline passes."""
        pending = {key: (request, size) for key, request, size in batch}
        attempt = 0
        while pending:
            estimate = sum(I.write_units(size) for _, size in pending.values())
            self.progress.add(throttled_s=self.bucket.acquire(estimate))
            started = time.monotonic()
            try:
                response = self.client.batch_write_item(
                    RequestItems={self.settings.table: [request for request, _ in pending.values()]},
                    ReturnConsumedCapacity="TOTAL",
                )
            except Exception as exc:  # noqa: BLE001 - classified right below
                reason = retry_reason(exc)
                if reason is None:
                    raise
                self.progress.add(requests=1, **{f"retries_{reason}": 1})
                attempt = self._back_off(attempt, pending)
                continue
            elapsed_ms = (time.monotonic() - started) * 1000.0
            unprocessed = response.get("UnprocessedItems", {}).get(self.settings.table, [])
            left = {_request_key(r, self.settings.key_attribute) for r in unprocessed}
            written = len(pending) - len(left)
            reported = sum(c.get("CapacityUnits", 0.0) for c in response.get("ConsumedCapacity", []))
            # every written item costs at least 1 WCU, whatever an emulator reports
            consumed = max(reported, float(written))
            self.bucket.adjust(estimate - consumed)  # refund or charge the difference
            with self.progress.lock:
                self.progress.latencies_ms.append(elapsed_ms)
            self.progress.add(
                requests=1, written=written, consumed_wcu=consumed, unprocessed_resent=len(left)
            )
            self.sender.update(int(self.progress.counts["written"]))
            pending = {key: value for key, value in pending.items() if key in left}
            attempt = 0 if written else attempt
            if pending:
                attempt = self._back_off(attempt, pending)

    def _back_off(self, attempt: int, pending: Mapping[str, Any]) -> int:
        idle = time.monotonic() - self.progress.last_progress
        if idle > self.settings.no_progress_timeout_s:
            sample = ", ".join(sorted(pending)[:5])
            raise WriteFailed(
                f"no item written to {self.settings.table} for {idle:.0f}s "
                f"(dynamodb.no_progress_timeout_s = {self.settings.no_progress_timeout_s:g}); "
                f"{len(pending)} requests of this batch unwritten, e.g. {sample}; "
                f"counts so far: {self._counts_text()}"
            )
        pause = full_jitter(attempt, self.settings.backoff_base_s, self.settings.backoff_cap_s, self.rng)
        self.progress.add(throttled_s=pause)
        time.sleep(pause)
        return attempt + 1

    def _counts_text(self) -> str:
        keys = ("items_in", "written", "retries_throttle", "retries_5xx", "retries_connection")
        return ", ".join(f"{k}={int(self.progress.counts[k])}" for k in keys)

    # -- the partition ------------------------------------------------------------------
    def run(self, rows: Iterable[Tuple[str, Dict[str, Any]]], partition_id: int = 0) -> Dict[str, float]:
        started = time.monotonic()
        in_flight = set()
        with ThreadPoolExecutor(max_workers=self.settings.max_in_flight) as pool:
            for batch in self.batches(rows):
                while len(in_flight) >= self.settings.max_in_flight:
                    done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    _raise_first(done)
                in_flight.add(pool.submit(self.send, batch))
            _raise_first(wait(in_flight).done)
        self.sender.update(int(self.progress.counts["written"]), force=True)
        return self.stats(partition_id, time.monotonic() - started)

    def stats(self, partition_id: int, seconds: float) -> Dict[str, float]:
        row = {
            name: int(value) if typ == pa.int64() else float(value)
            for (name, typ), value in zip(STATS_FIELDS, (self.progress.counts[n] for n, _ in STATS_FIELDS))
        }
        latencies = sorted(self.progress.latencies_ms)
        row.update(
            partition_id=partition_id,
            latency_p50_ms=_percentile(latencies, 0.50),
            latency_p99_ms=_percentile(latencies, 0.99),
            seconds=seconds,
        )
        return row


def _raise_first(done) -> None:
    for future in done:
        future.result()


def _request_key(request: Dict, key_attribute: str) -> str:
    body = request.get("PutRequest", {}).get("Item") or request["DeleteRequest"]["Key"]
    return body[key_attribute]["S"]


def _percentile(sorted_values: List[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def rows_from_arrow(batches: Iterable[pa.RecordBatch], key_column: str, constants: Mapping[str, Any]):
    """(key, attributes) pairs from Arrow batches: every non-key column is an attribute."""
    for batch in batches:
        keys = batch.column(batch.schema.get_field_index(key_column)).to_pylist()
        others = [name for name in batch.schema.names if name != key_column]
        if not others:
            for key in keys:
                yield key, constants
            continue
        columns = {name: batch.column(batch.schema.get_field_index(name)).to_pylist() for name in others}
        for i, key in enumerate(keys):
            attributes = dict(constants)
            attributes.update({name: values[i] for name, values in columns.items()})
            yield key, attributes


def partition_writer(settings: WriterSettings, key_column: str):
    """The function for DataFrame.mapInArrow: a partition's Arrow batches -> one stats batch."""

    def write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        context = TaskContext.get()
        partition_id = context.partitionId() if context else 0
        writer = PartitionWriter(settings, partition_id=partition_id)
        row = writer.run(rows_from_arrow(batches, key_column, settings.constant_attributes), partition_id)
        yield pa.RecordBatch.from_pylist([row], schema=STATS_SCHEMA)

    return write
