"""Servers for the writer tests: a moto server and the capacity emulator, both over HTTP."""
import boto3
import pytest

from idstore_tools.testing.emulator import DynamoDBEmulator

TABLE = "IdentifierStore"
KEY = "product_id"


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch):
    # the writer signs its calls with botocore's credential chain; these servers ignore the signature
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def table(moto_endpoint):
    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=moto_endpoint)
    name = "T" + str(abs(hash(moto_endpoint + str(id(client)))))
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
    )
    yield client, name
    client.delete_table(TableName=name)


class RecordingEmulator(DynamoDBEmulator):
    """The emulator, keeping the keys of every BatchWriteItem it was sent (a spy for tests)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batches = []

    def _op_batch_write_item(self, req):
        keys = []
        for requests in (req.get("RequestItems") or {}).values():
            for r in requests:
                body = r.get("PutRequest", {}).get("Item") or r.get("DeleteRequest", {}).get("Key") or {}
                keys.append(body.get(KEY, {}).get("S"))
        self.batches.append(keys)  # called under the emulator's lock
        return super()._op_batch_write_item(req)


def create_table(endpoint_url, name=TABLE):
    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint_url)
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
    )
    return client


@pytest.fixture
def emulator():
    """An in-process emulator (unlimited budget, 5 ms per call, seeded faults) with the table."""
    with RecordingEmulator(write_rate=0, latency_s=0.005, seed=11) as emu:
        create_table(emu.endpoint_url)
        yield emu
