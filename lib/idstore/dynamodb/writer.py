"""The per-partition DynamoDB batch writer, run inside mapInArrow on the executors.

Arrow batches of ids (and attribute columns) come in; one stats row per partition goes
out. The task's thread reads rows, drops duplicate keys, rejects what DynamoDB would
refuse and queues the rest; `in_flight` sender threads take batches of at most 25
requests and 16 MB from the queue (never two requests for one key: a key is queued
once per partition), pace them with the task's token bucket and send them. Items
returned unprocessed, and whole batches that failed with a throttle, 5xx or connection
error, go back to the queue with a full-jitter backoff and are merged into later
batches, so batches stay full and no thread sleeps while it could send. When nothing
has been written for `no_progress_timeout_s` while work was pending, the task fails
loudly, naming what it did not write; Spark retries it (puts and deletes are idempotent).
"""
import heapq
import itertools
import json
import random
import socket
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

import pyarrow as pa

from idstore.dynamodb import items as I
from idstore.dynamodb.rate import AimdRate, TokenBucket, requests_in_flight
from idstore.dynamodb.retry import error_code, full_jitter, retry_reason

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
    ("task_rate", _FLOAT),  # the task's share of the budget, WCU/s
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
    task_rate: float  # WCU/s for this task
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

    def sender_threads(self) -> int:
        return self.in_flight or requests_in_flight(self.task_rate, floor=self.max_in_flight)


def dynamodb_client(settings: WriterSettings):
    """A boto3 DynamoDB client for `settings` (used for Scan and the control plane)."""
    import boto3
    from botocore.config import Config

    config = Config(
        # retries are ours: botocore's would not know about the budget or the deadline
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=settings.sender_threads() + 2,
        connect_timeout=settings.connect_timeout_s,
        read_timeout=settings.read_timeout_s,
    )
    return boto3.client(
        "dynamodb",
        region_name=settings.region,
        endpoint_url=settings.endpoint_url or None,
        config=config,
    )


class BatchWriteCall:
    """BatchWriteItem through botocore's credential chain, SigV4 signer and HTTP session.

    The writer's requests are already in DynamoDB's wire format, so this skips the
    client's per-call machinery (model-driven serialisation and parsing, event hooks,
    endpoint rules): about half the CPU per call, which is what bounds a task's rate
    when executors are busy. Errors come back as botocore's ClientError and
    connection exceptions, exactly as the client would raise them.
    """

    TARGET = "DynamoDB_20120810.BatchWriteItem"

    def __init__(self, region: str, endpoint_url: str, connect_timeout_s: float, read_timeout_s: float,
                 max_connections: int) -> None:
        import botocore.session
        from botocore.config import Config
        from botocore.httpsession import URLLib3Session
        from botocore.utils import get_environ_proxies

        session = botocore.session.get_session()
        # a client only to resolve the endpoint as boto3 would (FIPS, dual-stack, env overrides)
        client = session.create_client("dynamodb", region_name=region, endpoint_url=endpoint_url or None,
                                       config=Config(retries={"total_max_attempts": 1}))
        self.url = client.meta.endpoint_url.rstrip("/") + "/"
        self.region = client.meta.region_name or region
        self.credentials = session.get_credentials()
        if self.credentials is None:
            from botocore.exceptions import NoCredentialsError

            raise NoCredentialsError()
        self.max_connections = max_connections
        self.http = URLLib3Session(
            verify=session.get_config_variable("ca_bundle") or True,
            proxies=get_environ_proxies(self.url),
            timeout=(connect_timeout_s, read_timeout_s),
            max_pool_connections=max_connections,
            # as botocore's clients do: without it, Nagle holds the body back for the
            # server's delayed ACK of the headers (40 ms a call)
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )

    def __call__(self, payload: Dict[str, Any]) -> Dict[str, Any]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        request = AWSRequest(method="POST", url=self.url, data=body, headers={
            "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": self.TARGET,
        })
        SigV4Auth(self.credentials.get_frozen_credentials(), "dynamodb", self.region).add_auth(request)
        response = self.http.send(request.prepare())
        return _parse_response(response.status_code, response.headers, response.content)


def _parse_response(status: int, headers: Mapping[str, str], content: bytes) -> Dict[str, Any]:
    from botocore.exceptions import ClientError, HTTPClientError

    crc = headers.get("x-amz-crc32")
    if crc is not None and int(crc) != zlib.crc32(content):
        raise HTTPClientError(error="the response's CRC32 does not match its body")  # retried
    try:
        body = json.loads(content) if content else {}
    except ValueError:
        if status == 200:
            raise HTTPClientError(error="the response is not JSON") from None
        body = {}
    if status == 200:
        return body
    code = str(body.get("__type", "")).rsplit("#", 1)[-1] or f"HTTP{status}"
    message = body.get("message") or body.get("Message") or ""
    raise ClientError({
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": headers.get("x-amzn-RequestId", "")},
    }, "BatchWriteItem")


_CARRIED: Dict[Tuple, Tuple[float, float, float]] = {}


def _budget_key(settings: WriterSettings) -> Tuple:
    return settings.write_id, settings.table, settings.endpoint_url, settings.task_rate


def _carried_budget(settings: WriterSettings) -> Optional[Tuple[float, float, float]]:
    """(tokens, when, rate) the last task of this worker process left, for the same write."""
    with _CALLS_LOCK:
        return _CARRIED.get(_budget_key(settings))


def _carry_budget(settings: WriterSettings, tokens: float, when: float, rate: float) -> None:
    with _CALLS_LOCK:
        _CARRIED.clear()  # only the latest write's state matters
        _CARRIED[_budget_key(settings)] = (tokens, when, rate)


_CALLS: Dict[Tuple, BatchWriteCall] = {}
_CALLS_LOCK = threading.Lock()


def batch_write_call(settings: WriterSettings) -> BatchWriteCall:
    """One BatchWriteCall per Python worker and endpoint: Spark reuses workers across
    tasks, and building the client costs more CPU than a thousand calls."""
    key = (settings.region, settings.endpoint_url, settings.connect_timeout_s, settings.read_timeout_s)
    with _CALLS_LOCK:
        call = _CALLS.get(key)
        pool = settings.sender_threads() + 2
        if call is None or call.max_connections < pool:
            call = BatchWriteCall(settings.region, settings.endpoint_url, settings.connect_timeout_s,
                                  settings.read_timeout_s, max(pool, 16))
            _CALLS[key] = call
        return call


class _Request:
    """One write request on its way to the table."""

    __slots__ = ("attempts", "key", "request", "size", "wcu")

    def __init__(self, key: str, request: Dict, size: int) -> None:
        self.key, self.request, self.size = key, request, size
        self.wcu = I.write_units(size)
        self.attempts = 0


class _Aborted(Exception):
    """The queue was shut because a sender failed; the sender's error is the one to raise."""


class _Queue:
    """Requests waiting to be sent: fresh ones in input order, retries by readiness.

    Holds at most `limit` fresh + retry requests (the reader waits), so a table that
    refuses everything does not pull the whole partition into memory.
    """

    def __init__(self, limit: int) -> None:
        self.cond = threading.Condition()
        self.fresh: Deque[_Request] = deque()
        self.retry: List[Tuple[float, int, _Request]] = []
        self._seq = itertools.count()
        self.limit = limit
        self.in_flight = 0
        self.closed = False
        self.error: Optional[BaseException] = None
        self.last_progress = time.monotonic()

    def put(self, requests: List[_Request]) -> None:
        with self.cond:
            while len(self.fresh) + len(self.retry) >= self.limit and self.error is None:
                self.cond.wait()
            if self.error is not None:
                raise _Aborted()
            self.fresh.extend(requests)
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def abort(self, error: BaseException) -> None:
        with self.cond:
            if self.error is None:
                self.error = error
            self.cond.notify_all()

    def take(self) -> Optional[List[_Request]]:
        """The next batch (ready retries first), or None when all is written or aborted."""
        with self.cond:
            while True:
                if self.error is not None:
                    return None
                now = time.monotonic()
                batch: List[_Request] = []
                size = 0
                retry, fresh = self.retry, self.fresh
                had_retries = bool(retry)
                while retry and retry[0][0] <= now and len(batch) < I.MAX_BATCH_REQUESTS:
                    if size + retry[0][2].size > I.MAX_BATCH_BYTES:
                        break
                    request = heapq.heappop(retry)[2]
                    batch.append(request)
                    size += request.size
                while fresh and len(batch) < I.MAX_BATCH_REQUESTS:
                    if size + fresh[0].size > I.MAX_BATCH_BYTES:
                        break
                    request = fresh.popleft()
                    batch.append(request)
                    size += request.size
                if batch:
                    if self.in_flight == 0 and not had_retries:
                        # work starts after an idle spell: waiting for input is not a stall
                        self.last_progress = now
                    self.in_flight += 1
                    self.cond.notify_all()
                    return batch
                if self.closed and not fresh and not retry and self.in_flight == 0:
                    self.cond.notify_all()
                    return None
                self.cond.wait(retry[0][0] - now if retry else None)

    def done(self, leftovers: List[_Request], ready_at: float, wrote: bool) -> None:
        with self.cond:
            self.in_flight -= 1
            if wrote:
                self.last_progress = time.monotonic()
            for request in leftovers:
                heapq.heappush(self.retry, (ready_at, next(self._seq), request))
            self.cond.notify_all()

    def stalled_for(self) -> float:
        with self.cond:
            return time.monotonic() - self.last_progress

    def waiting(self) -> List[_Request]:
        with self.cond:
            return [entry[2] for entry in self.retry] + list(self.fresh)


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

    def __init__(self, settings: WriterSettings, call=None, rng=None, partition_id: int = 0):
        """`call(payload) -> response` sends one BatchWriteItem (default: BatchWriteCall)."""
        from idstore.progress import ProgressSender

        self.settings = settings
        self.threads = settings.sender_threads()
        self.call = call or batch_write_call(settings)
        burst = settings.task_rate * settings.burst_s
        carried = _carried_budget(settings) if settings.write_id else None
        if carried is None:
            # a worker's first task starts with one batch's worth: no wait, no burst
            self.bucket = TokenBucket(settings.task_rate, burst, initial=min(25.0, burst))
            self.rate = AimdRate(self.bucket, settings.task_rate)
        else:
            # Spark reuses Python workers: the previous task's bucket carries over, so the
            # seconds between two tasks of one slot are made up (up to the burst), not lost
            tokens, stamp, rate = carried
            self.bucket = TokenBucket(rate, burst, initial=tokens + (time.monotonic() - stamp) * rate)
            self.rate = AimdRate(self.bucket, settings.task_rate, initial=rate)
        self.rng = rng or random.Random()
        self.stats_ = _Stats()
        self.partition_id = partition_id
        self.sender = ProgressSender(settings.progress_address, partition_id)
        # enough queued for every sender to take full batches twice over
        self.queue = _Queue(limit=max(200, 2 * I.MAX_BATCH_REQUESTS * self.threads))
        self.last_error = ""

    # -- reading rows -------------------------------------------------------------------
    def _read(self, rows: Iterable[Tuple[Any, Mapping[str, Any]]]) -> None:
        """Queue every valid, first-seen key's request; count the others by reason."""
        action, key_attribute = self.settings.action, self.settings.key_attribute
        seen = set()
        chunk: List[_Request] = []
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
            chunk.append(_Request(key, request, size))
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

    def _attempt(self, batch: List[_Request]) -> None:
        """Send `batch` once; what is not written goes back to the queue with a backoff."""
        settings = self.settings
        estimate = float(sum(request.wcu for request in batch))
        waited = self.bucket.acquire(estimate)
        started = time.monotonic()
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
            self.queue.done(batch, time.monotonic() + delay, wrote=False)
            return
        elapsed_ms = (time.monotonic() - started) * 1000.0
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
        self.queue.done(leftovers, time.monotonic() + delay, wrote=bool(written))

    def _backoff(self, requests: List[_Request], progress: bool) -> float:
        """Full-jitter delay before `requests` go out again. The exponent counts the calls in a
        row that wrote none of them: a call that wrote part of its batch shows the table is
        taking writes, so its leftovers wait only up to the base delay."""
        attempt = 0
        for request in requests:
            request.attempts = 0 if progress else request.attempts + 1
            attempt = max(attempt, request.attempts)
        return full_jitter(attempt, self.settings.backoff_base_s, self.settings.backoff_cap_s, self.rng)

    def _check_deadline(self, batch: List[_Request]) -> None:
        idle = self.queue.stalled_for()
        timeout = self.settings.no_progress_timeout_s
        if idle > timeout:
            raise WriteFailed(self._unwritten(
                batch, f"nothing written for {idle:.1f}s (dynamodb.no_progress_timeout_s = {timeout:g}); "
                       f"last error: {self.last_error}"))

    def _unwritten(self, batch: List[_Request], why: str) -> str:
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
        started = time.monotonic()
        senders = [threading.Thread(target=self._send_loop, name=f"ddb-writer-{i}", daemon=True)
                   for i in range(self.threads)]
        for thread in senders:
            thread.start()
        try:
            self._read(rows)
        except _Aborted:
            pass  # a sender failed: its error is raised below
        except BaseException as exc:
            self.queue.abort(exc)
            raise
        finally:
            self.queue.close()
            for thread in senders:
                thread.join()
            _carry_budget(self.settings, self.bucket.balance(), time.monotonic(), self.rate.rate)
        if self.queue.error is not None:
            raise self.queue.error
        self.sender.update(int(self.stats_.counts["written"]), force=True)
        return self.stats(self.partition_id, time.monotonic() - started)

    def stats(self, partition_id: int, seconds: float) -> Dict[str, float]:
        counts = self.stats_.counts
        row: Dict[str, float] = {
            name: (int(counts[name]) if typ == _INT else float(counts[name]))
            for name, typ in STATS_FIELDS if name not in _DERIVED
        }
        latencies = sorted(self.stats_.latencies_ms)
        row.update(
            partition_id=int(partition_id),
            rate_cuts=int(self.rate.cuts),
            task_rate=float(self.settings.task_rate),
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
