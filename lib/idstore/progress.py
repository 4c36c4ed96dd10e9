"""Live progress of long writes: executors send counts over UDP, the driver logs a line.

Accumulators only arrive when a task ends; a fire-and-forget datagram every second
gives the driver items written, %, rate and ETA while tasks run. Lost datagrams only
make the line lag: the stats rows stay the record.
"""
import json
import logging
import socket
import threading
import time
from typing import Dict, Optional, Tuple

log = logging.getLogger(__name__)

Address = Tuple[str, int]


def progress_line(label: str, done: int, total: int, rate: float) -> str:
    """The one progress line of long work (writes, deletes, an import): done, %, rate, ETA."""
    if not total:  # the size of the work is not known
        return f"{label}: {done} items, {rate:.0f} items/s"
    left = max(0, total - done)
    eta = f"{left / rate:.0f}s" if rate > 0 else "unknown"
    return f"{label}: {done} of {total} items ({100 * done / total:.0f}%), {rate:.0f} items/s, ETA {eta}"


class ProgressServer:
    """Driver side: collects the latest count per partition and logs a progress line."""

    def __init__(self, host: str, total: int, label: str, every_s: float = 5.0):
        self.total, self.label, self.every_s = total, label, every_s
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self._sock.settimeout(0.5)
        self.address: Address = (host, self._sock.getsockname()[1])
        self._latest: Dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._receive, self._report)]

    def __enter__(self) -> "ProgressServer":
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self._sock.close()

    def done(self) -> int:
        with self._lock:
            return sum(self._latest.values())

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                message = json.loads(self._sock.recv(512))
                # a retried task starts again from 0: the latest report per partition wins
                with self._lock:
                    self._latest[int(message["p"])] = int(message["n"])
            except socket.timeout:
                continue
            except (OSError, ValueError, KeyError, TypeError):
                if self._stop.is_set():
                    return

    def line(self, done: int, rate: float) -> str:
        return progress_line(self.label, done, self.total, rate)

    def _report(self) -> None:
        last_done, last_time, rate = 0, self.started, 0.0
        while not self._stop.wait(self.every_s):
            done, now = self.done(), time.monotonic()
            recent = (done - last_done) / (now - last_time) if now > last_time else 0.0
            # the recent rate, smoothed: the start of a Spark stage is not the write's speed
            rate = recent if rate == 0.0 else 0.5 * rate + 0.5 * recent
            last_done, last_time = done, now
            log.info("%s", self.line(done, max(rate, 0.0)))


class ProgressSender:
    """Executor side: at most one datagram per `every_s`; never raises."""

    def __init__(self, address: Optional[Address], partition: int, every_s: float = 1.0):
        self.address, self.partition, self.every_s = address, partition, every_s
        self._last = 0.0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM) if address else None

    def update(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if not self._sock or (not force and now - self._last < self.every_s):
            return
        self._last = now
        try:
            self._sock.sendto(json.dumps({"p": self.partition, "n": done}).encode(), self.address)
        except OSError:
            pass
