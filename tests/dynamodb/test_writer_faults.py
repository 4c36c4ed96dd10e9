"""The partition writer against the capacity emulator, over HTTP, under every fault it injects.

The reference is plain Python over the input (what the table must hold afterwards) and the
emulator's own view: what it stored, what it was sent and what it injected.
"""
import re
import time

import pytest

from idstore.dynamodb.writer import PartitionWriter, WriteFailed, WriterSettings
from idstore_tools.testing.emulator import THROTTLE_ERRORS, DynamoDBEmulator, item_size

from .conftest import KEY, TABLE, RecordingEmulator, create_table


def _settings(endpoint, **kw):
    values = dict(table=TABLE, key_attribute=KEY, region="us-east-1", endpoint_url=endpoint,
                  task_rate=100000.0, in_flight=4, backoff_cap_s=0.5, no_progress_timeout_s=30.0)
    values.update(kw)
    return WriterSettings(**values)


def _rows(n, prefix="P"):
    return [(f"{prefix}{i:06d}", {"n": i, "tag": f"t{i % 7}"}) for i in range(n)]


def _expected(rows):
    return {key: {KEY: {"S": key}, "n": {"N": str(a["n"])}, "tag": {"S": a["tag"]}} for key, a in rows}


def _stored(emu):
    return {item[KEY]["S"]: item for item in emu.items(TABLE)}


FAULTS = [
    pytest.param({"unprocessed_fraction": 0.5}, "unprocessed", id="unprocessed"),
    pytest.param({"error_5xx_fraction": 0.3}, "5xx", id="5xx"),
    *(pytest.param({"throttle_fraction": 0.3, "throttle_error": name}, "throttle", id=name)
      for name in sorted(THROTTLE_ERRORS)),
    pytest.param({"drop_connection_fraction": 0.2}, "connection", id="dropped-connections"),
]


@pytest.mark.parametrize("faults, kind", FAULTS)
def test_no_item_is_lost_under_injected_faults(emulator, faults, kind):
    emulator.set_faults(seed=5, **faults)
    rows = _rows(700)
    stats = PartitionWriter(_settings(emulator.endpoint_url)).run(rows)

    assert _stored(emulator) == _expected(rows)  # every item, with its attributes, nothing else
    metrics = emulator.metrics()
    assert stats.written == stats.put == 700 and stats.items_in == 700
    assert stats.requests == metrics["ops"]["BatchWriteItem"]  # each call counted once, by both sides
    if kind == "unprocessed":
        assert stats.unprocessed_resent == metrics["items_unprocessed"] > 0
    elif kind == "throttle":
        assert stats.retries_throttle == metrics["requests"]["throttled"] > 0
        assert stats.rate_cuts > 0  # the task slowed down after throttles
    elif kind == "5xx":
        assert stats.retries_5xx == metrics["requests"]["5xx"] > 0
    else:
        assert stats.retries_connection == metrics["requests"]["dropped"] > 0
    assert metrics["requests"]["error"] == 0  # no request was malformed or refused as invalid


class SlowFirstCalls(RecordingEmulator):
    """The emulator, answering its first `slow` BatchWriteItem calls after `latency_s`, then fast."""

    def __init__(self, slow, **kwargs):
        super().__init__(**kwargs)
        self.slow = slow

    def _op_batch_write_item(self, req):
        answer = super()._op_batch_write_item(req)  # applied, whether or not the caller still waits
        if len(self.batches) >= self.slow:
            self.set_latency(0.005)
        return answer


def test_no_item_is_lost_when_the_endpoint_is_slower_than_the_read_timeout():
    """Calls that time out may still have been applied: re-sending them is harmless, losing them is not."""
    with SlowFirstCalls(slow=6, write_rate=0, latency_s=0.4, seed=11) as emu:
        create_table(emu.endpoint_url)
        rows = _rows(300, prefix="S")
        stats = PartitionWriter(_settings(emu.endpoint_url, read_timeout_s=0.2)).run(rows)
        assert _stored(emu) == _expected(rows)
    # at least the first 6 calls were answered after the client gave up on them: each was sent again
    assert stats.written == 300 and stats.retries_connection >= 6


def test_a_slow_endpoint_is_hidden_by_requests_in_flight(emulator):
    emulator.set_latency(0.1)
    rows = _rows(800, prefix="L")
    stats = PartitionWriter(_settings(emulator.endpoint_url, in_flight=8)).run(rows)
    assert _stored(emulator) == _expected(rows)
    assert stats.requests == 32 and stats.latency_p50_ms >= 100
    # the calls overlapped: the emulator answered up to 8 at once (one per sender thread), not one by one
    assert emulator.metrics()["in_flight_peak"] == stats.in_flight == 8


def test_duplicate_keys_never_reach_a_batch_and_the_first_row_wins(emulator):
    emulator.set_faults(unprocessed_fraction=0.3, seed=2)  # retried requests are merged into new batches
    distinct = [f"D{i:04d}" for i in range(300)]
    order = distinct + distinct[::-1] + distinct[::3] + distinct[1::3] + distinct[2::3]
    rows = [(key, {"occurrence": n}) for n, key in enumerate(order)]
    stats = PartitionWriter(_settings(emulator.endpoint_url)).run(rows)

    assert emulator.batches, "the spy saw no batch"
    for keys in emulator.batches:
        assert len(keys) == len(set(keys)) and 1 <= len(keys) <= 25
    first = {}
    for n, key in enumerate(order):
        first.setdefault(key, n)
    assert {k: int(v["occurrence"]["N"]) for k, v in _stored(emulator).items()} == first
    assert stats.duplicates == len(order) - len(distinct) == 600
    assert stats.written == 300 and emulator.metrics()["requests"]["error"] == 0


def test_oversize_keys_and_items_are_rejected_before_sending_and_counted(emulator):
    name_bytes = len(KEY) + len("blob")
    limit_blob = 400 * 1024 - name_bytes - len("at-limit")
    rows = [
        ("k" * 2048, {}),  # the longest key DynamoDB takes
        ("k" * 2049, {}),
        ("é" * 1025, {}),  # 2050 bytes in UTF-8
        ("at-limit", {"blob": "x" * limit_blob}),  # exactly 400 KB
        ("over-limit", {"blob": "x" * (limit_blob + 1)}),
        ("ü-over", {"blob": "ü" * (limit_blob // 2 + 1)}),  # characters under, bytes over
        ("", {}),
        (None, {}),
        ("fine", {}),
    ]
    at_limit = {KEY: {"S": "at-limit"}, "blob": {"S": "x" * limit_blob}}
    assert item_size(at_limit) == 400 * 1024  # the emulator's own size rule agrees with the input
    stats = PartitionWriter(_settings(emulator.endpoint_url)).run(rows)

    assert set(_stored(emulator)) == {"k" * 2048, "at-limit", "fine"}
    sent = {key for keys in emulator.batches for key in keys}
    assert sent == {"k" * 2048, "at-limit", "fine"}  # the rejected ones never left the task
    by_reason = (stats.rejected_key_too_long, stats.rejected_item_too_large, stats.rejected_key_missing)
    assert by_reason == (2, 2, 2)
    assert stats.rejected == 6 and stats.written == 3
    assert emulator.metrics()["requests"]["error"] == 0  # DynamoDB's rules, as emulated, agree


def test_the_deadline_fails_the_task_naming_what_was_not_written(emulator):
    emulator.set_down(True)
    rows = _rows(60, prefix="X")
    writer = PartitionWriter(_settings(emulator.endpoint_url, no_progress_timeout_s=1.0, backoff_cap_s=0.2),
                             partition_id=3)
    with pytest.raises(WriteFailed) as failure:
        writer.run(rows)
    message = str(failure.value)
    assert f"DynamoDB write to {TABLE} failed in partition 3" in message
    assert "nothing written for" in message and "no_progress_timeout_s = 1" in message
    # what was queued or in the failing batch is listed; a call still in flight on another
    # thread is not (under load some are), so the listed share is between 1 and all 60
    listed = re.search(r"Not written: (\d+) put requests queued or in this batch \[(X\d+)", message)
    read = re.search(r"after the (\d+) read so far", message)
    assert listed and 1 <= int(listed.group(1)) <= 60 and read and int(read.group(1)) <= 60, message
    assert "Written before: 0" in message and "connection errors" in message
    assert emulator.items(TABLE) == []


class SkewedClock:
    """time.monotonic plus a skew the test adds to: simulated idle time, without sleeping."""

    def __init__(self):
        self.skew = 0.0

    def __call__(self):
        return time.monotonic() + self.skew


def test_waiting_for_input_is_not_a_stall(emulator):
    """The deadline counts time with work pending, not time spent waiting for the next rows.
    Seven times the input pauses for longer than the deadline (on the writer's clock, once
    everything before the pause is written); half the calls fail with a 5xx, so some first
    call after a pause fails and the deadline is checked right then."""
    emulator.set_faults(error_5xx_fraction=0.5, seed=9)
    clock = SkewedClock()

    settings = _settings(emulator.endpoint_url, no_progress_timeout_s=5.0)
    writer = PartitionWriter(settings, clock=clock)

    def slow_rows():
        for i in range(200):
            if i % 25 == 0 and i:  # whole batches: the reader queues 25 rows at a time
                # the writer has nothing left to do (or has failed)
                while emulator.metrics()["items_written"] < i and writer.queue.error is None:
                    time.sleep(0.01)
                clock.skew += 6.0  # an upstream stage producing rows slowly
            yield f"W{i:04d}", {}

    stats = writer.run(slow_rows())
    assert stats.written == 200 and stats.retries_5xx > 0
    assert clock.skew == pytest.approx(42.0)


def test_a_table_over_its_real_budget_slows_the_task_down():
    """The table takes 400 WCU/s while the task was told 2000: throttles cut the task's rate."""
    with DynamoDBEmulator(write_rate=400, burst_s=0.2, latency_s=0.005, seed=4) as emu:
        create_table(emu.endpoint_url)
        rows = _rows(1200, prefix="B")
        stats = PartitionWriter(_settings(emu.endpoint_url, task_rate=2000.0, backoff_cap_s=1.0)).run(rows)
        assert _stored(emu) == _expected(rows)
        metrics = emu.metrics()
    assert stats.rate_cuts > 0
    assert metrics["budget_throttles"] == stats.retries_throttle
