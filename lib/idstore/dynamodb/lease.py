"""The job-wide write budget, leased to the tasks that actually run at once.

A split fixed when the write starts (budget / task slots) is wrong as soon as the
cluster changes: under dynamic allocation, executors that join while a write runs
start tasks at the full per-task rate and the job exceeds its budget by as much as the
cluster grew. Instead the driver runs a `LeaseServer` for each write (UDP, on
spark.driver.host, as the progress listener does) and every running write task holds a
lease on a share of the budget, renewed every `renew_s`:

- The server hands out shares so that the shares granted and not yet expired never add
  up to more than the budget: a task is granted min(budget / live leases, budget - what
  the other leases hold). A task that joins may get less than its fair share (nothing,
  if the others hold everything); the server nudges the others to renew at once, they
  are handed the smaller fair share, which frees room, and the newcomer is nudged to
  claim it. Leaving tasks release their lease and the others are nudged to grow.
- A task uses a grant only until `ttl_s` after it asked for it, which is before the
  server can give the share to anyone else (the server's expiry counts from when the
  request arrived). Leases of dead tasks expire after `ttl_s`.
- Requests carry a random token of the write (in the task closure); the server ignores
  packets without it, and a task takes answers only from the server's address, with
  its own lease id and the number of its latest request, so a stray packet cannot
  change anyone's rate.
- When the server cannot be reached (no answer within `wait_s` at the start, or no
  renewal for `ttl_s`), the task falls back to the static split, logs a warning and
  counts it (stats column `lease_fallbacks`); it keeps trying and takes its lease back
  when the server answers again.
"""
import hmac
import json
import logging
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

log = logging.getLogger(__name__)

Address = Tuple[str, int]
# shares within this of the fair share count as fair (float rounding)
_EPS = 1e-6


@dataclass(frozen=True)
class LeaseTiming:
    """A lease's clock: renewed every `renew_s`, valid `ttl_s`; a task waits `wait_s` for its
    first grant before it falls back, and `reply_timeout_s` for each answer."""

    renew_s: float = 0.5
    ttl_s: float = 3.0
    wait_s: float = 1.0
    reply_timeout_s: float = 0.2


class LeaseTable:
    """Who holds which share, and until when. Not thread-safe; the server serialises calls.

    Invariant: the sum of the unexpired shares never exceeds `budget`.
    """

    def __init__(self, budget: float, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if budget <= 0:
            raise ValueError("a lease budget must be positive")
        self.budget, self.ttl_s, self.clock = float(budget), float(ttl_s), clock
        self.leases: Dict[str, Tuple[float, float]] = {}  # lease id -> (share, expires at)
        self.peak = 0  # most leases live at once
        self.expired = 0  # leases that lapsed without a release (dead tasks)

    def _expire(self, now: float) -> None:
        for lease_id in [k for k, (_, until) in self.leases.items() if until <= now]:
            del self.leases[lease_id]
            self.expired += 1

    def fair(self) -> float:
        return self.budget / max(1, len(self.leases))

    def renew(self, lease_id: str) -> Tuple[float, float, bool, bool]:
        """Grant (or renew) `lease_id`: (share, fair share, joined now, share lowered)."""
        now = self.clock()
        self._expire(now)
        joined = lease_id not in self.leases
        before = 0.0 if joined else self.leases[lease_id][0]
        live = len(self.leases) + (1 if joined else 0)
        fair = self.budget / live
        others = sum(share for other, (share, _) in self.leases.items() if other != lease_id)
        share = max(0.0, min(fair, self.budget - others))
        self.leases[lease_id] = (share, now + self.ttl_s)
        self.peak = max(self.peak, len(self.leases))
        return share, fair, joined, share < before - _EPS

    def release(self, lease_id: str) -> bool:
        self._expire(self.clock())
        return self.leases.pop(lease_id, None) is not None

    def held(self) -> float:
        """The sum of the unexpired shares."""
        self._expire(self.clock())
        return sum(share for share, _ in self.leases.values())

    def above_fair(self, but: str = "") -> List[str]:
        fair = self.fair()
        return [k for k, (share, _) in self.leases.items() if k != but and share > fair + _EPS]

    def below_fair(self, but: str = "") -> List[str]:
        fair = self.fair()
        return [k for k, (share, _) in self.leases.items() if k != but and share < fair - _EPS]


class LeaseServer:
    """Driver side: answers lease requests of one write's tasks over UDP.

    Use as a context manager; `address` and `token` go into the task closure.
    """

    def __init__(self, host: str, budget: float, ttl_s: float = LeaseTiming.ttl_s) -> None:
        self.table = LeaseTable(budget, ttl_s)
        self.token = secrets.token_hex(16)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self._sock.settimeout(0.2)
        self.address: Address = (host, self._sock.getsockname()[1])
        self._peers: Dict[str, Address] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="ddb-lease-server", daemon=True)
        self.requests = 0
        self.ignored = 0  # packets without the write's token, or malformed

    def __enter__(self) -> "LeaseServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()

    @property
    def peak(self) -> int:
        with self._lock:
            return self.table.peak

    def held(self) -> float:
        with self._lock:
            return self.table.held()

    def _send(self, message: Dict, address: Address) -> None:
        try:
            self._sock.sendto(json.dumps(message, separators=(",", ":")).encode(), address)
        except OSError:
            pass  # the task renews again or falls back; the server must not die of it

    def _nudge(self, lease_ids: List[str]) -> None:
        for lease_id in lease_ids:
            address = self._peers.get(lease_id)
            if address is not None:
                self._send({"t": self.token, "l": lease_id, "op": "nudge"}, address)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, address = self._sock.recvfrom(1024)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                message = json.loads(data)
                token, lease_id, op = str(message["t"]), str(message["l"]), str(message["op"])
                seq = int(message.get("s", 0))
            except (ValueError, KeyError, TypeError):
                self.ignored += 1
                continue
            if not hmac.compare_digest(token.encode(), self.token.encode()) or op not in ("renew", "release"):
                self.ignored += 1
                continue
            with self._lock:
                self.requests += 1
                table = self.table
                if op == "release":
                    self._peers.pop(lease_id, None)
                    if table.release(lease_id):
                        self._nudge(table.below_fair())  # the others may grow now
                    continue
                self._peers[lease_id] = address
                share, fair, joined, lowered = table.renew(lease_id)
                self._send({"t": self.token, "l": lease_id, "s": seq, "op": "grant", "share": share,
                            "fair": fair, "live": len(table.leases)}, address)
                if joined:
                    self._nudge(table.above_fair(but=lease_id))  # give room to the newcomer
                if lowered or share < fair - _EPS:
                    self._nudge(table.below_fair(but=lease_id))  # room was freed (or is owed)


def _resolve(host: str) -> str:
    """The IPv4 address of `host` (spark.driver.host may be a name): answers are matched on it."""
    try:
        return socket.gethostbyname(host)
    except OSError:
        return host


class LeaseClient:
    """Executor side: holds one task's lease and applies each grant with `on_share(share)`.

    `start()` waits up to `timing.wait_s` for the first grant (the task sends nothing before
    it knows its share), then a thread renews every `timing.renew_s`, sooner when nudged or
    while the grant is below the fair share. Without an answer, `fallback_share` applies.
    """

    def __init__(self, address: Address, token: str, fallback_share: float, on_share: Callable[[float], None],
                 timing: LeaseTiming = LeaseTiming(), name: str = "") -> None:
        self.address, self.token = (_resolve(address[0]), int(address[1])), token
        self.fallback_share, self.on_share = float(fallback_share), on_share
        self.timing = timing
        self.name, self.clock = name or "task", time.monotonic
        self.lease_id = uuid.uuid4().hex
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._seq = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.share = 0.0
        self.valid_until = -float("inf")
        self.on_fallback = False
        self.fallbacks = 0  # times the task went to the fallback share
        self.renewals = 0  # grants received

    # -- one exchange -----------------------------------------------------------------
    def _receive(self, timeout: float, seq: int) -> Optional[Dict]:
        """The grant for request `seq`, or None after `timeout`; a nudge ends the wait early
        (returned as {"op": "nudge"})."""
        deadline = self.clock() + timeout
        while True:
            left = deadline - self.clock()
            if left <= 0:
                return None
            self._sock.settimeout(left)
            try:
                data, source = self._sock.recvfrom(1024)
            except socket.timeout:
                return None
            except OSError:
                return None
            if self._stop.is_set():
                return None
            if (source[0], source[1]) != self.address:
                continue  # answers come from the server's address only
            try:
                message = json.loads(data)
                if not (hmac.compare_digest(str(message["t"]).encode(), self.token.encode())
                        and message["l"] == self.lease_id):
                    continue
                if message["op"] == "nudge":
                    return {"op": "nudge"}
                if message["op"] == "grant" and int(message["s"]) == seq:
                    return message
            except (ValueError, KeyError, TypeError):
                continue

    def _request(self, op: str) -> int:
        self._seq += 1
        message = {"t": self.token, "l": self.lease_id, "s": self._seq, "op": op}
        try:
            self._sock.sendto(json.dumps(message, separators=(",", ":")).encode(), self.address)
        except OSError:
            pass
        return self._seq

    def _renew(self, timeout: float) -> Optional[Dict]:
        """Ask for a grant; apply it. Nudges that arrive meanwhile are dropped (this is the renewal)."""
        sent_at = self.clock()
        seq = self._request("renew")
        deadline = sent_at + timeout
        while True:
            reply = self._receive(max(0.0, deadline - self.clock()), seq)
            if reply is None:
                return None
            if reply.get("op") == "grant":
                break
        share, fair = float(reply["share"]), float(reply["fair"])
        self.renewals += 1
        self.valid_until = sent_at + self.timing.ttl_s
        if self.on_fallback:
            log.warning("%s: the lease service answers again: back to its leased share", self.name)
            self.on_fallback = False
        self.share = share
        self.on_share(share)
        reply["below_fair"] = share < fair - _EPS
        return reply

    def _fall_back(self, why: str) -> None:
        if self.on_fallback:
            return
        self.on_fallback = True
        self.fallbacks += 1
        self.share = self.fallback_share
        log.warning("%s: %s: running at the static share of the budget, %.1f WCU/s (job rate over the task "
                    "slots when the write started); the job-wide budget holds only if the cluster does not grow",
                    self.name, why, self.fallback_share)
        self.on_share(self.fallback_share)

    # -- the lease's life ---------------------------------------------------------------
    def start(self) -> None:
        got = None
        deadline = self.clock() + self.timing.wait_s
        while got is None and self.clock() < deadline:
            got = self._renew(min(self.timing.reply_timeout_s, max(0.01, deadline - self.clock())))
        if got is None:
            self._fall_back(f"no answer from the lease service at {self.address[0]}:{self.address[1]} "
                            f"within {self.timing.wait_s:g}s")
            below = False
        else:
            below = bool(got["below_fair"])
        self._thread = threading.Thread(target=self._loop, args=(below,), name="ddb-lease", daemon=True)
        self._thread.start()

    def _loop(self, below_fair: bool) -> None:
        fast = min(0.05, self.timing.renew_s)
        wait = fast if below_fair else self.timing.renew_s
        while not self._stop.is_set():
            # sleep until the next renewal, or until the server nudges
            self._receive(wait, seq=-1)
            if self._stop.is_set():
                return
            reply = self._renew(self.timing.reply_timeout_s)
            if reply is None:
                if self.clock() >= self.valid_until:
                    self._fall_back(f"no renewal of its lease for {self.timing.ttl_s:g}s")
                wait = fast
                continue
            wait = fast if reply["below_fair"] else self.timing.renew_s

    def release(self) -> None:
        """Stop renewing and give the share back (best effort: it expires anyway)."""
        self._stop.set()
        if self._thread is not None:
            try:  # wake the renewing thread from its wait
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as wake:
                    wake.sendto(b"{}", ("127.0.0.1", self._sock.getsockname()[1]))
            except OSError:
                pass
            self._thread.join(timeout=2)
        self._request("release")
        self._sock.close()
