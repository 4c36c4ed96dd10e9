"""The partition writer against a moto server: what goes in is what the table holds."""
import pytest

from idstore.dynamodb.rate import choose_write_rate, per_task_rate
from idstore.dynamodb.writer import PartitionWriter, WriteFailed, WriterSettings
from idstore_tools.testing.readback import scan_items as scan_all


def _writer(endpoint, table, **kw):
    settings = WriterSettings(table=table, key_attribute="product_id", region="us-east-1",
                              endpoint_url=endpoint, task_rate=100000.0, in_flight=4, **kw)
    return PartitionWriter(settings)


def test_every_distinct_id_is_written_once_and_duplicates_are_counted(moto_endpoint, table):
    client, name = table
    ids = [f"B{i:09d}" for i in range(130)] + ["B000000003", "B000000100"]
    stats = _writer(moto_endpoint, name).run((i, {"run_id": "r1"}) for i in ids)
    stored = {item["product_id"]["S"]: item for item in scan_all(client, name)}
    assert set(stored) == set(ids)
    assert stored["B000000001"]["run_id"] == {"S": "r1"}
    assert (stats.items_in, stats.put, stats.deleted, stats.duplicates) == (132, 130, 0, 2)
    assert stats.written == 130
    assert stats.requests == 6  # ceil(130 / 25): batches are filled, never over 25


def test_oversize_keys_and_items_are_rejected_before_sending_and_counted(moto_endpoint, table):
    client, name = table
    rows = [
        ("ok-1", {}),
        ("k" * 2049, {}),
        ("é" * 1025, {}),  # 1025 characters, 2050 bytes in UTF-8
        ("big", {"blob": "x" * (400 * 1024)}),
        ("", {}),
        (None, {}),
        ("ok-2", {"small": 1, "flag": True, "missing": None, "raw": b"\x00\x01"}),
    ]
    stats = _writer(moto_endpoint, name).run(rows)
    stored = {item["product_id"]["S"]: item for item in scan_all(client, name)}
    assert set(stored) == {"ok-1", "ok-2"}
    assert stored["ok-2"]["small"] == {"N": "1"} and stored["ok-2"]["flag"] == {"BOOL": True}
    assert stored["ok-2"]["raw"] == {"B": b"\x00\x01"}
    assert "missing" not in stored["ok-2"]
    by_reason = (stats.rejected_key_too_long, stats.rejected_item_too_large, stats.rejected_key_missing)
    assert by_reason == (2, 1, 2)
    assert stats.rejected == 5 and stats.written == 2 and stats.items_in == 7


def test_deletes_remove_exactly_the_given_keys(moto_endpoint, table):
    client, name = table
    _writer(moto_endpoint, name).run((f"id{i}", {}) for i in range(60))
    stats = _writer(moto_endpoint, name, action="delete").run((f"id{i}", {}) for i in range(0, 60, 2))
    remaining = {item["product_id"]["S"] for item in scan_all(client, name)}
    assert remaining == {f"id{i}" for i in range(1, 60, 2)}
    assert (stats.deleted, stats.put, stats.written) == (30, 0, 30)


def test_a_fatal_error_fails_the_partition_and_names_it(moto_endpoint, table):
    _, name = table
    with pytest.raises(WriteFailed, match="ResourceNotFoundException") as failure:
        _writer(moto_endpoint, name + "-missing").run([("a", {})])
    assert "will not heal" in str(failure.value) and "[a]" in str(failure.value)


@pytest.mark.parametrize("table_desc, rate, fraction, expected", [
    ({"BillingModeSummary": {"BillingMode": "PROVISIONED"},
      "ProvisionedThroughput": {"WriteCapacityUnits": 1000}}, 0, 0.5, 500),
    ({"ProvisionedThroughput": {"WriteCapacityUnits": 1000},
      "GlobalSecondaryIndexes": [{"ProvisionedThroughput": {"WriteCapacityUnits": 200}}]}, 0, 0.5, 100),
    ({"BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"}}, 0, 0.5, 2000),
    ({"BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"},
      "WarmThroughput": {"WriteUnitsPerSecond": 12000}}, 0, 0.5, 6000),
    ({"BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"}, "WarmThroughput": {"WriteUnitsPerSecond": 12000},
      "OnDemandThroughput": {"MaxWriteRequestUnits": 3000}}, 0, 1.0, 3000),
    ({"BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"}}, 750, 0.5, 750),
])
def test_write_rate_choice(table_desc, rate, fraction, expected):
    chosen, why = choose_write_rate(table_desc, rate, fraction)
    assert chosen == expected and why


def test_budget_is_split_over_the_tasks_that_run_at_once():
    assert per_task_rate(1000, partitions=40, concurrent_slots=4) == 250  # partitions outnumber cores
    assert per_task_rate(1000, partitions=2, concurrent_slots=8) == 500  # fewer partitions than cores
