"""First loads by DynamoDB's import from S3, end to end against moto, each checked against a
plain-Python model of the source read back with boto3.

moto runs in this process (the suite's ThreadedMotoServer) so that a test can make its import do
what moto cannot by itself but AWS does: wait while a run is killed, fail the way a refused
bucket fails, or complete with ErrorCount > 0 (moto marks any error FAILED). Only moto's import
worker is changed; idstore talks to it over HTTP as to AWS.
"""
import dataclasses
import json
import threading
import time
import uuid

import pytest

from idstore_tools.local.stack import aws_client, store_source_secret, write_local_config
from idstore_tools.testing.readback import scan_items

from .conftest import kill_job, run_here, run_job, start_job, with_set

pytestmark = pytest.mark.integration

ACCOUNT, TTL_DAYS = "123456789012", 30


@pytest.fixture
def aws(stack, moto_endpoint):
    """The stack's PostgreSQL with this process's moto: the source secret stored there."""
    info = dataclasses.replace(stack, moto_endpoint=moto_endpoint)
    store_source_secret(info)
    return info


@pytest.fixture
def setup(aws, pg, tmp_path):
    """A config for a table that does not exist yet, dynamodb.create = import, and its source."""
    bucket, table, source = f"staging-{uuid.uuid4().hex[:8]}", f"imp-{uuid.uuid4().hex[:8]}", "src_import"
    aws_client("s3", aws.moto_endpoint).create_bucket(Bucket=bucket)
    conf = write_local_config(aws, tmp_path / "job.toml", tmp_path / "data")
    args = with_set(f"dynamodb.table={table}", "dynamodb.create=import", f"dynamodb.import_path=s3://{bucket}/imports",
                    f"source.query=select product_id, title, price, active from {source}",
                    "source.attribute_columns=title,price,active", "dynamodb.ttl_attribute=expires_at",
                    f"dynamodb.ttl_days={TTL_DAYS}", "dynamodb.mode=mirror")
    return dataclasses.make_dataclass("Setup", ["conf", "args", "table", "bucket", "source", "ddb", "s3", "root"])(
        conf, args, table, bucket, source, aws_client("dynamodb", aws.moto_endpoint),
        aws_client("s3", aws.moto_endpoint), tmp_path / "data")


def set_source(pg, name, rows):
    cur = pg.cursor()
    cur.execute(f"drop table if exists {name}")
    cur.execute(f"create table {name} (product_id text, title text, price int, active boolean)")
    cur.executemany(f"insert into {name} values (%s, %s, %s, %s)", rows)


def source_rows(n, prefix="P"):
    return [(f"{prefix}{i:05d}", f"title {i} é", i * 7, i % 3 == 0) for i in range(n)]


def model(rows):
    """What the table must hold, typed as DynamoDB types the source's columns."""
    return {key: {"title": {"S": title}, "price": {"N": str(price)}, "active": {"BOOL": active}}
            for key, title, price, active in rows}


def held(ddb, table):
    items = {item["product_id"]["S"]: item for item in scan_items(ddb, table)}
    return {key: {name: item[name] for name in ("title", "price", "active") if name in item}
            for key, item in items.items()}, items


def staged_objects(s3, bucket):
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def pointer(root):
    path = root / "snapshots" / "_LATEST.json"
    return json.loads(path.read_text()) if path.exists() else None


def ticket_path(root, table):
    return root / "snapshots" / "_locks" / f"{table}.import.json"


def imports_of(table):
    from moto.dynamodb.models import dynamodb_backends

    return [i for i in dynamodb_backends[ACCOUNT]["us-east-1"].table_imports.values() if i.table_name == table]


def test_a_first_load_by_import_then_a_delta_run_writes_only_the_churn(pg, setup):
    rows = source_rows(3000)
    set_source(pg, setup.source, rows)

    code, output, dry = run_job("sync", setup.conf, *setup.args, "--dry-run")
    assert code == 0, output
    plan = dry["details"]["import"]
    assert plan["items"] == 3000 and plan["cost_usd"] > 0 and plan["write_path_cost"]["write_units"] == 3000
    assert "would create it with DynamoDB's import" in plan["plan"]
    assert staged_objects(setup.s3, setup.bucket) == [] and setup.table not in setup.ddb.list_tables()["TableNames"]

    before = time.time()
    settings = with_set("dynamodb.create_point_in_time_recovery=true", "dynamodb.create_deletion_protection=true")
    code, output, first = run_job("sync", setup.conf, *setup.args, *settings)
    after = time.time()
    assert code == 0, output
    done = first["details"]["import"]
    assert (done["imported"], done["errors"], done["missing"], done["resumed"]) == (3000, 0, 0, False)
    assert done["status"] == "COMPLETED" and done["staging_removed"]
    assert "written" not in first["counts"] and "writer" not in first["details"]  # no write unit spent
    assert first["metrics"]["ItemsImported"] == 3000 and first["metrics"]["ImportCostUSD"] == done["cost_usd"]
    assert "import" in output and "ETA" in output  # the progress line

    attributes, items = held(setup.ddb, setup.table)
    assert attributes == model(rows)
    ttl = setup.ddb.describe_time_to_live(TableName=setup.table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")
    backups = setup.ddb.describe_continuous_backups(TableName=setup.table)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    assert setup.ddb.describe_table(TableName=setup.table)["Table"]["DeletionProtectionEnabled"]
    assert done["settings"] == ["ttl=expires_at", "point_in_time_recovery", "deletion_protection"]
    expiries = {int(item["expires_at"]["N"]) for item in items.values()}
    assert len(expiries) == 1 and before + TTL_DAYS * 86400 - 1 <= expiries.pop() <= after + TTL_DAYS * 86400
    assert {item["run_id"]["S"] for item in items.values()} == {first["run_id"]}
    assert staged_objects(setup.s3, setup.bucket) == []
    assert pointer(setup.root)["keys"] == 3000 and not ticket_path(setup.root, setup.table).exists()

    # 1% churn: 10 leave, 10 arrive, 10 change their title
    rows = [(k, t + " v2", p, a) for k, t, p, a in rows[10:20]] + rows[20:] + source_rows(10, prefix="N")
    set_source(pg, setup.source, rows)
    code, output, second = run_job("sync", setup.conf, *setup.args)
    assert code == 0, output
    counts = second["counts"]
    assert second["details"]["strategy"] == "delta" and "import" not in second["details"]
    assert (counts["puts_new"], counts["puts_changed"], counts["deleted"], counts["written"]) == (10, 10, 10, 20)
    assert held(setup.ddb, setup.table)[0] == model(rows)


def test_a_table_that_exists_takes_the_write_path(spark, pg, setup):
    rows = source_rows(200)
    set_source(pg, setup.source, rows)
    setup.ddb.create_table(TableName=setup.table, BillingMode="PAY_PER_REQUEST",
                           KeySchema=[{"AttributeName": "product_id", "KeyType": "HASH"}],
                           AttributeDefinitions=[{"AttributeName": "product_id", "AttributeType": "S"}])
    report = run_here(spark, setup.conf, *setup.args).as_dict()
    assert "exists: the write path" in report["details"]["path"] and "import" not in report["details"]
    assert report["counts"]["written"] == 200 and imports_of(setup.table) == []
    assert held(setup.ddb, setup.table)[0] == model(rows)


def test_a_failed_import_moves_no_pointer_names_the_import_and_the_rerun_converges(spark, pg, setup, monkeypatch):
    from moto.dynamodb.models.table_import import TableImport

    rows = source_rows(500)
    set_source(pg, setup.source, rows)
    original = TableImport._process_s3_files

    def refused(self, s3_backend, bucket):
        original(self, s3_backend, bucket)  # the table is created and partly filled, then the import fails
        self.status, self.failure_code = "FAILED", "S3AccessDenied"
        self.failure_message = "Access Denied: the bucket policy refuses dynamodb.amazonaws.com"

    monkeypatch.setattr(TableImport, "_process_s3_files", refused)
    code, output, report = run_job("sync", setup.conf, *setup.args)
    assert code == 1, output
    arn = imports_of(setup.table)[0].arn
    assert arn in report["error"] and "S3AccessDenied" in report["error"] and "pointer did not move" in report["error"]
    assert "takes the write path" in report["error"]  # what becomes of the table DynamoDB left
    assert pointer(setup.root) is None and not ticket_path(setup.root, setup.table).exists()
    assert staged_objects(setup.s3, setup.bucket)  # kept for a look

    monkeypatch.setattr(TableImport, "_process_s3_files", original)
    again = run_here(spark, setup.conf, *setup.args).as_dict()
    assert "exists: the write path" in again["details"]["path"] and again["counts"]["written"] == 500
    assert held(setup.ddb, setup.table)[0] == model(rows) and pointer(setup.root)["keys"] == 500
    assert len(imports_of(setup.table)) == 1


def test_items_the_import_did_not_take_are_written_by_the_budgeted_writer(pg, setup, monkeypatch):
    from moto.dynamodb.models.table_import import TableImport

    rows = source_rows(600)
    set_source(pg, setup.source, rows)
    original_put = None

    def completes_with_errors(self, s3_backend, bucket):
        """AWS's answer to lines it cannot read: COMPLETED, ErrorCount > 0, the items not in the table."""
        nonlocal original_put
        from moto.dynamodb.models.table import Table

        original_put = Table.put_item

        def put_item(table, item_attrs, *args, **kwargs):
            if item_attrs["product_id"]["S"].endswith("7"):
                raise ValueError("unreadable line")
            return original_put(table, item_attrs, *args, **kwargs)

        monkeypatch.setattr(Table, "put_item", put_item)
        try:
            process(self, s3_backend, bucket)
        finally:
            monkeypatch.setattr(Table, "put_item", original_put)
        self.status = "COMPLETED"

    process = TableImport._process_s3_files
    monkeypatch.setattr(TableImport, "_process_s3_files", completes_with_errors)
    code, output, report = run_job("sync", setup.conf, *setup.args)
    assert code == 0, output
    refused = sorted(k for k, *_ in rows if k.endswith("7"))
    done = report["details"]["import"]
    assert (done["imported"], done["errors"], done["missing"]) == (600 - len(refused), len(refused), len(refused))
    assert done["missing_keys"] == refused[:20]
    assert report["counts"]["puts_new"] == len(refused) and report["counts"]["written"] == len(refused)
    assert held(setup.ddb, setup.table)[0] == model(rows)


def test_a_run_killed_during_the_import_is_resumed_without_a_second_import(pg, setup, monkeypatch, tmp_path):
    from moto.dynamodb.models.table_import import TableImport

    rows = source_rows(1000)
    set_source(pg, setup.source, rows)
    release, original_run = threading.Event(), TableImport.run

    def held_back(self):
        release.wait(120)
        original_run(self)

    monkeypatch.setattr(TableImport, "run", held_back)
    job = start_job("sync", setup.conf, "--run-id", "killed", *setup.args, log_path=tmp_path / "killed.log")
    try:
        ticket = ticket_path(setup.root, setup.table)
        deadline = time.monotonic() + 180
        while not (ticket.exists() and json.loads(ticket.read_text()).get("arn")):
            assert job.poll() is None and time.monotonic() < deadline, (tmp_path / "killed.log").read_text()
            time.sleep(0.2)
        time.sleep(1)  # following it
    finally:
        kill_job(job)
    arn = json.loads(ticket.read_text())["arn"]
    release.set()

    rows = rows[5:] + source_rows(5, prefix="N")  # the source moves on meanwhile
    set_source(pg, setup.source, rows)
    code, output, report = run_job("sync", setup.conf, *setup.args, "--break-lock")
    assert code == 0, output
    done = report["details"]["import"]
    assert done["resumed"] and done["arn"] == arn and done["imported"] == 1000
    assert [i.arn for i in imports_of(setup.table)] == [arn]
    counts = report["counts"]
    assert report["details"]["strategy"] == "delta" and (counts["puts_new"], counts["deleted"]) == (5, 5)
    assert held(setup.ddb, setup.table)[0] == model(rows)
    assert not ticket.exists() and pointer(setup.root)["run_id"] == report["run_id"]
