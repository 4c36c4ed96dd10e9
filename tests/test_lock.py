"""The per-table run lock, on both backends: a local folder and S3 (moto over HTTP).

moto checks a conditional write's precondition and then writes, so two racing PutObject
If-None-Match: * can both succeed there; S3 applies them atomically (one 200, the other 412
or 409). The S3 locks here talk to a moto server that answers one request at a time, which
gives back that atomicity without changing what each request does.

Expiry and renewal run on a fake clock and call renew() directly; only the renewal-thread test
sleeps (3 s, with a short lease).
"""
import json
import logging
import os
import threading
import time
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from idstore.lock import LockBody, LockHolder, LockLost, LockRefused, TableLock, lock_location

LEASE = 120.0
START = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class Clock:
    def __init__(self, now=START):
        self.now = now

    def __call__(self):
        return self.now


class Store:
    """One backend's place for locks: makes locks and reads what is stored, bypassing the code under test."""

    def __init__(self, kind, tmp_path, endpoint):
        self.kind = kind
        self.endpoint = endpoint
        self.locks = []
        if kind == "s3":
            self.s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            bucket = f"locks-{uuid.uuid4().hex[:12]}"
            self.s3.create_bucket(Bucket=bucket)
            self.base = f"s3://{bucket}/snapshots/products"
        else:
            self.base = str(tmp_path / "snapshots" / "products")

    def location(self, table="products"):
        return lock_location(self.base, table)

    def lock(self, run_id, host="host-a", clock=None, table="products", lease_s=LEASE):
        lock = TableLock(self.location(table), run_id, lease_s=lease_s, endpoint_url=self.endpoint or "",
                         region="us-east-1", host=host, clock=clock or Clock())
        self.locks.append(lock)
        return lock

    def raw(self, table="products"):
        """The stored bytes, or None."""
        location = self.location(table)
        if self.kind == "s3":
            bucket, key = location[len("s3://"):].split("/", 1)
            try:
                return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "NoSuchKey"
                return None
        try:
            with open(location, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def body(self, table="products"):
        raw = self.raw(table)
        return None if raw is None else json.loads(raw)

    def write(self, data, table="products"):
        location = self.location(table)
        if self.kind == "s3":
            bucket, key = location[len("s3://"):].split("/", 1)
            self.s3.put_object(Bucket=bucket, Key=key, Body=data)
        else:
            import os

            os.makedirs(os.path.dirname(location), exist_ok=True)
            with open(location, "wb") as fh:
                fh.write(data)


class OneRequestAtATime:
    """WSGI middleware: the app answers one request at a time (the whole response, under a lock)."""

    def __init__(self, app):
        self.app, self.lock = app, threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            return list(self.app(environ, start_response))


@pytest.fixture(scope="module")
def atomic_moto_endpoint():
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    app = OneRequestAtATime(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()  # the listening socket, which shutdown() leaves open
    thread.join(timeout=10)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    endpoint = request.getfixturevalue("atomic_moto_endpoint") if request.param == "s3" else None
    made = Store(request.param, tmp_path, endpoint)
    yield made
    for lock in made.locks:
        lock.release()  # stops renewal threads; a no-op for locks not held


def test_lock_location_sits_beside_the_snapshots_and_takes_only_table_names():
    assert lock_location("s3://b/snapshots/products/", "products") == "s3://b/snapshots/products/_locks/products.json"
    assert lock_location("/data/snap", "idstore.products-v2") == "/data/snap/_locks/idstore.products-v2.json"
    for bad in ("../etc", "a/b", "", "..", "a b"):
        with pytest.raises(ValueError):
            lock_location("/data/snap", bad)


def test_a_second_run_is_refused_naming_the_holder(store):
    clock = Clock()
    first = store.lock("run-1", host="host-a", clock=clock)
    holder = first.acquire()
    assert isinstance(holder, LockHolder)
    assert (holder.run_id, holder.host, holder.started_at) == ("run-1", "host-a", "2027-01-15T08:00:00.000Z")
    assert holder.expires_at == "2027-01-15T08:02:00.000Z"
    body = store.body()
    assert {k: body[k] for k in ("run_id", "host", "started_at", "expires_at", "lease_s")} == {
        "run_id": "run-1", "host": "host-a", "started_at": "2027-01-15T08:00:00.000Z",
        "expires_at": "2027-01-15T08:02:00.000Z", "lease_s": LEASE}
    assert len(body["token"]) == 32 and body["token"] == holder.token
    assert holder.token not in repr(holder)

    clock.now += 30
    with pytest.raises(LockRefused) as refused:
        store.lock("run-2", host="host-b", clock=clock).acquire()
    message = str(refused.value)
    for part in ("run-1", "host-a", "2027-01-15T08:00:00.000Z", "2027-01-15T08:02:00.000Z", "--break-lock"):
        assert part in message
    assert refused.value.holder.run_id == "run-1" and refused.value.holder.host == "host-a"
    assert store.body()["run_id"] == "run-1"  # the refused run changed nothing
    first.check()  # still ours


def test_release_lets_the_next_run_in(store):
    clock = Clock()
    first = store.lock("run-1", clock=clock)
    first.acquire()
    first.release()
    assert store.raw() is None
    second = store.lock("run-2", host="host-b", clock=clock)
    assert second.acquire().run_id == "run-2"
    assert store.body()["run_id"] == "run-2"
    first.release()  # a second release is a no-op and does not touch run-2's lock
    assert store.body()["run_id"] == "run-2"


def test_held_holds_the_lock_for_the_block_and_releases_it_after(store):
    lock = store.lock("run-1")
    with lock.held() as holder:
        assert holder.run_id == "run-1" and lock.is_held and store.body()["run_id"] == "run-1"
        lock.check()
    assert not lock.is_held and store.raw() is None


def test_held_releases_the_lock_when_the_block_fails(store):
    lock = store.lock("run-1")
    with pytest.raises(ValueError, match="write failed"), lock.held():
        raise ValueError("write failed")
    assert not lock.is_held and store.raw() is None
    assert store.lock("run-2").acquire().run_id == "run-2"


def test_held_refuses_a_held_table_without_touching_its_lock(store):
    clock = Clock()
    store.lock("run-1", clock=clock).acquire()
    before = store.raw()
    second = store.lock("run-2", clock=clock)
    with pytest.raises(LockRefused, match="run-1"), second.held():
        pytest.fail("the block must not run without the lock")
    assert store.raw() == before and not second.is_held
    with second.held(break_lock=True) as holder:
        assert holder.run_id == "run-2" and store.body()["run_id"] == "run-2"
    assert store.raw() is None


def test_the_lock_file_is_the_json_object_it_always_was(store):
    clock = Clock()
    lock = store.lock("run-1", host="host-a", clock=clock)
    holder = lock.acquire()
    expected = {"run_id": "run-1", "host": "host-a", "pid": os.getpid(), "started_at": "2027-01-15T08:00:00.000Z",
                "expires_at": "2027-01-15T08:02:00.000Z", "token": holder.token, "lease_s": 120.0}
    assert store.raw() == (json.dumps(expected, indent=2, sort_keys=True) + "\n").encode("utf-8")
    clock.now += 60
    lock.renew()
    renewed = dict(expected, expires_at="2027-01-15T08:03:00.000Z")
    assert store.raw() == (json.dumps(renewed, indent=2, sort_keys=True) + "\n").encode("utf-8")


def test_a_lock_body_reads_what_it_writes_and_a_lock_without_pid_or_lease():
    holder = LockHolder(run_id="r", host="h", started_at="2027-01-15T08:00:00.000Z",
                        expires_at="2027-01-15T08:02:00.000Z", token="t" * 32, pid=7)
    body = LockBody(holder, lease_s=120.0)
    assert LockBody.decode(body.encode()) == body
    released = LockBody.decode(body.as_released().encode())
    assert released.released and released.holder.expires_at == "1970-01-01T00:00:00.000Z"
    bare = b'{"run_id": "r", "host": "h", "started_at": "s", "expires_at": "2027-01-15T08:02:00Z", "token": "t"}'
    read = LockBody.decode(bare)
    assert (read.holder.pid, read.lease_s, read.released) == (None, None, False)
    assert json.loads(read.encode()) == json.loads(bare)  # written back with nothing added
    for damaged in (b"{not json", b"[]", b'{"run_id": "r"}', b'{"run_id": "r", "host": "h", "started_at": "s", '
                    b'"expires_at": "not a time", "token": "t"}', b"\xff"):
        assert LockBody.decode(damaged) is None


def test_an_expired_lease_is_taken_over(store, caplog):
    clock = Clock()
    crashed = store.lock("run-1", host="host-a", clock=clock)
    crashed.acquire()
    clock.now += LEASE - 1
    with pytest.raises(LockRefused):
        store.lock("run-2", clock=clock).acquire()
    clock.now += 1  # the lease ends now
    with caplog.at_level(logging.WARNING, logger="idstore.lock"):
        holder = store.lock("run-3", host="host-c", clock=clock).acquire()
    assert holder.run_id == "run-3" and store.body()["run_id"] == "run-3"
    assert store.body()["started_at"] == "2027-01-15T08:02:00.000Z"
    taken = [r.getMessage() for r in caplog.records if "taking over" in r.getMessage()]
    assert len(taken) == 1 and "run-1" in taken[0] and "host-a" in taken[0]


def test_renewal_keeps_the_lock_past_the_original_lease(store):
    clock = Clock()
    lock = store.lock("run-1", clock=clock)
    lock.acquire()
    for _ in range(5):  # 5 x 0.6 leases: three times the original lease
        clock.now += 0.6 * LEASE
        assert lock.renew().expires_at == store.body()["expires_at"]
        with pytest.raises(LockRefused):
            store.lock("run-2", clock=clock).acquire()
    lock.check()
    assert store.body()["started_at"] == "2027-01-15T08:00:00.000Z"  # renewals keep the start time
    clock.now += LEASE  # and when renewals stop, the lease lapses
    assert store.lock("run-3", clock=clock).acquire().run_id == "run-3"


def test_after_a_takeover_the_old_holder_is_lost_and_its_release_spares_the_new_lock(store, caplog):
    clock = Clock()
    old = store.lock("run-1", host="host-a", clock=clock)
    old.acquire()
    clock.now += LEASE + 5  # run-1 hung past its lease
    new = store.lock("run-2", host="host-b", clock=clock)
    new.acquire()
    with pytest.raises(LockLost):
        old.check()
    with pytest.raises(LockLost):
        old.renew()
    with caplog.at_level(logging.WARNING, logger="idstore.lock"):
        old.release()  # does not raise
    assert store.body()["run_id"] == "run-2"
    assert any("not removing" in r.getMessage() and "run-2" in r.getMessage() for r in caplog.records)
    new.check()
    with pytest.raises(LockRefused) as refused:
        store.lock("run-3", clock=clock).acquire()
    assert "run-2" in str(refused.value) and "host-b" in str(refused.value)


def test_a_takeover_is_found_by_check_even_before_the_old_lease_ends_locally(store):
    """run-1's own clock says its lease is live, but the lock was broken: the renewal must fail."""
    clock = Clock()
    old = store.lock("run-1", clock=clock)
    old.acquire()
    store.lock("run-2", clock=clock).acquire(break_lock=True)
    with pytest.raises(LockLost) as lost:
        old.check()
    assert "run-2" in str(lost.value)
    with pytest.raises(LockLost):
        old.check()  # stays lost
    old.release()
    assert store.body()["run_id"] == "run-2"


def test_a_lapsed_lease_is_lost_even_when_nobody_took_it_but_release_still_removes_it(store):
    clock = Clock()
    lock = store.lock("run-1", clock=clock)
    lock.acquire()
    clock.now += LEASE
    with pytest.raises(LockLost, match="lapsed"):
        lock.check()
    lock.release()
    assert store.raw() is None


def test_break_lock_takes_a_live_lock_and_names_the_holder(store, caplog):
    clock = Clock()
    live = store.lock("run-1", host="host-a", clock=clock)
    live.acquire()
    with caplog.at_level(logging.WARNING, logger="idstore.lock"):
        holder = store.lock("run-2", host="host-b", clock=clock).acquire(break_lock=True)
    assert holder.run_id == "run-2" and store.body()["run_id"] == "run-2"
    broke = [r for r in caplog.records if "--break-lock" in r.getMessage()]
    assert len(broke) == 1 and broke[0].levelno == logging.WARNING
    assert "run-1" in broke[0].getMessage() and "host-a" in broke[0].getMessage()
    with pytest.raises(LockLost):
        live.check()


def test_break_lock_on_a_free_table_just_takes_it(store):
    assert store.lock("run-1").acquire(break_lock=True).run_id == "run-1"


def test_an_unreadable_lock_is_refused_and_only_break_lock_takes_it(store):
    store.write(b"{not json")
    with pytest.raises(LockRefused, match="unreadable"):
        store.lock("run-1").acquire()
    assert store.raw() == b"{not json"
    assert store.lock("run-2").acquire(break_lock=True).run_id == "run-2"


def test_a_renewal_whose_answer_was_lost_still_counts(store):
    """The write landed but its answer did not (a retried request then fails its condition)."""
    clock = Clock()
    lock = store.lock("run-1", clock=clock)
    lock.acquire()
    backend = lock._backend
    real_replace = backend.replace
    calls = []

    def replace_then_lose_the_answer(version, data):
        calls.append(version)
        real_replace(version, data)
        return None if len(calls) == 1 else real_replace(version, data)

    backend.replace = replace_then_lose_the_answer
    clock.now += 0.5 * LEASE
    lock.renew()
    backend.replace = real_replace
    clock.now += 0.6 * LEASE  # past the original lease
    lock.check()
    with pytest.raises(LockRefused):
        store.lock("run-2", clock=clock).acquire()


def test_two_runs_racing_for_a_table_exactly_one_wins(store):
    for round_no in range(20):
        table = f"race{round_no}"
        barrier = threading.Barrier(2)
        outcome = {}

        def run(run_id, table=table, barrier=barrier, outcome=outcome):
            lock = store.lock(run_id, host=run_id, table=table)
            barrier.wait()
            try:
                lock.acquire()
                outcome[run_id] = "won"
            except LockRefused as exc:
                outcome[run_id] = exc.holder.run_id

        threads = [threading.Thread(target=run, args=(f"run-{round_no}-{n}",)) for n in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        winners = [run_id for run_id, result in outcome.items() if result == "won"]
        assert len(outcome) == 2 and len(winners) == 1, outcome
        loser = next(run_id for run_id in outcome if run_id not in winners)
        assert outcome[loser] == winners[0]  # the loser was told who won
        assert store.body(table)["run_id"] == winners[0]


def test_the_renewal_thread_keeps_a_short_lease_alive(store):
    # a renewal has lease x 2/3 to land: 0.8 s, room for a loaded machine's slow request
    lock = store.lock("run-1", clock=time.time, lease_s=1.2)
    lock.acquire()
    first_expiry = store.body()["expires_at"]
    time.sleep(3.0)  # 2.5 leases: about 7 renewals at lease / 3
    lock.check()
    assert store.body()["expires_at"] > first_expiry
    with pytest.raises(LockRefused):
        store.lock("run-2", clock=time.time, lease_s=1.2).acquire()
    lock.release()
    assert store.raw() is None


def test_acquiring_twice_in_one_run_is_a_bug_and_a_released_lock_is_not_held(store):
    lock = store.lock("run-1")
    lock.acquire()
    with pytest.raises(RuntimeError, match="already held"):
        lock.acquire()
    lock.release()
    with pytest.raises(LockLost):
        lock.check()
    assert not lock.is_held


def test_s3_release_without_conditional_delete_leaves_a_released_lock_the_next_run_takes(moto_endpoint, tmp_path):
    store = Store("s3", tmp_path, moto_endpoint)
    clock = Clock()
    first = store.lock("run-1", clock=clock)
    first.acquire()
    client = first._backend.client

    def refuse(**kwargs):
        raise ClientError({"Error": {"Code": "NotImplemented", "Message": "no If-Match"},
                           "ResponseMetadata": {"HTTPStatusCode": 501}}, "DeleteObject")

    client.delete_object = refuse
    first.release()
    body = store.body()
    assert body == {"run_id": "run-1", "host": "host-a", "pid": os.getpid(), "started_at": "2027-01-15T08:00:00.000Z",
                    "expires_at": "1970-01-01T00:00:00.000Z", "token": body["token"], "lease_s": LEASE,
                    "released": True}
    second = store.lock("run-2", clock=clock)
    assert second.acquire().run_id == "run-2"
    assert "released" not in store.body()
    second.release()
    assert store.raw() is None
