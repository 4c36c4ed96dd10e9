"""The per-partition DynamoDB batch writer, run inside mapInArrow on the executors.

Arrow batches of ids (and attribute columns) come in; one stats row per partition goes
out. The task's thread reads rows, drops duplicate keys, rejects what DynamoDB would
refuse and queues the rest (`retry_queue`); `in_flight` sender threads take batches of
at most 25 requests and 16 MB from the queue (never two requests for one key: a key is
queued once per partition), pace them with the task's token bucket and send them
(`transport`). The bucket's rate is the task's share of the job's budget, leased from
the driver while the task runs (`lease`), cut after throttles (`rate.AimdRate`). Items
returned unprocessed, and whole batches that failed with a throttle, 5xx or connection
error, go back to the queue with a full-jitter backoff and are merged into later
batches. When nothing has been written for `no_progress_timeout_s` while work was
pending, the task fails loudly, naming what it did not write; Spark retries it (puts
and deletes are idempotent).
"""
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

import pyarrow as pa

from idstore.dynamodb import items as I
from idstore.dynamodb.rate import AimdRate, TokenBucket, requests_in_flight
from idstore.dynamodb.retry import error_code, retry_reason
from idstore.dynamodb.retry_queue import Aborted, Request, RetryQueue, backoff
from idstore.dynamodb.transport import batch_write_call

_INT, _FLOAT = pa.int64(), pa.float64()
STATS_FIELDS = (
    ("partition_id", _INT),
    ("items_in", _INT),  # rows read
    ("put", _INT),  # put requests acknowledged by DynamoDB
    ("deleted", _INT),  # delete requests acknowledged (the key may have been absent)
    ("written", _INT),  # put + deleted
    ("duplicates", _INT),  # rows whose key this partition had already queued
    ("rejected", _INT),  # sum of rejected_<reason>
    *((f"rejected_{reason}", _INT) for reason in I.REJECTION_REASONS),
    ("requests", _INT),  # BatchWriteItem calls, retries included
    ("requests_partial", _INT),  # answered with some UnprocessedItems
    ("retries_throttle", _INT),  # calls answered with a throttle error
    ("retries_5xx", _INT),
    ("retries_connection", _INT),
    ("unprocessed_resent", _INT),  # requests returned as UnprocessedItems and queued again
    ("rate_cuts", _INT),  # times the task cut its rate (throttle errors, mostly-unprocessed calls)
    ("consumed_wcu", _FLOAT),
    ("throttled_s", _FLOAT),  # backoff scheduled after throttles and unprocessed items
    ("budget_wait_s", _FLOAT),  # time spent waiting for the task's own token bucket
    ("task_rate", _FLOAT),  # the task's share of the budget, WCU/s (leased: its mean over the task)
    ("lease_renewals", _INT),  # grants received from the driver's lease service
    ("lease_fallbacks", _INT),  # times the task ran on the static share, the lease service unreachable
    ("in_flight", _INT),  # sender threads
    ("latency_p50_ms", _FLOAT),
    ("latency_p99_ms", _FLOAT),
    ("seconds", _FLOAT),
)
STATS_SCHEMA = pa.schema(STATS_FIELDS)
STATS_DDL = ", ".join(f"{name} {'bigint' if typ == _INT else 'double'}" for name, typ in STATS_FIELDS)
_DERIVED = ("partition_id", "task_rate", "in_flight", "latency_p50_ms", "latency_p99_ms", "seconds")


class WriteFailed(RuntimeError):
    """A task could not write its partition: the message says what was not written."""


@dataclass(frozen=True)
class WriterSettings:
    """Everything an executor needs; pickled into each task."""

    table: str
    key_attribute: str
    region: str
    endpoint_url: str
    task_rate: float  # WCU/s: the static split, the task's share when it holds no lease
    action: str = I.PUT  # put | delete
    max_in_flight: int = 4  # the floor of concurrent requests (dynamodb.max_in_flight)
    no_progress_timeout_s: float = 300.0
    constant_attributes: Mapping[str, Any] = field(default_factory=dict)
    burst_s: float = 1.0  # bucket size in seconds of the task rate
    backoff_base_s: float = 0.025
    backoff_cap_s: float = 5.0
    progress_address: Optional[Tuple[str, int]] = None
    in_flight: int = 0  # sender threads; 0 = enough for the task rate at 50 ms per call
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 10.0
    write_id: str = ""  # one write_dataframe call: its tasks hand their budget on within a worker
    lease_address: Optional[Tuple[str, int]] = None  # the driver's LeaseServer; None = the static split
    lease_token: str = ""  # the write's token: the lease server ignores requests without it
    lease_renew_s: float = 0.5
    lease_ttl_s: float = 3.0
    lease_wait_s: float = 1.0  # how long a task waits for its first grant before it falls back

    def sender_threads(self) -> int:
        return self.in_flight or requests_in_flight(self.task_rate, floor=self.max_in_flight)


_CARRIED: Dict[Tuple, Tuple[float, float, float]] = {}
_CARRIED_LOCK = threading.Lock()


def _budget_key(settings: WriterSettings) -> Tuple:
    return settings.write_id, settings.table, settings.endpoint_url, settings.task_rate


def _carried_budget(settings: WriterSettings) -> Optional[Tuple[float, float, float]]:
    """(tokens, when, rate fraction) the last task of this worker process left, for the same write."""
    with _CARRIED_LOCK:
        return _CARRIED.get(_budget_key(settings))


def _carry_budget(settings: WriterSettings, tokens: float, when: float, fraction: float) -> None:
    with _CARRIED_LOCK:
        _CARRIED.clear()  # only the latest write's state matters
        _CARRIED[_budget_key(settings)] = (tokens, when, fraction)


class _Stats:
    """The task's counters; several sender threads update them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Dict[str, float] = {name: 0 for name, _ in STATS_FIELDS}
        self.latencies_ms: List[float] = []

    def add(self, **deltas: float) -> None:
        with self.lock:
            for name, delta in deltas.items():
                self.counts[name] += delta


class PartitionWriter:
    """Writes one partition's requests; `run` returns its stats row."""

    def __init__(self, settings: WriterSettings, call=None, rng=None, partition_id: int = 0,
                 clock=time.monotonic):
        """`call(payload) -> response` sends one BatchWriteItem (default: transport.BatchWriteCall);
        `clock` is the monotonic clock of the bucket, the backoffs and the deadline."""
        from idstore.progress import ProgressSender

        self.settings = settings
        self.clock = clock
        self.threads = settings.sender_threads()
        self.call = call or batch_write_call(settings.region, settings.endpoint_url, settings.connect_timeout_s,
                                             settings.read_timeout_s, self.threads + 2)
        self.leased = settings.lease_address is not None
        burst = settings.task_rate * settings.burst_s
        carried = _carried_budget(settings) if settings.write_id else None
        if carried is None or self.leased:
            # a worker's first task starts with one batch's worth: no wait, no burst. A
            # leased task never inherits tokens: its slot's share went to the other tasks
            # in between (it inherits the throttle state, the rate's fraction of its share)
            self.bucket = TokenBucket(settings.task_rate, burst, initial=min(25.0, burst), clock=clock)
            fraction = carried[2] if carried else 1.0
        else:
            # Spark reuses Python workers: the previous task's bucket carries over, so the
            # seconds between two tasks of one slot are made up (up to the burst), not lost
            tokens, stamp, fraction = carried
            self.bucket = TokenBucket(settings.task_rate * fraction, burst,
                                      initial=tokens + (clock() - stamp) * settings.task_rate * fraction,
                                      clock=clock)
        self.rate = AimdRate(self.bucket, settings.task_rate, initial=fraction * settings.task_rate, clock=clock)
        self.rng = rng or random.Random()
        self.stats_ = _Stats()
        self.partition_id = partition_id
        self.sender = ProgressSender(settings.progress_address, partition_id)
        # enough queued for every sender to take full batches twice over
        self.queue = RetryQueue(limit=max(200, 2 * I.MAX_BATCH_REQUESTS * self.threads), clock=clock)
        self.last_error = ""
        self.lease = None
        self._share_lock = threading.Lock()
        self._share, self._share_since, self._share_seconds = settings.task_rate, clock(), 0.0

    # -- the share of the budget ----------------------------------------------------------
    def set_share(self, share: float) -> None:
        """The task's share of the job's budget changed (a lease grant, or the fallback)."""
        with self._share_lock:
            now = self.clock()
            self._share_seconds += self._share * (now - self._share_since)
            self._share, self._share_since = share, now
        self.rate.set_target(share, burst=share * self.settings.burst_s)

    def _mean_share(self, until: float, seconds: float) -> float:
        """The task's share of the budget, averaged over its `seconds` ending at `until`."""
        with self._share_lock:
            total = self._share_seconds + self._share * max(0.0, until - self._share_since)
            return total / seconds if seconds > 0 else self._share

    def _start_lease(self) -> None:
        from idstore.dynamodb.lease import LeaseClient

        s = self.settings
        self.lease = LeaseClient(s.lease_address, s.lease_token, s.task_rate, self.set_share,
                                 renew_s=s.lease_renew_s, ttl_s=s.lease_ttl_s, wait_s=s.lease_wait_s,
                                 name=f"DynamoDB write to {s.table}, partition {self.partition_id}")
        self.lease.start()

    # -- reading rows -------------------------------------------------------------------
    def _read(self, rows: Iterable[Tuple[Any, Mapping[str, Any]]]) -> None:
        """Queue every valid, first-seen key's request; count the others by reason."""
        action, key_attribute = self.settings.action, self.settings.key_attribute
        seen = set()
        chunk: List[Request] = []
        counts = {"items_in": 0, "duplicates": 0, "rejected": 0}
        counts.update({f"rejected_{reason}": 0 for reason in I.REJECTION_REASONS})
        for key, attributes in rows:
            counts["items_in"] += 1
            problem = I.key_problem(key)
            if problem is None:
                key = key if isinstance(key, str) else str(key)
                if key in seen:
                    counts["duplicates"] += 1
                    continue
                seen.add(key)
                request, size = I.build_request(action, key_attribute, key, attributes)
                problem = "item_too_large" if size > I.MAX_ITEM_BYTES else None
            if problem:
                counts[f"rejected_{problem}"] += 1
                counts["rejected"] += 1
                continue
            chunk.append(Request(key, request, size))
            if len(chunk) == I.MAX_BATCH_REQUESTS:
                self.stats_.add(**counts)
                counts = dict.fromkeys(counts, 0)
                self.queue.put(chunk)
                chunk = []
        self.stats_.add(**counts)
        if chunk:
            self.queue.put(chunk)

    # -- sending ------------------------------------------------------------------------
    def _send_loop(self) -> None:
        try:
            while True:
                batch = self.queue.take()
                if batch is None:
                    return
                self._attempt(batch)
        except BaseException as exc:  # noqa: BLE001 - handed to the task's thread
            self.queue.abort(exc)

    def _call(self, requests: List[Dict]) -> Dict:
        return self.call({"RequestItems": {self.settings.table: requests}, "ReturnConsumedCapacity": "TOTAL"})

    def _attempt(self, batch: List[Request]) -> None:
        """Send `batch` once; what is not written goes back to the queue with a backoff."""
        settings = self.settings
        estimate = float(sum(request.wcu for request in batch))
        waited = self.bucket.acquire(estimate)
        started = self.clock()
        try:
            response = self._call([request.request for request in batch])
        except Exception as exc:  # noqa: BLE001 - classified right below
            reason = retry_reason(exc)
            if reason is None:
                raise WriteFailed(self._unwritten(batch, f"a call failed with an error that will not heal: "
                                                         f"{error_code(exc)}: {exc}")) from exc
            self.last_error = f"{error_code(exc)}: {exc}"
            if reason == "throttle":
                self.rate.on_throttle()  # the tokens stay spent: attempts are paced too
            else:
                self.bucket.adjust(estimate)  # nothing was consumed
            delay = self._backoff(batch, progress=False)
            self.stats_.add(requests=1, budget_wait_s=waited, **{f"retries_{reason}": 1},
                            **({"throttled_s": delay} if reason == "throttle" else {}))
            self._check_deadline(batch)
            self.queue.done(batch, self.clock() + delay, wrote=False)
            return
        elapsed_ms = (self.clock() - started) * 1000.0
        unprocessed = response.get("UnprocessedItems", {}).get(settings.table, [])
        if unprocessed:
            left = {_request_key(r, settings.key_attribute) for r in unprocessed}
            leftovers = [request for request in batch if request.key in left]
            written = [request for request in batch if request.key not in left]
        else:
            leftovers, written = [], batch
        reported = sum(c.get("CapacityUnits", 0.0) for c in response.get("ConsumedCapacity", []) or [])
        # every written item costs at least its own WCU, whatever an endpoint reports
        consumed = max(float(reported), float(sum(request.wcu for request in written)))
        self.bucket.adjust(estimate - consumed)  # refund or charge the difference
        self.rate.record(len(batch), len(leftovers))
        delay = self._backoff(leftovers, progress=bool(written)) if leftovers else 0.0
        done_key = "deleted" if settings.action == I.DELETE else "put"
        with self.stats_.lock:
            counts = self.stats_.counts
            counts["requests"] += 1
            counts["requests_partial"] += 1 if leftovers else 0
            counts[done_key] += len(written)
            counts["written"] += len(written)
            counts["consumed_wcu"] += consumed
            counts["unprocessed_resent"] += len(leftovers)
            counts["throttled_s"] += delay
            counts["budget_wait_s"] += waited
            self.stats_.latencies_ms.append(elapsed_ms)
            self.sender.update(int(counts["written"]))
        if leftovers and not written:
            self.last_error = f"all {len(leftovers)} requests returned as UnprocessedItems"
            self._check_deadline(leftovers)
        self.queue.done(leftovers, self.clock() + delay, wrote=bool(written))

    def _backoff(self, requests: List[Request], progress: bool) -> float:
        return backoff(requests, progress, self.settings.backoff_base_s, self.settings.backoff_cap_s, self.rng)

    def _check_deadline(self, batch: List[Request]) -> None:
        idle = self.queue.stalled_for()
        timeout = self.settings.no_progress_timeout_s
        if idle > timeout:
            raise WriteFailed(self._unwritten(
                batch, f"nothing written for {idle:.1f}s (dynamodb.no_progress_timeout_s = {timeout:g}); "
                       f"last error: {self.last_error}"))

    def _unwritten(self, batch: List[Request], why: str) -> str:
        pending = batch + self.queue.waiting()
        keys = sorted(request.key for request in pending)
        shown = ", ".join(keys[:10]) + (", ..." if len(keys) > 10 else "")
        counts = self.stats_.counts
        return (
            f"DynamoDB write to {self.settings.table} failed in partition {self.partition_id}: {why}. "
            f"Not written: {len(keys)} {self.settings.action} requests queued or in this batch "
            f"[{shown}] (other calls still in flight are not listed), and every row of the partition "
            f"after the {int(counts['items_in'])} read so far. Written before: {int(counts['written'])}; "
            f"rejected {int(counts['rejected'])}, duplicates {int(counts['duplicates'])}; calls "
            f"{int(counts['requests'])}, throttled {int(counts['retries_throttle'])}, "
            f"5xx {int(counts['retries_5xx'])}, connection errors {int(counts['retries_connection'])}. "
            f"Spark retries the task; puts and deletes are idempotent."
        )

    # -- the partition ------------------------------------------------------------------
    def run(self, rows: Iterable[Tuple[Any, Mapping[str, Any]]],
            partition_id: Optional[int] = None) -> Dict[str, float]:
        if partition_id is not None:
            self.partition_id = partition_id
        started = self.clock()
        with self._share_lock:
            self._share_since = started
        if self.leased:
            self._start_lease()  # nothing is sent before the task knows its share
        senders = [threading.Thread(target=self._send_loop, name=f"ddb-writer-{i}", daemon=True)
                   for i in range(self.threads)]
        for thread in senders:
            thread.start()
        try:
            self._read(rows)
        except Aborted:
            pass  # a sender failed: its error is raised below
        except BaseException as exc:
            self.queue.abort(exc)
            raise
        finally:
            self.queue.close()
            for thread in senders:
                thread.join()
            if self.lease is not None:
                self.lease.release()
                self.stats_.add(lease_renewals=self.lease.renewals, lease_fallbacks=self.lease.fallbacks)
            _carry_budget(self.settings, self.bucket.balance(), self.clock(), self.rate.fraction)
        if self.queue.error is not None:
            raise self.queue.error
        self.sender.update(int(self.stats_.counts["written"]), force=True)
        ended = self.clock()
        return self.stats(self.partition_id, ended - started, ended)

    def stats(self, partition_id: int, seconds: float, until: Optional[float] = None) -> Dict[str, float]:
        """The stats row of a task that ran for `seconds` until `until` (default: now)."""
        counts = self.stats_.counts
        row: Dict[str, float] = {
            name: (int(counts[name]) if typ == _INT else float(counts[name]))
            for name, typ in STATS_FIELDS if name not in _DERIVED
        }
        latencies = sorted(self.stats_.latencies_ms)
        row.update(
            partition_id=int(partition_id),
            rate_cuts=int(self.rate.cuts),
            task_rate=float(self._mean_share(self.clock() if until is None else until, seconds)
                            if self.leased else self.settings.task_rate),
            in_flight=int(self.threads),
            latency_p50_ms=_percentile(latencies, 0.50),
            latency_p99_ms=_percentile(latencies, 0.99),
            seconds=float(seconds),
        )
        return {name: row[name] for name, _ in STATS_FIELDS}


def _request_key(request: Dict, key_attribute: str) -> str:
    body = request.get("PutRequest", {}).get("Item") or request["DeleteRequest"]["Key"]
    return body[key_attribute]["S"]


def _percentile(sorted_values: List[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return float(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))])


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
