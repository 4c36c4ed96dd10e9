"""The DynamoDB capacity emulator, exercised through real HTTP with boto3."""

import json
import subprocess
import sys
import threading
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from idstore_tools.testing.emulator import THROTTLE_ERRORS, DynamoDBEmulator, item_size

HASH_TABLE = "IdentifierStore"
RANGE_TABLE = "ProgramMembers"


def make_client(endpoint_url):
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="anything",
        aws_secret_access_key="anything",
        # total_max_attempts=1: no retries at all ({"max_attempts": 1} would still allow one retry)
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=2, read_timeout=10, max_pool_connections=16
        ),
    )


def create_hash_table(client, name=HASH_TABLE, wcu=None):
    kwargs = {"BillingMode": "PAY_PER_REQUEST"}
    if wcu is not None:
        kwargs = {"BillingMode": "PROVISIONED", "ProvisionedThroughput": {"ReadCapacityUnits": 10, "WriteCapacityUnits": wcu}}
    return client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "product_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "product_id", "AttributeType": "S"}],
        **kwargs,
    )


def put(pid, **extra):
    item = {"product_id": {"S": pid}}
    item.update(extra)
    return {"PutRequest": {"Item": item}}


def delete(pid):
    return {"DeleteRequest": {"Key": {"product_id": {"S": pid}}}}


def error_code(call, *args, **kwargs):
    with pytest.raises(ClientError) as exc:
        call(*args, **kwargs)
    return exc.value.response["Error"]["Code"]


def stored_ids(emu, table=HASH_TABLE):
    return {it["product_id"]["S"] for it in emu.items(table)}


@pytest.fixture
def emu():
    with DynamoDBEmulator(write_rate=0, seed=1) as e:
        yield e


@pytest.fixture
def client(emu):
    return make_client(emu.endpoint_url)


# --------------------------------------------------------------------------
# differential test against moto


VOLATILE = {
    "ResponseMetadata",
    "CreationDateTime",
    "TableArn",
    "TableId",
    "ConsumedCapacity",  # moto always reports 1.0 per table, whatever was written
    "ItemCollectionMetrics",  # moto adds an empty one
    "TableSizeBytes",  # moto reports 0
    "WarmThroughput",  # moto invents one for every table
    "OnDemandThroughput",  # moto does not echo it
    "LocalSecondaryIndexes",  # moto adds empty lists
    "GlobalSecondaryIndexes",
}


def normalize(obj):
    if isinstance(obj, dict):
        return {k: normalize(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [normalize(v) for v in obj]
    return obj


def sort_items(items):
    return sorted(items, key=lambda it: json.dumps(it, sort_keys=True, default=str))


def full_scan(client, table, **kwargs):
    items, pages = [], 0
    start = None
    while True:
        if start:
            kwargs["ExclusiveStartKey"] = start
        r = client.scan(TableName=table, **kwargs)
        items.extend(r.get("Items", []))
        pages += 1
        start = r.get("LastEvaluatedKey")
        if not start:
            return items, pages


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield "http://%s:%d" % (host, port)
    server.stop()


def test_differential_against_moto(moto_endpoint, emu):
    clients = {"moto": make_client(moto_endpoint), "emu": make_client(emu.endpoint_url)}
    urllib.request.urlopen(urllib.request.Request(moto_endpoint + "/moto-api/reset", method="POST")).read()

    def both(method, **kwargs):
        out = {name: normalize(getattr(c, method)(**kwargs)) for name, c in clients.items()}
        assert out["moto"] == out["emu"], method
        return out["emu"]

    def both_raw(fn):
        return {name: fn(c) for name, c in clients.items()}

    both(
        "create_table",
        TableName=HASH_TABLE,
        KeySchema=[{"AttributeName": "product_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "product_id", "AttributeType": "S"}],
        BillingMode="PROVISIONED",
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 50},
    )
    both(
        "create_table",
        TableName=RANGE_TABLE,
        KeySchema=[{"AttributeName": "program", "KeyType": "HASH"}, {"AttributeName": "seq", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "program", "AttributeType": "S"},
            {"AttributeName": "seq", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    assert both("list_tables") == {"TableNames": [HASH_TABLE, RANGE_TABLE]}

    first = [put("P%03d" % i, program={"S": "FFA"}, lvl={"N": str(i)}, tags={"SS": ["a", "b"]}) for i in range(25)]
    assert both("batch_write_item", RequestItems={HASH_TABLE: first}, ReturnConsumedCapacity="TOTAL") == {
        "UnprocessedItems": {}
    }
    second = [put("P%03d" % i, nested={"M": {"x": {"L": [{"N": "1"}, {"BOOL": True}, {"NULL": True}]}}}) for i in range(25, 33)]
    second += [delete("P000"), delete("P001"), delete("NOPE")]
    both("batch_write_item", RequestItems={HASH_TABLE: second}, ReturnConsumedCapacity="INDEXES")
    ranged = [
        {"PutRequest": {"Item": {"program": {"S": "FFA" if i % 2 else "GPS"}, "seq": {"N": str(i)}, "v": {"S": "x" * i}}}}
        for i in range(20)
    ]
    both("batch_write_item", RequestItems={RANGE_TABLE: ranged, HASH_TABLE: [put("P900")]}, ReturnConsumedCapacity="NONE")

    both("put_item", TableName=HASH_TABLE, Item={"product_id": {"S": "P002"}, "replaced": {"BOOL": True}})
    both("put_item", TableName=HASH_TABLE, Item={"product_id": {"S": "P003"}}, ReturnValues="ALL_OLD")
    both("get_item", TableName=HASH_TABLE, Key={"product_id": {"S": "P002"}})
    both("get_item", TableName=HASH_TABLE, Key={"product_id": {"S": "P026"}}, ConsistentRead=True)
    both("get_item", TableName=HASH_TABLE, Key={"product_id": {"S": "P000"}})  # deleted
    both(
        "get_item",
        TableName=HASH_TABLE,
        Key={"product_id": {"S": "P010"}},
        ProjectionExpression="#p, lvl",
        ExpressionAttributeNames={"#p": "program"},
    )
    both("get_item", TableName=RANGE_TABLE, Key={"program": {"S": "FFA"}, "seq": {"N": "7"}})
    both("delete_item", TableName=HASH_TABLE, Key={"product_id": {"S": "P004"}}, ReturnValues="ALL_OLD")
    both("delete_item", TableName=HASH_TABLE, Key={"product_id": {"S": "P004"}})

    got = both_raw(
        lambda c: c.batch_get_item(
            RequestItems={
                HASH_TABLE: {"Keys": [{"product_id": {"S": "P%03d" % i}} for i in (0, 5, 6, 30, 77)]},
                RANGE_TABLE: {"Keys": [{"program": {"S": "GPS"}, "seq": {"N": "4"}}]},
            }
        )
    )
    for name in got:
        assert got[name]["UnprocessedKeys"] == {}
        got[name] = {t: sort_items(v) for t, v in got[name]["Responses"].items()}
    assert got["moto"] == got["emu"]
    assert len(got["emu"][HASH_TABLE]) == 3

    for table in (HASH_TABLE, RANGE_TABLE):
        scans = both_raw(lambda c, table=table: sort_items(full_scan(c, table)[0]))
        assert scans["moto"] == scans["emu"]
        everything = scans["emu"]
        # paging with Limit (7 does not divide the item counts)
        paged = both_raw(lambda c, table=table: full_scan(c, table, Limit=7))
        for name, (items, pages) in paged.items():
            assert sort_items(items) == everything, name
            assert pages >= 3
        # parallel scan: segments are disjoint and cover the table
        for name, c in clients.items():
            segs = [full_scan(c, table, Segment=s, TotalSegments=4)[0] for s in range(4)]
            assert sum(len(s) for s in segs) == len(everything), name
            assert sort_items([it for s in segs for it in s]) == everything, name
        counts = both_raw(lambda c, table=table: c.scan(TableName=table, Select="COUNT"))
        assert counts["moto"]["Count"] == counts["emu"]["Count"] == len(everything)
        assert "Items" not in counts["emu"]
        both("describe_table", TableName=table)

    # what both reject the same way
    def rejected(c, **kwargs):
        with pytest.raises(ClientError) as exc:
            c.batch_write_item(**kwargs)
        return exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]

    same_put_twice = [put("D1", v={"N": "1"}), put("D1", v={"N": "1"})]
    cases = {
        "duplicate puts": {HASH_TABLE: same_put_twice},
        "missing key": {HASH_TABLE: [{"PutRequest": {"Item": {"other": {"S": "x"}}}}]},
        "wrong key type": {HASH_TABLE: [{"PutRequest": {"Item": {"product_id": {"N": "1"}}}}]},
        "empty key": {HASH_TABLE: [put("")]},
        "item over 400 KB": {HASH_TABLE: [put("BIG", blob={"S": "x" * (400 * 1024)})]},
        "unknown table": {"NoSuchTable": [put("X")]},
    }
    for case, request_items in cases.items():
        codes = both_raw(lambda c, request_items=request_items: rejected(c, RequestItems=request_items))
        assert codes["moto"] == codes["emu"], case
    assert codes["emu"] == ("ResourceNotFoundException", 400)
    dup = both_raw(lambda c: rejected(c, RequestItems={HASH_TABLE: same_put_twice}))
    assert dup["emu"] == dup["moto"] == ("ValidationException", 400)

    # What DynamoDB rejects but moto 5.x accepts: a batch of 26 requests, and
    # two requests for one key that are not byte-identical puts. The
    # emulator rejects them like DynamoDB; only its answer is asserted.
    c = clients["emu"]
    assert rejected(c, RequestItems={HASH_TABLE: [put("N%02d" % i) for i in range(26)]}) == ("ValidationException", 400)
    assert rejected(c, RequestItems={HASH_TABLE: [put("D2", v={"N": "1"}), put("D2", v={"N": "2"})]})[0] == "ValidationException"
    assert rejected(c, RequestItems={HASH_TABLE: [put("D3"), delete("D3")]})[0] == "ValidationException"
    with pytest.raises(ClientError, match="Provided list of item keys contains duplicates"):
        c.batch_write_item(RequestItems={HASH_TABLE: [put("D3"), delete("D3")]})
    # and nothing of the rejected batches was written, on either side
    assert both_raw(lambda c: c.describe_table(TableName=HASH_TABLE)["Table"]["ItemCount"]) == {
        "moto": 31,
        "emu": 31,
    }
    # DeleteTable: moto answers TableStatus ACTIVE, DynamoDB (and the emulator) DELETING
    assert clients["emu"].delete_table(TableName=RANGE_TABLE)["TableDescription"]["TableStatus"] == "DELETING"
    assert clients["emu"].list_tables()["TableNames"] == [HASH_TABLE]


# --------------------------------------------------------------------------
# capacity


class SimulatedClock:
    """A monotonic clock that moves only when the test moves it."""

    def __init__(self, now=0.0):
        self.now = now

    def __call__(self):
        return self.now


def test_write_budget_token_bucket():
    """On a simulated clock: the budget and burst hold exactly, whatever the machine's speed."""
    rate, burst_s, n_items, step = 100.0, 1.0, 300, 0.125  # 0.125 s: exact in binary, 12.5 WCU per step
    clock = SimulatedClock()
    with DynamoDBEmulator(burst_s=burst_s, seed=1, clock=clock) as emu:
        c = make_client(emu.endpoint_url)
        create_hash_table(c, wcu=int(rate))  # the budget comes from the provisioned WCU
        assert emu.write_rate(HASH_TABLE) == rate
        pending = [put("item-%04d" % i, payload={"S": "p" * 990}) for i in range(n_items)]
        assert item_size(pending[0]["PutRequest"]["Item"]) <= 1024  # 1 WCU each
        acked, charged, partial, throttled = set(), 0.0, 0, 0
        timeline = []  # (simulated seconds since create, items acknowledged so far)
        for call in range(1000):
            if not pending:
                break
            if call % 2:
                clock.now += step  # two calls per step: the second finds the bucket drained
            batch, pending = pending[:25], pending[25:]
            try:
                r = c.batch_write_item(RequestItems={HASH_TABLE: batch}, ReturnConsumedCapacity="TOTAL")
            except ClientError as e:
                assert e.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
                throttled += 1
                pending = batch + pending
                continue
            back = r["UnprocessedItems"].get(HASH_TABLE, [])
            if back:
                partial += 1
            back_ids = {b["PutRequest"]["Item"]["product_id"]["S"] for b in back}
            acked |= {b["PutRequest"]["Item"]["product_id"]["S"] for b in batch} - back_ids
            charged += r["ConsumedCapacity"][0]["CapacityUnits"]
            pending = back + pending
            timeline.append((clock.now, len(acked)))
        series = emu.wcu_series()
    assert not pending, "budget never let the last items through"
    assert partial > 0 and throttled > 0
    assert charged == len(acked) == n_items
    # never above the burst + rate x time
    for t, n in timeline:
        assert n <= rate * burst_s + rate * t, (t, n)
    # and the budget was used to the full: the last item went in as soon as the budget allowed,
    # (300 - 100 burst) / 100 WCU/s = 2 s, give or take one step of the simulated clock
    finished = timeline[-1][0]
    assert (n_items - rate * burst_s) / rate <= finished <= (n_items - rate * burst_s) / rate + step
    # per simulated second: the burst and the rate in the first, the rate after
    assert [s for s, _ in series] == [0, 1, 2] and sum(w for _, w in series) == n_items
    assert series[1][1] <= rate and series[0][1] <= rate * burst_s + rate
    # nothing acknowledged is lost, nothing unacknowledged appears
    assert stored_ids(emu) == acked
    m = emu.metrics()
    assert m["items_written"] == n_items
    assert m["wcu_consumed"] == n_items
    assert m["requests"]["throttled"] == throttled and m["requests"]["partial"] == partial
    assert m["budget_throttles"] == throttled


def test_item_size_and_cost(emu, client):
    assert item_size({"pk": {"S": "abc"}}) == 5
    assert item_size({"n": {"N": "12345"}}) == 1 + 4  # 5 digits -> 3 bytes + 1
    assert item_size({"n": {"N": "-0.00120"}}) == 1 + 2
    assert item_size({"é": {"S": "ü"}}) == 4
    assert item_size({"m": {"M": {"a": {"BOOL": True}}}}) == 1 + 3 + 1 + 1 + 1
    assert item_size({"b": {"B": "AAECAw=="}}) == 1 + 4
    create_hash_table(client)
    r = client.put_item(
        TableName=HASH_TABLE, Item={"product_id": {"S": "P1"}, "blob": {"S": "x" * 2500}}, ReturnConsumedCapacity="TOTAL"
    )
    assert r["ConsumedCapacity"] == {"TableName": HASH_TABLE, "CapacityUnits": 3.0}
    r = client.delete_item(TableName=HASH_TABLE, Key={"product_id": {"S": "P1"}}, ReturnConsumedCapacity="INDEXES")
    assert r["ConsumedCapacity"] == {"TableName": HASH_TABLE, "CapacityUnits": 1.0, "Table": {"CapacityUnits": 1.0}}
    r = client.batch_write_item(
        RequestItems={HASH_TABLE: [put("A", blob={"S": "y" * 1500}), put("B"), delete("C")]}, ReturnConsumedCapacity="TOTAL"
    )
    assert r["ConsumedCapacity"] == [{"TableName": HASH_TABLE, "CapacityUnits": 4.0}]
    assert "ConsumedCapacity" not in client.batch_write_item(RequestItems={HASH_TABLE: [put("D")]})


def test_on_demand_table_budget_and_describe(emu, client):
    emu.set_write_rate(None, None)  # back to "each table's own capacity"
    client.create_table(
        TableName="OnDemand",
        KeySchema=[{"AttributeName": "product_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "product_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        OnDemandThroughput={"MaxReadRequestUnits": 100, "MaxWriteRequestUnits": 20},
        WarmThroughput={"ReadUnitsPerSecond": 12000, "WriteUnitsPerSecond": 4000},
    )
    d = client.describe_table(TableName="OnDemand")["Table"]
    assert d["TableStatus"] == "ACTIVE"
    assert d["BillingModeSummary"] == {"BillingMode": "PAY_PER_REQUEST"}
    assert d["OnDemandThroughput"] == {"MaxReadRequestUnits": 100, "MaxWriteRequestUnits": 20}
    assert d["WarmThroughput"]["WriteUnitsPerSecond"] == 4000
    assert d["ProvisionedThroughput"]["WriteCapacityUnits"] == 0
    assert emu.write_rate("OnDemand") == 20
    r = client.batch_write_item(RequestItems={"OnDemand": [put("X%02d" % i) for i in range(25)]})
    assert len(r["UnprocessedItems"]["OnDemand"]) == 5
    # on-demand tables throttle with ThrottlingException; 100 WCU > the 20 WCU bucket:
    # only a full bucket (1 s after it was drained) takes it
    big = {"product_id": {"S": "Y"}, "blob": {"S": "b" * 100 * 1024}}
    assert error_code(client.put_item, TableName="OnDemand", Item=big) == "ThrottlingException"
    emu.set_write_rate("OnDemand", 0)  # unlimited
    assert emu.write_rate("OnDemand") is None
    client.put_item(TableName="OnDemand", Item=big)
    assert client.describe_table(TableName="OnDemand")["Table"]["ItemCount"] == 21


def test_latency_overlaps_between_requests():
    """Latency is slept outside the lock: 4 requests at once are all answered at once
    (the emulator's count of requests in flight, not a stopwatch)."""
    with DynamoDBEmulator(latency_s=0.5, write_rate=0) as emu:
        c = make_client(emu.endpoint_url)
        create_hash_table(c)
        c.get_item(TableName=HASH_TABLE, Key={"product_id": {"S": "warm"}})  # the client's first call builds it
        assert emu.metrics()["in_flight_peak"] == 1  # one at a time so far
        ready = threading.Barrier(4)
        answers = []

        def one():
            ready.wait()
            answers.append(c.get_item(TableName=HASH_TABLE, Key={"product_id": {"S": "x"}}))

        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        peak = emu.metrics()["in_flight_peak"]
    assert len(answers) == 4
    assert peak == 4  # in series the peak would stay 1


# --------------------------------------------------------------------------
# faults


def send_single_puts(client, n, prefix):
    """n BatchWriteItems of one item; returns (acked ids, error codes/kinds)."""
    acked, errors = set(), []
    for i in range(n):
        pid = "%s-%04d" % (prefix, i)
        try:
            r = client.batch_write_item(RequestItems={HASH_TABLE: [put(pid)]})
        except ClientError as e:
            errors.append((e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]))
            continue
        except BotoCoreError as e:
            errors.append((type(e).__name__, None))
            continue
        assert r["UnprocessedItems"] == {}
        acked.add(pid)
    return acked, errors


@pytest.mark.parametrize(
    "fault, expected",
    [
        ({"error_5xx_fraction": 0.3}, ("InternalServerError", 500)),
        ({"throttle_fraction": 0.3, "throttle_error": "ThrottlingException"}, ("ThrottlingException", 400)),
        ({"drop_connection_fraction": 0.3}, ("ConnectionClosedError", None)),
    ],
)
def test_request_faults_fire_at_fraction_and_write_nothing(emu, client, fault, expected):
    create_hash_table(client)
    emu.set_faults(seed=7, **fault)
    n = 200
    acked, errors = send_single_puts(client, n, "F")
    assert set(errors) == {expected}
    assert 0.2 * n <= len(errors) <= 0.4 * n
    assert stored_ids(emu) == acked
    m = emu.metrics()
    outcome = {500: "5xx", 400: "throttled", None: "dropped"}[expected[1]]
    assert m["requests"][outcome] == len(errors)
    assert m["requests"]["ok"] == 1 + len(acked)  # CreateTable + the acknowledged writes
    assert m["items_written"] == len(acked)
    # reads are not faulted by default
    emu.set_faults(**{k: 1.0 if k.endswith("fraction") else v for k, v in fault.items()})
    assert client.scan(TableName=HASH_TABLE, Select="COUNT")["Count"] == len(acked)


@pytest.mark.parametrize("name", sorted(THROTTLE_ERRORS))
def test_throttle_error_names(emu, client, name):
    create_hash_table(client)
    emu.set_faults(throttle_fraction=1.0, throttle_error=name)
    assert error_code(client.put_item, TableName=HASH_TABLE, Item={"product_id": {"S": "x"}}) == name
    assert error_code(client.batch_write_item, RequestItems={HASH_TABLE: [put("y")]}) == name
    assert emu.items(HASH_TABLE) == []


def test_unprocessed_fraction(emu, client):
    create_hash_table(client)
    emu.set_faults(unprocessed_fraction=0.2, seed=3)
    acked, returned = set(), 0
    for b in range(40):
        batch = [put("U-%02d-%02d" % (b, i)) if i % 5 else delete("gone-%d" % i) for i in range(25)]
        r = client.batch_write_item(RequestItems={HASH_TABLE: batch})
        back = r["UnprocessedItems"].get(HASH_TABLE, [])
        returned += len(back)
        back_keys = {json.dumps(x, sort_keys=True) for x in back}
        for req in batch:
            if "PutRequest" in req and json.dumps(req, sort_keys=True) not in back_keys:
                acked.add(req["PutRequest"]["Item"]["product_id"]["S"])
    assert 0.15 * 1000 <= returned <= 0.25 * 1000
    assert stored_ids(emu) == acked
    m = emu.metrics()
    assert m["faults_injected"]["unprocessed_items"] == m["items_unprocessed"] == returned
    assert m["items_written"] == len(acked)


def test_faults_are_reproducible_with_a_seed():
    outcomes = []
    for _ in range(2):
        with DynamoDBEmulator(write_rate=0, error_5xx_fraction=0.5, seed=42) as emu:
            c = make_client(emu.endpoint_url)
            create_hash_table(c)
            acked, _ = send_single_puts(c, 30, "R")
            outcomes.append(sorted(acked))
    assert outcomes[0] == outcomes[1]
    assert 0 < len(outcomes[0]) < 30


def test_set_down_refuses_connections(emu, client):
    create_hash_table(client)
    emu.set_down(True)
    for _ in range(3):
        with pytest.raises(BotoCoreError):
            client.put_item(TableName=HASH_TABLE, Item={"product_id": {"S": "x"}})
    with pytest.raises(BotoCoreError):
        client.describe_table(TableName=HASH_TABLE)
    # the admin path still answers, so another process can bring it back
    metrics = json.loads(urllib.request.urlopen(emu.endpoint_url + "/_emulator/metrics").read())
    assert metrics["down"] is True and metrics["requests"]["refused"] == 4
    emu.set_down(False)
    client.put_item(TableName=HASH_TABLE, Item={"product_id": {"S": "x"}})
    assert stored_ids(emu) == {"x"}


# --------------------------------------------------------------------------
# validation, metrics, reset


def test_validation_errors(emu, client):
    create_hash_table(client)
    client.create_table(
        TableName=RANGE_TABLE,
        KeySchema=[{"AttributeName": "program", "KeyType": "HASH"}, {"AttributeName": "seq", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "program", "AttributeType": "S"},
            {"AttributeName": "seq", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    assert error_code(create_hash_table, client) == "ResourceInUseException"
    assert error_code(client.put_item, TableName=RANGE_TABLE, Item={"program": {"S": "A"}}) == "ValidationException"
    assert error_code(client.get_item, TableName=HASH_TABLE, Key={"product_id": {"S": "a"}, "x": {"S": "b"}}) == (
        "ValidationException"
    )
    assert error_code(client.get_item, TableName="Nope", Key={"product_id": {"S": "a"}}) == "ResourceNotFoundException"
    assert error_code(client.describe_table, TableName="Nope") == "ResourceNotFoundException"
    assert error_code(client.batch_write_item, RequestItems={HASH_TABLE: [put("x" * 2049)]}) == "ValidationException"
    assert error_code(client.scan, TableName=HASH_TABLE, Segment=2, TotalSegments=2) == "ValidationException"
    assert error_code(client.scan, TableName=HASH_TABLE, FilterExpression="a = b") == "ValidationException"
    keys = [{"product_id": {"S": "k%d" % i}} for i in range(101)]
    assert error_code(client.batch_get_item, RequestItems={HASH_TABLE: {"Keys": keys}}) == "ValidationException"
    assert error_code(client.batch_get_item, RequestItems={HASH_TABLE: {"Keys": keys[:2] * 2}}) == "ValidationException"
    # a hash+range table keys on both parts, numbers compare as numbers
    client.put_item(TableName=RANGE_TABLE, Item={"program": {"S": "A"}, "seq": {"N": "1.0"}, "v": {"S": "first"}})
    client.put_item(TableName=RANGE_TABLE, Item={"program": {"S": "A"}, "seq": {"N": "1"}, "v": {"S": "second"}})
    client.put_item(TableName=RANGE_TABLE, Item={"program": {"S": "A"}, "seq": {"N": "2"}})
    assert len(emu.items(RANGE_TABLE)) == 2
    got = client.get_item(TableName=RANGE_TABLE, Key={"program": {"S": "A"}, "seq": {"N": "1"}})["Item"]
    assert got["v"] == {"S": "second"}
    assert emu.metrics()["requests"]["error"] == 10


def test_metrics_and_reset(emu, client):
    create_hash_table(client, wcu=5)  # provisioned: budget errors are ProvisionedThroughputExceeded
    emu.set_write_rate(HASH_TABLE, 10, burst_s=1.0)
    r = client.batch_write_item(RequestItems={HASH_TABLE: [put("M%02d" % i) for i in range(15)]})
    assert len(r["UnprocessedItems"][HASH_TABLE]) == 5  # partial
    big = put("Z", blob={"S": "b" * 100 * 1024})  # 100 WCU > the 10 WCU bucket: throttled until it is full
    assert error_code(client.batch_write_item, RequestItems={HASH_TABLE: [big]}) == (
        "ProvisionedThroughputExceededException"
    )
    emu.set_write_rate(HASH_TABLE, 0)
    client.batch_write_item(RequestItems={HASH_TABLE: [delete("M00"), delete("M01"), delete("absent")]})
    error_code(client.put_item, TableName="Nope", Item={"product_id": {"S": "x"}})
    m = emu.metrics()
    assert m["requests"] == {
        "ok": 2, "partial": 1, "throttled": 1, "5xx": 0, "dropped": 0, "refused": 0, "error": 1,
    }
    assert m["ops"] == {"CreateTable": 1, "BatchWriteItem": 3, "PutItem": 1}
    assert (m["items_written"], m["items_deleted"], m["delete_requests"], m["items_unprocessed"]) == (10, 2, 3, 5)
    assert m["wcu_consumed"] == 13
    series = emu.wcu_series()
    assert series and series[0][0] == 0 and sum(w for _, w in series) == 13
    assert m["tables"][HASH_TABLE]["write_rate"] is None
    json.dumps(m)
    emu.reset()
    m = emu.metrics()
    assert m["items_written"] == 0 and sum(m["requests"].values()) == 0 and m["wcu_per_second"] == []
    assert client.list_tables()["TableNames"] == []


# --------------------------------------------------------------------------
# command line and admin endpoints


def admin(url, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + "/_emulator/" + path, data=data, method="GET" if body is None else "POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def test_cli_serves_and_admin_endpoints_work():
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "idstore_tools.testing.emulator",
            "--port", "0", "--latency-ms", "1", "--write-rate", "0", "--seed", "5",
            "--throttle-fraction", "0", "--unprocessed-fraction", "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        c = make_client(url)
        create_hash_table(c, wcu=5)
        c.batch_write_item(RequestItems={HASH_TABLE: [put("C%02d" % i) for i in range(20)]})
        m = admin(url, "metrics")
        assert m["items_written"] == 20 and m["requests"]["ok"] == 2
        assert m["tables"][HASH_TABLE]["write_rate"] is None  # --write-rate 0 = unlimited
        assert {it["product_id"]["S"] for it in admin(url, "items?table=" + HASH_TABLE)["items"]} == {
            "C%02d" % i for i in range(20)
        }
        f = admin(url, "faults", {"throttle_fraction": 1.0, "throttle_error": "RequestLimitExceeded"})
        assert f["throttle_fraction"] == 1.0
        assert error_code(c.batch_write_item, RequestItems={HASH_TABLE: [put("T")]}) == "RequestLimitExceeded"
        admin(url, "faults", {"throttle_fraction": 0})
        admin(url, "rate", {"table": HASH_TABLE, "wcu": 2, "burst_s": 1})
        r = c.batch_write_item(RequestItems={HASH_TABLE: [put("R%d" % i) for i in range(5)]})
        assert len(r["UnprocessedItems"][HASH_TABLE]) == 3
        admin(url, "down", {"down": True})
        with pytest.raises(BotoCoreError):
            c.list_tables()
        admin(url, "down", {"down": False})
        assert admin(url, "reset", {}) == {"reset": True}
        assert c.list_tables()["TableNames"] == []
        assert admin(url, "metrics")["items_written"] == 0
        with pytest.raises(urllib.error.HTTPError):
            admin(url, "faults", {"throttle_error": "NotAnError"})
    finally:
        proc.terminate()
        rc = proc.wait(10)
    assert rc == 0, proc.stderr.read()
