"""Both jobs on s3:// in moto's S3, through S3A and spark-submit, as EMR runs them on EMRFS.

The config (`--conf s3://...`), the events, the filtered output, the quarantine, the snapshots
and `_LATEST.json`, and the reports all live in moto. Each check compares with plain Python
over the same input; moto's request recorder shows what the jobs listed and read.
"""
import gzip
import json
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import tomllib

from idstore_tools.local.stack import (
    aws_client,
    create_bucket,
    download_tree,
    list_keys,
    moto_env,
    write_local_config,
)
from idstore_tools.local_submit import require_jars, spark_submit

pytestmark = pytest.mark.integration

DAYS = ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04", "2024-03-05"]
PROGRAM_IDS = [f"S3P{i:05d}" for i in range(600)]
OTHER_IDS = [f"S3X{i:05d}" for i in range(600)]
MALFORMED = ['{"id": "cut-off", "detail": {"productId": "S3P0', "not json at all"]


def _event(event_id, day, product_id):
    return json.dumps({
        "id": event_id, "time": f"{day}T10:00:00Z", "detail-type": "Failure", "source": "fc",
        "detail": {"productId": product_id, "fcId": "FC1", "stage": "pick", "reason": "r"},
    })


def _day_lines(day, seed, matched_every):
    """400 events: every `matched_every`-th one names a program id (0: none does)."""
    lines = []
    for i in range(400):
        in_set = matched_every and i % matched_every == 0
        pool = PROGRAM_IDS if in_set else OTHER_IDS
        lines.append(_event(f"{day}-{seed}-{i}", day, pool[(i * 7 + seed) % len(pool)]))
    return lines


def _gzip(lines):
    return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)


class World:
    """One bucket holding a config, an archive and everything the jobs write; the plain-Python
    view of the archive beside it."""

    def __init__(self, stack, pg, root):
        self.stack, self.pg, self.root = stack, pg, root
        self.bucket = root[len("s3://"):]
        self.s3 = aws_client("s3", stack.moto_endpoint)
        self.events = {}  # day -> {file name: lines}
        self.table = f"s3ids-{uuid.uuid4().hex[:8]}"

    def put_day(self, day, files):
        for name in list_keys(self.stack, f"{self.root}/data/failure-events/dt={day}"):
            self.s3.delete_object(Bucket=self.bucket, Key=f"data/failure-events/dt={day}/{name}")
        for name, body in files.items():
            self.s3.put_object(Bucket=self.bucket, Key=f"data/failure-events/dt={day}/{name}", Body=body)
        self.events[day] = files

    def expected_event_ids(self, days):
        """Plain Python: the ids of the events of `days` whose product id is in the program."""
        wanted, found = set(PROGRAM_IDS), []
        for day in days:
            for body in self.events[day].values():
                for line in gzip.decompress(body).decode().splitlines():
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(event, dict) and event.get("detail", {}).get("productId") in wanted:
                        found.append(event["id"])
        return sorted(found)

    def output_ids(self, tmp_path, day):
        folder = download_tree(self.stack, f"{self.root}/data/filtered/dt={day}", tmp_path / f"out-{uuid.uuid4().hex}")
        files = sorted(p for p in Path(folder).rglob("*.parquet"))
        return sorted(i for f in files for i in pq.read_table(str(f), columns=["id"]).column("id").to_pylist())

    def output_objects(self, day):
        """{key: etag} of the data files of one day's output."""
        prefix = f"data/filtered/dt={day}/"
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])
        return {o["Key"]: o["ETag"] for o in listed if not o["Key"][len(prefix):].startswith(("_", "."))}

    def run(self, job, *args, sets=()):
        run_id = f"s3-{uuid.uuid4().hex[:8]}"
        overrides = [a for s in sets for a in ("--set", s)]
        result = spark_submit(job, ["--conf", f"{self.root}/conf/job.toml", "--run-id", run_id, *args, *overrides],
                              env=moto_env(self.stack.moto_endpoint))
        return run_id, result.returncode, result.stdout + result.stderr

    def report(self, job, run_id):
        body = self.s3.get_object(Bucket=self.bucket, Key=f"data/reports/{job}/run_id={run_id}.json")["Body"]
        return json.loads(body.read())


@pytest.fixture(scope="module")
def world(stack):
    from idstore_tools.local.stack import connect_postgres

    require_jars("jobs")  # hadoop-aws and the SDK bundle: `make jars`
    root = create_bucket(stack, f"idstore-s3-{uuid.uuid4().hex[:8]}")
    conn = connect_postgres(stack)
    conn.autocommit = True
    w = World(stack, conn, root)
    cur = conn.cursor()
    cur.execute("drop table if exists s3_program")
    cur.execute("create table s3_program (product_id text)")
    cur.executemany("insert into s3_program values (%s)", [(i,) for i in PROGRAM_IDS])
    config = write_local_config(stack, f"{root}/conf/job.toml", f"{root}/data")
    assert config == f"{root}/conf/job.toml"
    text = w.s3.get_object(Bucket=w.bucket, Key="conf/job.toml")["Body"].read().decode()
    # the one endpoint setting: S3A and DynamoDB find moto through aws.endpoint_url alone
    settings = tomllib.loads(text)
    assert settings["aws"]["endpoint_url"] == stack.moto_endpoint and "fs.s3a.endpoint" not in text
    assert stack.moto_endpoint not in json.dumps({k: v for k, v in settings.items() if k != "aws"})
    text = text.replace('"IdentifierStore"', json.dumps(w.table)).replace(
        "from program_products where program = 'FFA'", "from s3_program")
    w.s3.put_object(Bucket=w.bucket, Key="conf/job.toml", Body=text.encode())
    ddb = aws_client("dynamodb", stack.moto_endpoint)
    ddb.create_table(TableName=w.table, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "product_id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "product_id", "AttributeType": "S"}])
    for n, day in enumerate(DAYS):
        files = {"part-00000.json.gz": _gzip(_day_lines(day, n, 5)), "part-00001.json.gz": _gzip(_day_lines(day, n + 10, 3))}
        if day == DAYS[1]:
            files["part-00002.json.gz"] = _gzip(MALFORMED + _day_lines(day, 99, 4)[:20])
        if day == DAYS[4]:
            files["part-00002.json.gz"] = _gzip(_day_lines(day, 98, 2))[:-40]  # cut short: damaged
        w.put_day(day, files)
    yield w
    conn.close()


def _recording(endpoint, action):
    method = "GET" if action == "download-recording" else "POST"
    request = urllib.request.Request(f"{endpoint}/moto-api/recorder/{action}", data=None if method == "GET" else b"",
                                     method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()


def _s3_requests(recording, bucket):
    """(method, key, query) of every recorded request on `bucket` (path-style, as S3A sends them)."""
    found = []
    for line in recording.splitlines():
        entry = json.loads(line)
        parsed = urllib.parse.urlsplit(entry["url"])
        parts = urllib.parse.unquote(parsed.path).lstrip("/").split("/", 1)
        if parts[0] != bucket:
            continue
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        found.append((entry["method"], parts[1] if len(parts) > 1 else "", query))
    return found


def test_sync_from_an_s3_config_writes_the_table_and_moves_the_pointer_only_after_a_complete_run(world):
    from idstore_tools.testing.readback import scan_key_set

    run_id, code, output = world.run("sync")
    assert code == 0, output[-3000:]
    ddb = aws_client("dynamodb", world.stack.moto_endpoint)
    assert scan_key_set(ddb, world.table, "product_id") == set(PROGRAM_IDS)
    report = world.report("sync", run_id)
    assert report["outcome"] == "succeeded"
    # S3 says NoSuchKey where a folder says no such file: both are "no snapshot yet", not an unreadable one
    assert report["details"]["strategy_reason"].startswith("no snapshot yet"), report["details"]["strategy_reason"]
    snapshot_keys = list_keys(world.stack, f"{world.root}/data/snapshots")
    assert any(k.startswith(f"run_id={run_id}/") and k.endswith(".parquet") for k in snapshot_keys), snapshot_keys
    pointer = world.s3.get_object(Bucket=world.bucket, Key="data/snapshots/_LATEST.json")["Body"].read()
    assert run_id in pointer.decode()
    snapshot = download_tree(world.stack, f"{world.root}/data/snapshots/run_id={run_id}", Path(f"/tmp/{run_id}"))
    ids = [i for f in sorted(Path(snapshot).rglob("*.parquet"))
           for i in pq.read_table(str(f), columns=["product_id"]).column("product_id").to_pylist()]
    assert sorted(ids) == sorted(PROGRAM_IDS)

    # a run whose writes cannot succeed (DynamoDB unreachable) fails and leaves the pointer alone
    failed_id, code, output = world.run("sync", sets=[
        "dynamodb.endpoint_url=http://127.0.0.1:9", "dynamodb.no_progress_timeout_s=5", "dynamodb.mode=upsert"])
    assert code == 1, output[-3000:]
    after = world.s3.get_object(Bucket=world.bucket, Key="data/snapshots/_LATEST.json")["Body"].read()
    assert after == pointer
    assert failed_id not in after.decode()


def test_filter_on_s3_lists_only_the_range_overwrites_by_day_and_clears_emptied_days(world, tmp_path):
    endpoint = world.stack.moto_endpoint
    first = DAYS[:3]
    _recording(endpoint, "reset-recording")
    _recording(endpoint, "start-recording")
    try:
        run_id, code, output = world.run("filter", "--from", first[0], "--to", first[-1], "--ids", "source")
    finally:
        _recording(endpoint, "stop-recording")
    recording = _recording(endpoint, "download-recording")
    _recording(endpoint, "reset-recording")
    assert code == 0, output[-3000:]

    # listed: the archive root's folder names, then only the day folders asked for
    events_root = "data/failure-events/"
    requests = _s3_requests(recording, world.bucket)
    lists = [q for m, k, q in requests if m == "GET" and "list-type" in q and q.get("prefix", "").startswith(events_root)]
    listed_days = set()
    for query in lists:
        prefix = query["prefix"]
        if prefix in (events_root, events_root.rstrip("/")):
            assert query.get("delimiter") == "/", query  # folder names only, never the files
            continue
        day = prefix[len(events_root):].split("/", 1)[0]
        assert day.startswith("dt=") and day[3:] in first, query
        listed_days.add(day[3:])
    assert listed_days == set(first)
    read_keys = {k for m, k, q in requests if m == "GET" and k.startswith(events_root) and "list-type" not in q}
    assert read_keys and all(k.split("/")[2][3:] in first for k in read_keys), sorted(read_keys)

    # output: plain Python's events of each day, Parquet by day (SSE-KMS: test_sse_kms_on_s3.py)
    for day in first:
        assert world.output_ids(tmp_path, day) == world.expected_event_ids([day]), day
    for day in DAYS[3:]:
        assert world.output_objects(day) == {}
    report = world.report("filter", run_id)
    assert report["outcome"] == "succeeded"
    quarantined = list_keys(world.stack, f"{world.root}/data/quarantine")
    assert quarantined
    bad = download_tree(world.stack, f"{world.root}/data/quarantine/filter/run_id={run_id}", tmp_path / "quarantine")
    bad_rows = [json.loads(line) for f in sorted(Path(bad).rglob("part-*")) for line in f.read_text().splitlines()]
    assert sorted(r["raw"] for r in bad_rows) == sorted(MALFORMED)
    assert {r["source_file"] for r in bad_rows} == {f"{world.root}/data/failure-events/dt={DAYS[1]}/part-00002.json.gz"}

    # re-run of days 2 and 3: day 2's events changed (replaced), day 3's keep none (cleared),
    # day 1 (not asked for) keeps its files untouched
    day1_before = world.output_objects(first[0])
    world.put_day(first[1], {"part-00000.json.gz": _gzip(_day_lines(first[1], 42, 7))})
    world.put_day(first[2], {"part-00000.json.gz": _gzip(_day_lines(first[2], 43, 0))})
    _, code, output = world.run("filter", "--from", first[1], "--to", first[2], "--ids", "source")
    assert code == 0, output[-3000:]
    assert world.output_objects(first[0]) == day1_before
    assert world.output_ids(tmp_path, first[1]) == world.expected_event_ids([first[1]])
    assert world.expected_event_ids([first[2]]) == []
    assert world.output_objects(first[2]) == {}


def test_a_damaged_gzip_object_on_s3_fails_the_run_naming_it(world):
    day = DAYS[4]
    damaged = f"{world.root}/data/failure-events/dt={day}/part-00002.json.gz"
    with pytest.raises(EOFError):  # the reference: Python's own gzip refuses it too
        gzip.decompress(world.events[day]["part-00002.json.gz"])
    run_id, code, output = world.run("filter", "--from", day, "--to", day, "--ids", "source")
    assert code == 1, output[-3000:]
    assert damaged in output
    report = world.report("filter", run_id)
    assert damaged in json.dumps(report)
    assert Counter(k.endswith(".parquet") for k in list_keys(world.stack, f"{world.root}/data/filtered/dt={day}"))[True] == 0
