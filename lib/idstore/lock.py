"""One sync run per table at a time: a lock with a lease, beside the snapshots it protects.

The lock is one small JSON object, <snapshot.path>/_locks/<table>.json, naming its holder (run
id, host, pid, start time), when its lease ends, and a random token for that lease; LockBody
alone encodes and decodes it. Every change to it is a compare-and-swap on what the changer last
read, so of two runs that race, exactly one wins:

- on S3, creation is a PutObject with `If-None-Match: *` (412 when the key exists); renewal,
  takeover of an expired lease and release are conditional on the ETag last seen (`If-Match`).
  S3 is strongly consistent, so a run that reads the lock sees the last write.
- on a local folder (dev runs without S3), creation is an exclusive create (O_CREAT | O_EXCL),
  and every read-compare-write holds an exclusive `flock` on a guard file beside the lock that
  is never deleted; the "ETag" is the SHA-256 of the file's bytes.

A run holds the lock with `with lock.held(break_lock=...) as holder:`, which acquires it
(LockRefused when another run's lease is live) and releases it on the way out, error or not.
The holder renews its lease from a daemon thread every lease_s / 3; a run that crashed stops
renewing and its lock can be taken over once the lease has ended. `check()` renews once more
and raises LockLost unless that proves the lock is still ours: call it before the pointer
moves. Expiry compares the lease end written by the holder with the reader's clock, so hosts'
clocks must agree to well within a lease (NTP does that on EC2).
"""
import hashlib
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterator, NoReturn, Optional, Tuple

from idstore import io

log = logging.getLogger(__name__)

LOCK_FOLDER = "_locks"

_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")  # DynamoDB's table-name alphabet
_ATTEMPTS = 10  # rounds of read-then-compare-and-swap before an acquire gives up


def lock_location(snapshot_path: str, table: str) -> str:
    """<snapshot.path>/_locks/<table>.json: beside the record it protects (Spark skips `_` folders)."""
    if not _TABLE_NAME.match(table) or table in (".", ".."):
        raise ValueError(f"not a table name: {table!r}")
    return io.join(snapshot_path, LOCK_FOLDER, f"{table}.json")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock. Times are ISO-8601 UTC; the token identifies the holder's lease."""

    run_id: str
    host: str
    started_at: str
    expires_at: str
    token: str = field(repr=False)
    pid: Optional[int] = None

    def describe(self) -> str:
        pid = f" (pid {self.pid})" if self.pid is not None else ""
        return f"run {self.run_id} on host {self.host}{pid}, started {self.started_at}, lease ends {self.expires_at}"


_UNREADABLE = LockHolder(run_id="<unreadable>", host="<unknown>", started_at="<unknown>",
                         expires_at="<unknown>", token="")


class LockRefused(RuntimeError):
    """The table is locked by another run whose lease is live."""

    def __init__(self, location: str, holder: LockHolder, detail: str = ""):
        self.location = location
        self.holder = holder
        what = "an unreadable lock" if holder is _UNREADABLE else holder.describe()
        super().__init__(
            f"table lock {location} is held by {what}{detail}; another run of this table is under way. "
            "Wait for it to end or its lease to lapse, or pass --break-lock if you know that run is dead."
        )


class LockLost(RuntimeError):
    """The lease could not be renewed, lapsed, or was taken over by another run."""


_HOLDER_TEXT = ("run_id", "host", "started_at", "expires_at", "token")  # the fields every lock has, as text


@dataclass(frozen=True)
class LockBody:
    """What the lock file holds: its holder, the lease length, and whether the holder released it.

    A released lock (left where the store cannot delete conditionally) is free for any run.
    `lease_s` is None, and `pid` not written, when a lock read from the store lacks them.
    """

    holder: LockHolder
    lease_s: Optional[float] = None
    released: bool = False

    def encode(self) -> bytes:
        body: Dict[str, Any] = {name: getattr(self.holder, name) for name in _HOLDER_TEXT}
        if self.holder.pid is not None:
            body["pid"] = self.holder.pid
        if self.lease_s is not None:
            body["lease_s"] = self.lease_s
        if self.released:
            body["released"] = True
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def decode(cls, data: bytes) -> Optional["LockBody"]:
        """The lock body, or None when the bytes are not one (a torn or foreign write)."""
        try:
            body = json.loads(data.decode("utf-8"))
            if not isinstance(body, dict):
                return None
            text = {name: str(body[name]) for name in _HOLDER_TEXT}
            _epoch(text["expires_at"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None
        pid, lease_s = body.get("pid"), body.get("lease_s")
        holder = LockHolder(**text, pid=pid if isinstance(pid, int) else None)
        return cls(holder, lease_s if isinstance(lease_s, (int, float)) else None, bool(body.get("released")))

    def until(self, expires_at: str) -> "LockBody":
        """The same lock with its lease ending at expires_at (a renewal)."""
        return replace(self, holder=replace(self.holder, expires_at=expires_at))

    def as_released(self) -> "LockBody":
        """The same lock, released: its lease ended at the epoch, so any run takes it."""
        return replace(self, holder=replace(self.holder, expires_at=_iso(0.0)), released=True)


def _holder_of(body: Optional[LockBody]) -> LockHolder:
    return _UNREADABLE if body is None else body.holder


def _describe(body: Optional[LockBody]) -> str:
    return "an unreadable lock" if body is None else body.holder.describe()


# --- backends: read, and compare-and-swap on the version last read ---------------------------------


class _Backend:
    """A lock object that is read with a version and changed only if that version still holds."""

    errors: Tuple[type, ...] = ()  # what a call may raise for a transient failure (retried or logged)

    def read(self) -> Optional[Tuple[bytes, str]]:
        """(bytes, version), or None when there is no lock."""
        raise NotImplementedError

    def create(self, data: bytes) -> Optional[str]:
        """Write the lock if there is none; its version, or None when a lock exists."""
        raise NotImplementedError

    def replace(self, version: str, data: bytes) -> Optional[str]:
        """Overwrite the lock if it is still at version; the new version, or None."""
        raise NotImplementedError

    def delete(self, version: str, released: bytes) -> bool:
        """Remove the lock if it is still at version; False when it changed or is gone. A store that
        cannot delete conditionally overwrites it with `released` (a lock any run takes) instead."""
        raise NotImplementedError


class _S3Backend(_Backend):
    def __init__(self, location: str, endpoint_url: str = "", region: Optional[str] = None):
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        self.bucket, self.key = io.split_s3(location)
        # short timeouts: a renewal must finish (or fail and be retried) well within the lease
        config = Config(connect_timeout=5, read_timeout=15, retries={"mode": "standard", "max_attempts": 3})
        self.client = boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region, config=config)
        self.errors = (ClientError, BotoCoreError)
        self._client_error = ClientError
        self.conditional_delete = True  # cleared when the store refuses DeleteObject If-Match

    @staticmethod
    def _code(exc: Any) -> Tuple[str, int]:
        err = exc.response.get("Error", {})
        return str(err.get("Code", "")), int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))

    def _lost_race(self, exc: Any) -> bool:
        """412: the condition failed; 409: a concurrent conditional write won; 404: it is gone."""
        code, status = self._code(exc)
        return code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey") or status in (409, 412)

    def read(self) -> Optional[Tuple[bytes, str]]:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except self._client_error as exc:
            if self._code(exc)[0] == "NoSuchKey":
                return None
            raise
        return obj["Body"].read(), obj["ETag"]

    def _put(self, data: bytes, **condition: str) -> Optional[str]:
        try:
            out = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data,
                                         ContentType="application/json", **condition)
        except self._client_error as exc:
            if self._lost_race(exc):
                return None
            raise
        return out["ETag"]

    def create(self, data: bytes) -> Optional[str]:
        return self._put(data, IfNoneMatch="*")

    def replace(self, version: str, data: bytes) -> Optional[str]:
        return self._put(data, IfMatch=version)

    def delete(self, version: str, released: bytes) -> bool:
        if self.conditional_delete:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=version)
                return True
            except self._client_error as exc:
                if self._lost_race(exc):
                    return False
                code, status = self._code(exc)
                if status != 501 and code not in ("NotImplemented", "InvalidArgument", "InvalidRequest"):
                    raise
                log.info("the store refuses DeleteObject with If-Match (%s); releasing by a conditional "
                         "overwrite with a released lease instead", code or status)
                self.conditional_delete = False
        # No conditional delete: an unconditional delete after a conditional overwrite could remove a
        # lock another run took in between, so the released lock stays as a lapsed lease, which any
        # acquirer takes over by compare-and-swap.
        return self.replace(version, released) is not None


class _LocalBackend(_Backend):
    errors = (OSError,)

    def __init__(self, location: str):
        self.path = location
        self.guard = location + ".guard"  # flock'ed around every read-compare-write; never deleted

    def _locked(self):
        return _Flock(self.guard)

    def _read(self) -> Optional[Tuple[bytes, str]]:
        try:
            with open(self.path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def read(self) -> Optional[Tuple[bytes, str]]:
        with self._locked():
            return self._read()

    def create(self, data: bytes) -> Optional[str]:
        with self._locked():
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return None
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            return hashlib.sha256(data).hexdigest()

    def replace(self, version: str, data: bytes) -> Optional[str]:
        with self._locked():
            current = self._read()
            if current is None or current[1] != version:
                return None
            tmp = f"{self.path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)  # a crash leaves the old lock or the new one, never half of one
            return hashlib.sha256(data).hexdigest()

    def delete(self, version: str, released: bytes) -> bool:
        with self._locked():
            current = self._read()
            if current is None or current[1] != version:
                return False
            os.unlink(self.path)
            return True


class _Flock:
    """An exclusive flock on a guard file, across processes and across threads (one open file each)."""

    def __init__(self, path: str):
        self.path = path
        self.fd = -1

    def __enter__(self) -> "_Flock":
        import fcntl

        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: Any) -> None:
        os.close(self.fd)  # closing the last descriptor of the open file releases the flock
        self.fd = -1


def _backend(location: str, endpoint_url: str, region: Optional[str]) -> _Backend:
    if io.is_s3(location):
        return _S3Backend(location, endpoint_url, region)
    return _LocalBackend(location)


# --- the lock ---------------------------------------------------------------------------------------


class TableLock:
    """The lock of one table for one run: acquire, keep renewed, check before the pointer moves, release."""

    def __init__(self, location: str, run_id: str, lease_s: float = 120.0, endpoint_url: str = "",
                 region: Optional[str] = None, host: Optional[str] = None,
                 clock: Callable[[], float] = time.time):
        if lease_s <= 0:
            raise ValueError("lease_s must be positive")
        self.location = location
        self.run_id = run_id
        self.lease_s = float(lease_s)
        self.host = host or socket.gethostname()
        self.clock = clock
        self._backend = _backend(location, endpoint_url, region)
        self._mutex = threading.Lock()  # renewals from the thread and from check() take turns
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._body: Optional[LockBody] = None  # what we last wrote; None when not held
        self._version = ""
        self._expires = 0.0
        self._lost: Optional[str] = None

    # -- hold: acquire, and release however the block ends

    @contextmanager
    def held(self, break_lock: bool = False) -> Iterator[LockHolder]:
        """`with lock.held() as holder:` the block runs holding the lock, renewed in the background,
        and the lock is released when the block ends, by an error too. LockRefused (from acquire)
        when another run holds it; call check() inside before the snapshot pointer moves."""
        holder = self.acquire(break_lock=break_lock)
        try:
            yield holder
        finally:
            self.release()

    # -- acquire

    def acquire(self, break_lock: bool = False) -> LockHolder:
        """Take the lock. A lapsed lease is taken over; a live one raises LockRefused, unless
        break_lock, which takes over whatever lock is there on the first look (and only that one)."""
        if self._body is not None:
            raise RuntimeError(f"{self.location} is already held by this run")
        now = self.clock()
        holder = LockHolder(run_id=self.run_id, host=self.host, started_at=_iso(now),
                            expires_at=_iso(now + self.lease_s), token=secrets.token_hex(16), pid=os.getpid())
        body = LockBody(holder, lease_s=self.lease_s)
        data = body.encode()
        to_break: Optional[str] = None  # the version break_lock may take over: the one seen first
        for attempt in range(_ATTEMPTS):
            current = self._backend.read()
            if current is None:
                version = self._backend.create(data)
                if version is not None:
                    return self._hold(body, version)
                continue  # somebody was quicker (or our own earlier write landed): read again
            raw, version = current
            seen = LockBody.decode(raw)
            if seen is not None and seen.holder.token == holder.token:
                return self._hold(body, version)  # a write of ours whose answer was lost
            if break_lock and attempt == 0:
                to_break = version
                log.warning("--break-lock: taking %s from %s", self.location, _describe(seen))
            if version != to_break:
                self._may_take(seen, now)
            new_version = self._backend.replace(version, data)
            if new_version is not None:
                return self._hold(body, new_version)
        raise LockRefused(self.location, _holder_of(LockBody.decode(current[0]) if current else None),
                          f" (still contended after {_ATTEMPTS} attempts)")

    def _may_take(self, seen: Optional[LockBody], now: float) -> None:
        """Return when the lock found may be taken over (released, or its lease lapsed); else LockRefused."""
        if seen is not None and seen.released:
            log.info("taking %s, released by run %s", self.location, seen.holder.run_id)
        elif seen is not None and _epoch(seen.holder.expires_at) <= now:
            log.warning("taking over %s: the lease of %s has lapsed (it crashed or hung)",
                        self.location, seen.holder.describe())
        else:
            raise LockRefused(self.location, _holder_of(seen))

    def _hold(self, body: LockBody, version: str) -> LockHolder:
        # the lease ends when the stored time says, which others read (rounded to the millisecond)
        expires_at = body.holder.expires_at
        self._body, self._version, self._expires, self._lost = body, version, _epoch(expires_at), None
        log.info("locked %s for run %s until %s", self.location, self.run_id, expires_at)
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name=f"idstore-lock-{self.run_id}", daemon=True)
        self._thread.start()
        return body.holder

    # -- renew / check

    def renew(self) -> LockHolder:
        """Extend the lease by lease_s from now (compare-and-swap). LockLost when the lock is no longer
        ours or the lease lapsed first; a transient store error propagates and may be retried."""
        with self._mutex:
            if self._body is None:
                raise LockLost(f"{self.location} is not held by run {self.run_id}")
            if self._lost:
                raise LockLost(self._lost)
            now = self.clock()
            if now >= self._expires:
                self._lose(f"the lease of run {self.run_id} on {self.location} lapsed at {_iso(self._expires)} "
                           "before it was renewed; another run may have taken the table")
            body = self._body.until(_iso(now + self.lease_s))
            data = body.encode()
            version = self._backend.replace(self._version, data)
            if version is None:
                version = self._rewrite_if_ours(self._body.holder.token, data)
            self._body, self._version, self._expires = body, version, _epoch(body.holder.expires_at)
            return body.holder

    def _rewrite_if_ours(self, token: str, data: bytes) -> str:
        """After a renewal's compare-and-swap failed: we lost the race, or our own write landed and its
        answer was lost. The lock is ours iff it carries our token; then write `data` (if it is not
        there already) and return its version, else LockLost."""
        current = self._backend.read()
        seen = LockBody.decode(current[0]) if current else None
        if current is None or seen is None or seen.holder.token != token or seen.released:
            other = "nobody (it was removed)" if current is None else _describe(seen)
            self._lose(f"the lock {self.location} of run {self.run_id} was taken over; it is now held by {other}")
        version = self._backend.replace(current[1], data) if current[0] != data else current[1]
        if version is None:
            self._lose(f"the lock {self.location} of run {self.run_id} changed while it was renewed")
        return version

    def _lose(self, reason: str) -> NoReturn:
        self._lost = reason
        raise LockLost(reason)

    def check(self) -> None:
        """Prove the lock is still ours by renewing it; LockLost if not (or if that cannot be shown)."""
        try:
            self.renew()
        except LockLost:
            raise
        except self._backend.errors as exc:
            raise LockLost(f"could not confirm the lock {self.location} of run {self.run_id}: {exc}") from exc

    def _renew_loop(self) -> None:
        interval = self.lease_s / 3.0
        while not self._stop.wait(interval):
            try:
                self.renew()
            except LockLost as exc:
                log.error("%s", exc)
                return
            except self._backend.errors as exc:
                log.warning("renewing the lock %s failed (will retry): %s", self.location, exc)

    # -- release

    def release(self) -> None:
        """Stop renewing and remove the lock if it is still ours. Never raises: a lock it cannot remove
        is logged and lapses with its lease."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30.0)
        self._thread = None
        with self._mutex:
            body, version = self._body, self._version
            self._body = None
            if body is None:
                return
            try:
                self._remove(body, version)
            except self._backend.errors as exc:
                log.warning("could not remove the lock %s of run %s (it lapses with its lease): %s",
                            self.location, self.run_id, exc)

    def _remove(self, body: LockBody, version: str) -> None:
        """Delete the lock we last wrote at version; failing that, whatever lock still carries our token."""
        if self._backend.delete(version, body.as_released().encode()):
            log.info("unlocked %s (run %s)", self.location, self.run_id)
            return
        current = self._backend.read()
        seen = LockBody.decode(current[0]) if current else None
        if current is None:
            log.info("the lock %s of run %s was already gone", self.location, self.run_id)
        elif seen is not None and seen.holder.token == body.holder.token and not seen.released:
            if self._backend.delete(current[1], seen.as_released().encode()):
                log.info("unlocked %s (run %s)", self.location, self.run_id)
            else:
                log.warning("could not remove the lock %s of run %s: it changed meanwhile",
                            self.location, self.run_id)
        else:
            log.warning("not removing %s: run %s lost it, it is now held by %s", self.location,
                        self.run_id, _describe(seen))

    @property
    def is_held(self) -> bool:
        """Acquired, not released, and not found lost."""
        return self._body is not None and not self._lost
