"""Pacing and back-off arithmetic, on a simulated clock; the response parser; the progress line."""
import json
import logging
import random
import time
import zlib

import pytest
from botocore.exceptions import ClientError, HTTPClientError

from idstore.dynamodb.rate import AimdPolicy, AimdRate, TokenBucket, requests_in_flight
from idstore.dynamodb.retry import full_jitter, retry_reason
from idstore.dynamodb.transport import parse_response
from idstore.progress import ProgressSender, ProgressServer


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_the_bucket_holds_its_rate_over_time_and_never_bursts_past_its_size():
    clock = Clock()
    bucket = TokenBucket(rate=1000.0, burst=500.0, initial=25.0, clock=clock, sleep=clock.sleep)
    for _ in range(400):  # 400 batches of 25 WCU = 10,000 WCU
        bucket.acquire(25.0)
    assert 10000 / 1000.0 - 0.1 <= clock.now - 100.0 <= 10000 / 1000.0  # 10 s at 1000 WCU/s (25 came free)
    clock.sleep(60.0)  # idle for a minute: at most `burst` tokens saved up
    start = clock.now
    for _ in range(40):  # 1000 WCU: 500 from the burst, 500 at the rate
        bucket.acquire(25.0)
    assert clock.now - start == pytest.approx(0.5, abs=1e-6)


def test_reported_consumption_corrects_the_estimate_both_ways():
    clock = Clock()
    bucket = TokenBucket(rate=100.0, burst=100.0, initial=100.0, clock=clock, sleep=clock.sleep)
    bucket.acquire(100.0)
    bucket.adjust(100.0 - 40.0)  # only 40 consumed (unprocessed items): 60 come back
    assert bucket.balance() == pytest.approx(60.0)
    bucket.adjust(-160.0)  # larger items than estimated: the bucket goes into debt
    assert bucket.acquire(1.0) == pytest.approx(1.01)  # the debt (100) and the token, at 100/s


def test_aimd_cuts_on_throttles_once_per_window_and_climbs_back_to_the_share():
    clock = Clock()
    bucket = TokenBucket(rate=1000.0, burst=100.0, clock=clock, sleep=clock.sleep)
    rate = AimdRate(bucket, target=1000.0, policy=AimdPolicy(decrease=0.5, increase=0.1, window_s=0.5), clock=clock)
    assert rate.on_throttle() and bucket.rate == 500.0
    assert not rate.on_throttle()  # the same burst of throttles: no second cut
    clock.sleep(0.6)
    assert rate.on_throttle() and bucket.rate == 250.0
    for _ in range(30):  # quiet windows: +100 WCU/s each, capped at the target
        clock.sleep(0.5)
        rate.record(25, 0)
    assert bucket.rate == 1000.0 and rate.cuts == 2


def test_a_new_share_keeps_the_cut_and_resizes_the_bucket_and_a_zero_share_holds_the_callers():
    clock = Clock()
    bucket = TokenBucket(rate=1000.0, burst=1000.0, initial=1000.0, clock=clock, sleep=clock.sleep)
    rate = AimdRate(bucket, target=1000.0, policy=AimdPolicy(decrease=0.5), clock=clock)
    assert rate.on_throttle() and bucket.rate == 500.0
    rate.set_target(400.0, burst=400.0)  # a lease hands the task a smaller share
    assert bucket.rate == 200.0 and bucket.burst == 400.0 and bucket.balance() == 400.0  # still cut by half
    rate.set_target(0.0, burst=0.0)  # nothing free for this task yet
    assert bucket.rate == 0.0

    def sleep(seconds):  # the share arrives 2 s later, while a sender waits
        clock.sleep(seconds)
        if clock.now >= 102.0 and bucket.rate == 0.0:
            rate.set_target(100.0, burst=100.0)

    bucket._sleep = sleep
    bucket.acquire(1.0)  # the 1 token of the tiny bucket is left: taken at once
    start = clock.now
    waited = bucket.acquire(25.0)
    assert clock.now - start == pytest.approx(waited)
    # held at rate 0 until t = 102, then 25 tokens at 50 WCU/s (half of the new share of 100)
    assert 102.0 + 0.5 - 1e-6 <= clock.now <= 102.0 + 0.5 + TokenBucket.max_wait_s


def test_aimd_cuts_when_most_of_a_window_comes_back_unprocessed_but_not_for_a_few():
    clock = Clock()
    bucket = TokenBucket(rate=1000.0, burst=100.0, clock=clock, sleep=clock.sleep)
    rate = AimdRate(bucket, target=1000.0, policy=AimdPolicy(decrease=0.5, window_s=0.5), clock=clock)
    for _ in range(10):
        rate.record(25, 8)  # 32% unprocessed: retried, no cut
        clock.sleep(0.1)
    assert rate.cuts == 0 and bucket.rate == 1000.0
    for _ in range(10):
        rate.record(25, 20)  # 80% unprocessed: the table is over its capacity
        clock.sleep(0.1)
    assert rate.cuts >= 1 and bucket.rate < 1000.0


def test_requests_in_flight_cover_the_share_at_50_ms_per_call():
    assert requests_in_flight(5000.0) == 16  # 5000 WCU/s x 50 ms / 25 per call = 10, x1.5, +1
    assert requests_in_flight(100.0, floor=4) == 4
    assert requests_in_flight(10**7) == 64


def test_full_jitter_stays_within_its_envelope():
    rng = random.Random(1)
    draws = [full_jitter(3, base_s=0.01, cap_s=1.0, rng=rng) for _ in range(500)]
    assert 0.0 <= min(draws) and max(draws) <= 0.08 and max(draws) > 0.06
    assert max(full_jitter(40, base_s=0.01, cap_s=1.0, rng=rng) for _ in range(50)) <= 1.0


def _body(obj):
    return json.dumps(obj).encode()


def test_responses_are_parsed_into_botocore_errors_the_retry_rules_understand():
    ok = _body({"UnprocessedItems": {}})
    assert parse_response(200, {"x-amz-crc32": str(zlib.crc32(ok))}, ok) == {"UnprocessedItems": {}}
    with pytest.raises(HTTPClientError) as crc:
        parse_response(200, {"x-amz-crc32": "1"}, ok)  # a damaged body is retried, never trusted
    assert retry_reason(crc.value) == "connection"
    cases = [
        (400, {"__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
               "message": "slow down"}, "ProvisionedThroughputExceededException", "throttle"),
        (400, {"__type": "com.amazon.coral.availability#ThrottlingException"}, "ThrottlingException", "throttle"),
        (400, {"__type": "com.amazonaws.dynamodb.v20120810#RequestLimitExceeded"}, "RequestLimitExceeded", "throttle"),
        (500, {"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError"}, "InternalServerError", "5xx"),
        (400, {"__type": "com.amazonaws.dynamodb.v20120810#ValidationException"}, "ValidationException", None),
    ]
    for status, body, code, reason in cases:
        with pytest.raises(ClientError) as error:
            parse_response(status, {}, _body(body))
        assert error.value.response["Error"]["Code"] == code
        assert retry_reason(error.value) == reason
    with pytest.raises(ClientError) as html:
        parse_response(503, {}, b"<html>Service Unavailable</html>")  # a load balancer's page
    assert retry_reason(html.value) == "5xx"


def test_the_driver_logs_items_percent_rate_and_eta_from_executor_datagrams(caplog):
    server = ProgressServer("127.0.0.1", total=1000, label="put", every_s=0.2)
    with caplog.at_level(logging.INFO, logger="idstore.progress"), server:
        senders = [ProgressSender(server.address, partition) for partition in (0, 1)]
        senders[0].update(300, force=True)
        senders[1].update(200, force=True)
        senders[1].update(100, force=True)  # a retried task starts again: the latest count wins
        for _ in range(50):
            if server.done() == 400:
                break
            time.sleep(0.05)
        time.sleep(0.5)
    assert server.done() == 400
    assert any("put: 400 of 1000 items (40%)" in r.getMessage() and "ETA" in r.getMessage() for r in caplog.records)
    assert server.line(500, 100.0) == "put: 500 of 1000 items (50%), 100 items/s, ETA 5s"
    assert ProgressServer("127.0.0.1", total=0, label="delete").line(7, 0.0) == "delete: 7 items, 0 items/s"
