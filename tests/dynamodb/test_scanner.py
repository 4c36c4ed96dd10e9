"""The parallel Scan of the table's keys, and the one rule that paces every scan."""
import dataclasses
import logging

import boto3
import pytest

from idstore.config import load_config
from idstore.dynamodb import bulk as ddb
from idstore.dynamodb.rate import scan_read_rate
from idstore.dynamodb.scanner import scan_keys, scan_table
from idstore_tools.testing.emulator import DynamoDBEmulator

from .conftest import KEY, TABLE


def _cfg(endpoint="", **kw):
    values = dict(table=TABLE, key_attribute=KEY, region="us-east-1", endpoint_url=endpoint, read_rate=0.0,
                  capacity_fraction=0.5)
    values.update(kw)
    return dataclasses.replace(load_config().dynamodb, **values)


PROVISIONED = {"BillingModeSummary": {"BillingMode": "PROVISIONED"},
               "ProvisionedThroughput": {"ReadCapacityUnits": 200, "WriteCapacityUnits": 5}}


@pytest.mark.parametrize("table, read_rate, expected", [
    (PROVISIONED, 0.0, 100.0),  # capacity_fraction x the provisioned RCU
    ({"ProvisionedThroughput": {"ReadCapacityUnits": 200}}, 0.0, 100.0),  # no billing summary: provisioned
    ({"BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"}}, 0.0, 0.0),  # the scanner's default pace
    ({}, 0.0, 0.0),
    (PROVISIONED, 42.0, 42.0),  # dynamodb.read_rate wins
])
def test_one_rule_for_every_scan(table, read_rate, expected):
    assert scan_read_rate(_cfg(read_rate=read_rate), table) == expected


def _messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "idstore.dynamodb.scanner"]


def test_scan_keys_reads_every_key_paced_by_the_rule_for_every_caller(spark, caplog):
    with DynamoDBEmulator(write_rate=0) as emu:
        cfg = _cfg(emu.endpoint_url)
        client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=emu.endpoint_url)
        client.create_table(
            TableName=TABLE, BillingMode="PROVISIONED",
            ProvisionedThroughput={"ReadCapacityUnits": 4000, "WriteCapacityUnits": 1000},
            KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
        )
        keys = {f"K{i:04d}" for i in range(310)}
        ordered = sorted(keys)
        for start in range(0, len(ordered), 25):
            client.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": {KEY: {"S": k}}}}
                                                          for k in ordered[start:start + 25]]})
        described = ddb.describe_table(cfg)
        with caplog.at_level(logging.INFO, logger="idstore.dynamodb.scanner"):
            given = {row.key for row in scan_keys(spark, cfg, described, segments=4).collect()}
            assert any("at 2000 RCU/s (0.5 x the provisioned RCU)" in m for m in _messages(caplog))
            caplog.clear()
            # without the description, the scanner describes the table itself: the same rule
            described_here = {row.key for row in scan_keys(spark, cfg, segments=3).collect()}
            assert any("at 2000 RCU/s (0.5 x the provisioned RCU)" in m for m in _messages(caplog))
            caplog.clear()
            explicit = dataclasses.replace(cfg, read_rate=1200.0)
            configured = {row.key for row in scan_keys(spark, explicit, described).collect()}
            assert any("at 1200 RCU/s (dynamodb.read_rate)" in m for m in _messages(caplog))
            caplog.clear()
            scanned = scan_table(spark, cfg, described, segments=2).collect()  # the mirror's scan: the same rule
            assert any("at 2000 RCU/s (0.5 x the provisioned RCU)" in m for m in _messages(caplog))
    assert given == described_here == configured == keys
    assert {row.key for row in scanned if row.key is not None} == keys
    assert sum(row.rcu for row in scanned) > 0  # the read units the pages consumed, spread over their keys
