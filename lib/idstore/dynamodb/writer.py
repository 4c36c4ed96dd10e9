"""The per-partition DynamoDB batch writer, run inside mapInArrow on the executors.

Arrow batches of ids (and attribute columns) come in; one stats row per partition goes
out (`stats.TaskStats`). The task's thread reads rows, drops duplicate keys, rejects
what DynamoDB would refuse and queues the rest (`retry_queue`); `in_flight` sender
threads take batches of at most 25 requests and 16 MB from the queue (never two
requests for one key: a key is queued once per partition), pace them with the task's
token bucket and send them (`transport`). The bucket's rate is the task's share of the
job's budget, leased from the driver while the task runs (`lease`), cut after throttles
(`rate.AimdRate`). Items returned unprocessed, and whole batches that failed with a
throttle, 5xx or connection error, go back to the queue with a full-jitter backoff
(`retry`) and are merged into later batches. When nothing has been written for
`no_progress_timeout_s` while work was pending, the task fails loudly, naming what it
did not write; Spark retries it (puts and deletes are idempotent).
"""
import random
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

import pyarrow as pa

from idstore.dynamodb import items as I
from idstore.dynamodb.lease import LeaseClient, LeaseTiming
from idstore.dynamodb.rate import CARRIED, BudgetLeft, requests_in_flight, task_budget
from idstore.dynamodb.retry import backoff, error_code, retry_reason
from idstore.dynamodb.retry_queue import Aborted, Request, RetryQueue
from idstore.dynamodb.stats import STATS_SCHEMA, Counts, TaskStats
from idstore.dynamodb.transport import batch_write_call


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
    lease_timing: LeaseTiming = LeaseTiming()

    def sender_threads(self) -> int:
        return self.in_flight or requests_in_flight(self.task_rate, floor=self.max_in_flight)


class _Tally:
    """The task's running counts; several sender threads add to them."""

    def __init__(self, progress) -> None:
        self.lock = threading.Lock()
        self.counts = Counts()
        self.latencies_ms: List[float] = []
        self.progress = progress  # the driver's progress line: items written

    def add(self, delta: Counts) -> None:
        with self.lock:
            self.counts += delta

    def add_answer(self, delta: Counts, latency_ms: float) -> None:
        """What one answered call did, and how long it took."""
        with self.lock:
            self.counts += delta
            self.latencies_ms.append(latency_ms)
            self.progress.update(self.counts.written)  # under the lock: counts go out in order


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
        self.bucket, self.rate = task_budget(settings.task_rate, settings.burst_s, CARRIED.left(settings.write_id),
                                             self.leased, clock)
        self.rng = rng or random.Random()
        self.partition_id = partition_id
        self.sender = ProgressSender(settings.progress_address, partition_id)
        self.tally = _Tally(self.sender)
        # enough queued for every sender to take full batches twice over
        self.queue = RetryQueue(limit=max(200, 2 * I.MAX_BATCH_REQUESTS * self.threads), clock=clock)
        self.last_error = ""
        self.lease: Optional[LeaseClient] = None
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
        s = self.settings
        self.lease = LeaseClient(s.lease_address, s.lease_token, s.task_rate, self.set_share, s.lease_timing,
                                 name=f"DynamoDB write to {s.table}, partition {self.partition_id}")
        self.lease.start()

    def _end_lease(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.tally.add(Counts(lease_renewals=self.lease.renewals, lease_fallbacks=self.lease.fallbacks))

    # -- reading rows -------------------------------------------------------------------
    def _read(self, rows: Iterable[Tuple[Any, Mapping[str, Any]]]) -> None:
        """Queue every valid, first-seen key's request; count the others by reason."""
        action, key_attribute = self.settings.action, self.settings.key_attribute
        seen = set()
        chunk: List[Request] = []
        items_in, duplicates, rejected = 0, 0, Counter()  # rejected: by reason
        for key, attributes in rows:
            items_in += 1
            problem = I.key_problem(key)
            if problem is None:
                key = key if isinstance(key, str) else str(key)
                if key in seen:
                    duplicates += 1
                    continue
                seen.add(key)
                request, size = I.build_request(action, key_attribute, key, attributes)
                problem = "item_too_large" if size > I.MAX_ITEM_BYTES else None
            if problem:
                rejected[problem] += 1
                continue
            chunk.append(Request(key, request, size))
            if len(chunk) == I.MAX_BATCH_REQUESTS:
                self.tally.add(_read_counts(items_in, duplicates, rejected))
                items_in, duplicates, rejected = 0, 0, Counter()
                self.queue.put(chunk)
                chunk = []
        self.tally.add(_read_counts(items_in, duplicates, rejected))
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
        estimate = float(sum(request.wcu for request in batch))
        waited = self.bucket.acquire(estimate)
        started = self.clock()
        try:
            response = self._call([request.request for request in batch])
        except Exception as exc:  # noqa: BLE001 - classified by _on_error
            self._on_error(batch, exc, estimate, waited)
            return
        self._on_response(batch, response, estimate, waited, (self.clock() - started) * 1000.0)

    def _on_error(self, batch: List[Request], exc: Exception, estimate: float, waited: float) -> None:
        """The call failed: after a transient error the batch goes back with a backoff; any other
        error fails the task."""
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
        self.tally.add(Counts(requests=1, budget_wait_s=waited, throttled_s=delay if reason == "throttle" else 0.0,
                              **{f"retries_{reason}": 1}))
        self._check_deadline(batch)
        self.queue.done(batch, self.clock() + delay, wrote=False)

    def _on_response(self, batch: List[Request], response: Dict, estimate: float, waited: float,
                     latency_ms: float) -> None:
        """DynamoDB answered: what it returned unprocessed goes back with a backoff."""
        settings = self.settings
        leftovers, written = _split_unprocessed(batch, response, settings.table, settings.key_attribute)
        consumed = _consumed_wcu(response, written)
        self.bucket.adjust(estimate - consumed)  # refund or charge the difference
        self.rate.record(len(batch), len(leftovers))
        delay = self._backoff(leftovers, progress=bool(written)) if leftovers else 0.0
        acknowledged, deletes = len(written), settings.action == I.DELETE
        self.tally.add_answer(Counts(
            requests=1, requests_partial=1 if leftovers else 0, written=acknowledged,
            put=0 if deletes else acknowledged, deleted=acknowledged if deletes else 0, consumed_wcu=consumed,
            unprocessed_resent=len(leftovers), throttled_s=delay, budget_wait_s=waited,
        ), latency_ms)
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
        c = self.tally.counts
        return (
            f"DynamoDB write to {self.settings.table} failed in partition {self.partition_id}: {why}. "
            f"Not written: {len(keys)} {self.settings.action} requests queued or in this batch "
            f"[{shown}] (other calls still in flight are not listed), and every row of the partition "
            f"after the {c.items_in} read so far. Written before: {c.written}; "
            f"rejected {c.rejected}, duplicates {c.duplicates}; calls {c.requests}, "
            f"throttled {c.retries_throttle}, 5xx {c.retries_5xx}, connection errors {c.retries_connection}. "
            f"Spark retries the task; puts and deletes are idempotent."
        )

    # -- the partition ------------------------------------------------------------------
    def run(self, rows: Iterable[Tuple[Any, Mapping[str, Any]]], partition_id: Optional[int] = None) -> TaskStats:
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
            self._end_lease()
            CARRIED.leave(self.settings.write_id, BudgetLeft(self.bucket.balance(), self.clock(), self.rate.fraction))
        if self.queue.error is not None:
            raise self.queue.error
        self.sender.update(self.tally.counts.written, force=True)
        ended = self.clock()
        return self.stats(self.partition_id, ended - started, ended)

    def stats(self, partition_id: int, seconds: float, until: Optional[float] = None) -> TaskStats:
        """The stats row of a task that ran for `seconds` until `until` (default: now)."""
        latencies = sorted(self.tally.latencies_ms)
        share = (self._mean_share(self.clock() if until is None else until, seconds) if self.leased
                 else self.settings.task_rate)
        return TaskStats(
            **asdict(replace(self.tally.counts, rate_cuts=self.rate.cuts)),
            partition_id=int(partition_id),
            task_rate=float(share),
            in_flight=int(self.threads),
            latency_p50_ms=_percentile(latencies, 0.50),
            latency_p99_ms=_percentile(latencies, 0.99),
            seconds=float(seconds),
        )


def _read_counts(items_in: int, duplicates: int, rejected: Mapping[str, int]) -> Counts:
    return Counts(items_in=items_in, duplicates=duplicates, rejected=sum(rejected.values()),
                  **{f"rejected_{reason}": n for reason, n in rejected.items()})


def _split_unprocessed(batch: List[Request], response: Dict, table: str,
                       key_attribute: str) -> Tuple[List[Request], List[Request]]:
    """(returned as UnprocessedItems, written): the batch split by the call's answer."""
    unprocessed = response.get("UnprocessedItems", {}).get(table, [])
    if not unprocessed:
        return [], batch
    left = {_request_key(r, key_attribute) for r in unprocessed}
    return [r for r in batch if r.key in left], [r for r in batch if r.key not in left]


def _consumed_wcu(response: Dict, written: List[Request]) -> float:
    """What the call consumed: every written item costs at least its own WCU, whatever an
    endpoint reports (moto always reports 1.0)."""
    reported = sum(c.get("CapacityUnits", 0.0) for c in response.get("ConsumedCapacity", []) or [])
    return max(float(reported), float(sum(request.wcu for request in written)))


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
        stats = writer.run(rows_from_arrow(batches, key_column, settings.constant_attributes), partition_id)
        yield pa.RecordBatch.from_pylist([stats.row()], schema=STATS_SCHEMA)

    return write
