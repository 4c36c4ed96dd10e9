"""The task's queue of write requests: fresh ones in input order, retries by readiness.

Sender threads take batches of at most 25 requests and 16 MB from it, ready retries
first; what a call did not write goes back with a delay (`retry.backoff`) and is merged into
later batches, so batches stay full and no thread sleeps while it could send. The queue
also keeps the task's progress clock: the time of the last write, reset when work starts
after an idle spell (waiting for input is not a stall).
"""
import heapq
import itertools
import threading
import time
from collections import deque
from typing import Deque, Dict, List, Optional, Tuple

from idstore.dynamodb import items as I


class Request:
    """One write request on its way to the table."""

    __slots__ = ("attempts", "key", "request", "size", "wcu")

    def __init__(self, key: str, request: Dict, size: int) -> None:
        self.key, self.request, self.size = key, request, size
        self.wcu = I.write_units(size)
        self.attempts = 0


class Aborted(Exception):
    """The queue was shut because a sender failed; the sender's error is the one to raise."""


class RetryQueue:
    """Requests waiting to be sent. Thread-safe.

    Holds at most `limit` fresh + retry requests (the reader waits), so a table that
    refuses everything does not pull the whole partition into memory. `clock` is the
    monotonic clock that retry times and the progress clock are read from.
    """

    def __init__(self, limit: int, clock=time.monotonic) -> None:
        self.cond = threading.Condition()
        self.fresh: Deque[Request] = deque()
        self.retry: List[Tuple[float, int, Request]] = []
        self._seq = itertools.count()
        self.limit = limit
        self.clock = clock
        self.in_flight = 0
        self.closed = False
        self.error: Optional[BaseException] = None
        self.last_progress = clock()

    def put(self, requests: List[Request]) -> None:
        """Queue fresh requests, waiting while the queue is full; raises Aborted after a failure."""
        with self.cond:
            while len(self.fresh) + len(self.retry) >= self.limit and self.error is None:
                self.cond.wait()
            if self.error is not None:
                raise Aborted()
            self.fresh.extend(requests)
            self.cond.notify()

    def close(self) -> None:
        """No more fresh requests: `take` returns None once everything is written."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def abort(self, error: BaseException) -> None:
        with self.cond:
            if self.error is None:
                self.error = error
            self.cond.notify_all()

    def take(self) -> Optional[List[Request]]:
        """The next batch (ready retries first), or None when all is written or aborted."""
        with self.cond:
            while True:
                if self.error is not None:
                    return None
                now = self.clock()
                batch: List[Request] = []
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

    def done(self, leftovers: List[Request], ready_at: float, wrote: bool) -> None:
        """A taken batch came back: `leftovers` are sent again from `ready_at` (queue clock)."""
        with self.cond:
            self.in_flight -= 1
            if wrote:
                self.last_progress = self.clock()
            for request in leftovers:
                heapq.heappush(self.retry, (ready_at, next(self._seq), request))
            self.cond.notify_all()

    def stalled_for(self) -> float:
        """Seconds since the last write (or since work last started after an idle spell)."""
        with self.cond:
            return self.clock() - self.last_progress

    def waiting(self) -> List[Request]:
        with self.cond:
            return [entry[2] for entry in self.retry] + list(self.fresh)
