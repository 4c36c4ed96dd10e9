"""The source read through the real Redshift JDBC driver, logged in through pgbouncer to PostgreSQL.

What the Redshift driver does with rows (types, fetch portions, its own log) is checked here
against plain Python over what PostgreSQL returns to pg8000. The stand-in is PostgreSQL, not
Redshift: the SQL runs on PostgreSQL; the driver, its protocol and Spark's handling are real.
"""
import re
import uuid
from collections import Counter
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from idstore.config import load_config
from idstore.dynamodb.items import attribute
from idstore.idset import with_attribute_types
from idstore.source.credentials import resolve_credentials
from idstore.source.jdbc import read_source
from idstore_tools.local.stack import FNV_HASH_SQL, connect_postgres, md5_verifier
from idstore_tools.testing.readback import scan_items

from .conftest import assert_password_nowhere, create_source_table, run_job

TYPED_COLUMNS = {
    "qty": "integer", "big": "bigint", "price": "numeric(12,3)", "ratio": "real", "score": "double precision",
    "active": "boolean", "day": "date", "seen": "timestamp", "seen_tz": "timestamptz", "label": "varchar(40)",
}
TYPED_ROWS = [
    ("t-1", 3, 2**40, Decimal("12.345"), 0.25, 1.5, True, date(2024, 1, 2),
     datetime(2024, 3, 1, 12, 30, 45, 123456), datetime(2024, 3, 1, 23, 59, 59, 500000, tzinfo=timezone.utc),
     "ünïcødé-✓-😀"),
    ("t-2", -7, -1, Decimal("-0.001"), -2.0, 1e-3, False, date(1999, 12, 31),
     datetime(1999, 12, 31, 0, 0), datetime(2000, 6, 15, 8, 0, tzinfo=timezone.utc), "plain"),
    ("t-3", None, None, None, None, None, None, None, None, None, None),
]


def _source(stack, *settings):
    config = load_config(None, [
        f"source.url={stack.jdbc_url}", "source.ssl=false", f"source.secret_id={stack.secret_id}",
        f"aws.endpoint_url={stack.moto_endpoint}", *settings,
    ])
    return config.source, resolve_credentials(config.source, config.aws, {})


def _iso(value, zone):
    """Plain Python's ISO-8601 of a date or timestamp, as docs/sync.md documents the attribute."""
    if isinstance(value, datetime):
        local = value.astimezone(zone) if value.tzinfo else value.replace(tzinfo=zone)
        offset = local.strftime("%z")
        offset = "Z" if offset == "+0000" else f"{offset[:3]}:{offset[3:]}"
        return local.strftime("%Y-%m-%dT%H:%M:%S.%f") + offset
    return value.isoformat()


def _expected_attribute(value, zone):
    """docs/sync.md, Items: strings S, numbers N, booleans BOOL, dates and timestamps ISO strings, NULL left out."""
    if value is None:
        return None
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (date, datetime)):
        return {"S": _iso(value, zone)}
    if isinstance(value, (int, float, Decimal)):
        return ("N", Decimal(str(value)))
    return {"S": value}


def _comparable(value):
    """A number compared by value (1.5 and 1.50 are one N); anything else as is."""
    if value is not None and "N" in value:
        return ("N", Decimal(value["N"]))
    return value


def test_every_column_type_arrives_and_maps_as_documented(spark, stack, pg):
    cur = pg.cursor()
    cur.execute("drop table if exists typed_src")
    cur.execute(f"create table typed_src (product_id text, {', '.join(f'{c} {t}' for c, t in TYPED_COLUMNS.items())})")
    cur.executemany(f"insert into typed_src values ({', '.join(['%s'] * (len(TYPED_COLUMNS) + 1))})", TYPED_ROWS)
    cur.execute("select * from typed_src")
    stored = {row[0]: row[1:] for row in cur.fetchall()}  # what PostgreSQL holds, as pg8000 reads it
    columns = list(TYPED_COLUMNS)
    source, credentials = _source(stack, "source.query=select * from typed_src", "source.partitions=2")

    df = read_source(spark, source, credentials).select("product_id", *columns)
    rows = df.transform(with_attribute_types(columns)).collect()

    zone = ZoneInfo(spark.conf.get("spark.sql.session.timeZone"))
    assert sorted(r.product_id for r in rows) == sorted(stored)
    for row in rows:
        got = {c: _comparable(attribute(row[c])) for c in columns}
        expected = {c: _expected_attribute(v, zone) for c, v in zip(columns, stored[row.product_id])}
        assert got == expected, row.product_id
    # the driver reports TIMESTAMPTZ as a JDBC type Spark 3.5 refuses; idstore's dialect maps it
    assert dict(df.dtypes)["seen_tz"] == "timestamp"


@pytest.fixture(scope="module")
def logged_database(local_stack):
    """(name, log) of a database of its own whose every statement PostgreSQL logs to the stack's postgres.log."""
    info = local_stack.info
    name = f"fetch_probe_{uuid.uuid4().hex[:8]}"  # pgbouncer keeps its server logins: no DROP to reuse a name
    admin = connect_postgres(info)
    admin.autocommit = True
    admin.cursor().execute(f"create database {name}")
    admin.cursor().execute(f"alter database {name} set log_statement = 'all'")
    admin.close()
    conn = connect_postgres(info, database=name)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute(FNV_HASH_SQL)
    cur.execute("create table fetched (product_id text)")
    cur.execute("insert into fetched select 'F' || i from generate_series(1, 10000) as i")
    conn.close()
    return name, Path(local_stack.state.work_dir) / "postgres.log"


def _portions_fetched(log_path: Path, start: int) -> int:
    """Execute messages that continued an open portal: PostgreSQL logs them as `execute fetch from`."""
    with open(log_path, "rb") as log:
        log.seek(start)
        text = log.read().decode(errors="replace")
    return len(re.findall(r"execute fetch from [^:]*: .*\bfetched\b", text))


@pytest.mark.parametrize("ring_buffer", [False, True])
def test_fetchsize_reads_the_partition_in_portions_unless_the_ring_buffer_is_on(spark, stack, logged_database,
                                                                                ring_buffer):
    database, log_path = logged_database
    url = stack.jdbc_url.rsplit("/", 1)[0] + "/" + database
    rows, fetchsize, partitions = 10000, 1000, 2
    source, credentials = _source(
        stack, f"source.url={url}", "source.query=select product_id from fetched",
        f"source.partitions={partitions}", f"source.fetchsize={fetchsize}",
        f"source.fetch_ring_buffer={str(ring_buffer).lower()}",
    )
    start = log_path.stat().st_size
    ids = [r.product_id for r in read_source(spark, source, credentials).collect()]
    assert Counter(ids) == Counter(f"F{i}" for i in range(1, rows + 1))
    fetched = _portions_fetched(log_path, start)
    if ring_buffer:
        # the driver's ring buffer asks for every row in one Execute, whatever fetchsize says
        assert fetched == 0
    else:
        # each partition: its first portion, then one `fetch from` per further portion
        assert fetched >= rows // fetchsize - partitions


def _sync(pg, job_conf, table, name, values, url):
    """A spark-submit sync of `values` (a source table of their own) from `url`; (exit code, output, report)."""
    create_source_table(pg, name, [(v, None, None, None) for v in values])
    return run_job(
        "sync", job_conf, "--set", f"dynamodb.table={table}", "--set", f"source.url={url}",
        "--set", f"source.query=select product_id from {name}",
        "--set", "validation.max_rejected_fraction=0.5",
    )


@pytest.mark.integration
def test_a_sync_through_the_driver_logs_the_driver_and_never_the_password(stack, pg, ddb, new_table, job_conf,
                                                                          tmp_path):
    values = [f"R{i:05d}" for i in range(1500)] + ["ünïcødé-✓-😀", None, "", "R00001"]
    driver_logs = tmp_path / "driver-logs"
    driver_logs.mkdir()
    code, output, report = _sync(pg, job_conf, new_table, "src_driver", values,
                                 f"{stack.jdbc_url}?LogLevel=6&LogPath={driver_logs}")
    assert code == 0, output
    keys = {item["product_id"]["S"] for item in scan_items(ddb, new_table)}
    assert keys == {v for v in values if v}
    assert report["counts"]["source_rows"] == len(values)
    logs = [p for p in driver_logs.rglob("*") if p.is_file()]
    assert logs and sum(p.stat().st_size for p in logs) > 0, "the driver wrote no log: nothing was searched"
    # under tmp_path: the driver's logs, the reports, the quarantine, the snapshot
    for secret in (stack.pg_password, md5_verifier(stack.pg_user, stack.pg_password)):
        assert_password_nowhere(secret, output, tmp_path)


@pytest.mark.integration
def test_a_sync_through_postgresqls_own_driver(stack, pg, ddb, new_table, job_conf):
    values = [f"P{i:05d}" for i in range(800)] + ["日本語", None, " "]
    code, output, report = _sync(pg, job_conf, new_table, "src_pgdriver", values, stack.postgres_jdbc_url)
    assert code == 0, output
    assert {item["product_id"]["S"] for item in scan_items(ddb, new_table)} == {v for v in values if v and v.strip()}
    assert report["config"]["source"]["url"] == stack.postgres_jdbc_url
