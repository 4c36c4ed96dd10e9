"""The import's input and request: lines typed as the writer types a put, and a request botocore's
own model accepts. Each expected item is written out by hand from DynamoDB's JSON format."""
import base64
import json
from decimal import Decimal

import pyarrow as pa
import pytest

from idstore.config import load_config
from idstore.dynamodb import importer
from idstore.dynamodb.staging import staging_encoder
from idstore.pipeline.sync_import import ImportTicket, staging_objects
from idstore.pipeline.sync_result import ImportPlan
from idstore.snapshot import Fingerprint, Pointer

CONSTANTS = {"synced_at": "2026-12-07T10:00:00Z", "run_id": "r1", "expires_at": 1767780000}


def encode(batch):
    [out] = list(staging_encoder("product_id", "pk", CONSTANTS)([batch]))
    return out.to_pylist()


def test_each_line_is_the_item_a_put_would_write_typed_by_hand():
    batch = pa.RecordBatch.from_pydict({
        "product_id": ["A1", "ü-2", "A3"],
        "title": ["Widget", None, "x" * 10],
        "price": pa.array([Decimal("12.50"), Decimal("0"), None], pa.decimal128(10, 2)),
        "count": [3, None, -1],
        "active": [True, False, None],
        "raw": [b"\x00\x01", None, None],
        "score": [float("nan"), 1.5, None],
    })
    rows = encode(batch)
    items = [json.loads(row["line"]) for row in rows]
    stamp = {"synced_at": {"S": "2026-12-07T10:00:00Z"}, "run_id": {"S": "r1"}, "expires_at": {"N": "1767780000"}}
    assert items[0] == {"Item": {"pk": {"S": "A1"}, "title": {"S": "Widget"}, "price": {"N": "12.50"},
                                 "count": {"N": "3"}, "active": {"BOOL": True},
                                 "raw": {"B": base64.b64encode(b"\x00\x01").decode()}, "score": {"S": "nan"},
                                 **stamp}}
    # a null attribute is left out, as a put leaves it out
    assert items[1] == {"Item": {"pk": {"S": "ü-2"}, "price": {"N": "0.00"}, "active": {"BOOL": False},
                                 "score": {"N": "1.5"}, **stamp}}
    assert items[2] == {"Item": {"pk": {"S": "A3"}, "title": {"S": "x" * 10}, "count": {"N": "-1"}, **stamp}}
    assert [row["key"] for row in rows] == ["A1", "ü-2", "A3"]
    # the bytes the import reads: the UTF-8 line and its newline
    assert [row["bytes"] for row in rows] == [len(row["line"].encode()) + 1 for row in rows]
    assert not any(row["too_large"] for row in rows) and {row["write_units"] for row in rows} == {1}


def test_an_item_over_400_kb_is_flagged_as_the_writer_refuses_it_and_units_follow_the_size():
    batch = pa.RecordBatch.from_pydict({"product_id": ["big", "two-kb"], "blob": ["y" * (400 * 1024), "z" * 1500]})
    big, two = encode(batch)
    assert big["too_large"] and not two["too_large"]
    size = len("pk") + len("two-kb") + len("blob") + 1500 + sum(
        len(name) + len(str(value)) for name, value in CONSTANTS.items() if name != "expires_at")
    size += len("expires_at") + (len("1767780000") + 1) // 2 + 1  # a Number: 1 byte per 2 digits, + 1
    assert two["write_units"] == -(-size // 1024) == 2


@pytest.mark.parametrize("items, slots, objects", [
    (0, 2, 2), (1_000, 2, 2), (1_000_000, 2, 2), (10_000_000, 2, 3), (100_000_000, 8, 25),
    (10 ** 12, 8, 50_000),
])
def test_objects_hold_at_most_four_million_items_one_per_slot_at_least_and_50000_at_most(items, slots, objects):
    assert staging_objects(items, slots) == objects


def _config(tmp_path, *overrides):
    path = tmp_path / "c.toml"
    path.write_text("")
    return load_config(str(path), ["dynamodb.table=Ids", "dynamodb.key_attribute=pk", *overrides])


def test_the_import_request_is_one_botocore_accepts(tmp_path, valid_request):
    cfg = _config(tmp_path, "dynamodb.create_billing_mode=PROVISIONED", "dynamodb.create_read_capacity=5",
                  "dynamodb.create_write_capacity=7", "dynamodb.create_kms_key_id=alias/ids").dynamodb
    request = importer.import_request(cfg, "s3://stage/imports/Ids/run_id=r1/part-", "token-1")
    valid_request("dynamodb", "ImportTable", request)
    assert request["S3BucketSource"] == {"S3Bucket": "stage", "S3KeyPrefix": "imports/Ids/run_id=r1/part-"}
    assert (request["InputFormat"], request["InputCompressionType"]) == ("DYNAMODB_JSON", "GZIP")
    table = request["TableCreationParameters"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["ProvisionedThroughput"] == {"ReadCapacityUnits": 5, "WriteCapacityUnits": 7}
    assert table["SSESpecification"] == {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": "alias/ids"}
    on_demand = importer.table_parameters(_config(tmp_path).dynamodb)
    assert on_demand["BillingMode"] == "PAY_PER_REQUEST" and "ProvisionedThroughput" not in on_demand
    assert "SSESpecification" not in on_demand


def test_a_ticket_reads_back_as_it_was_written(tmp_path):
    config = _config(tmp_path)
    plan = ImportPlan.at(config.cost, 10, 2 ** 30, 2, 1, 12)
    pointer = Pointer("r1", "/s/run_id=r1-import", "product_id", "2026-12-07T10:00:00+00:00", 10,
                      Fingerprint.of(config), "2026-12-07T10:00:00+00:00", 0, key_bytes=60, id_type="string")
    ticket = ImportTicket("r1", "tok", "s3://stage/imports/Ids/run_id=r1", plan, pointer, arn="arn:x")
    assert ImportTicket.from_dict(json.loads(json.dumps(ticket.as_dict()))) == ticket
    assert ticket.staged_prefix == "s3://stage/imports/Ids/run_id=r1/part-"
    assert plan.usd == 0.15 and plan.write_path.write_units == 12  # 1 GB at [cost] import_usd_per_gb
