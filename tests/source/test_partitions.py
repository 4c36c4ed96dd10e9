"""Hash-predicate partitions against a real PostgreSQL: every row of the query exactly once.

Spark reads through both drivers: the Redshift driver via pgbouncer (the stack's jdbc_url, the
FNV_HASH predicates, idstore's dialect) and PostgreSQL's own. The reference is the database
itself, asked plainly (no predicates) over pg8000.
"""
from collections import Counter

import pytest
from pyspark.sql import functions as F

from idstore.config import load_config
from idstore.source.credentials import resolve_credentials
from idstore.source.jdbc import hash_predicates, read_source

ODD_IDS = [None, None, None, "", " ", "  ", "é", "日本語", "😀", "x" * 3000, "B000001", "B000001", "-1", "0"]


@pytest.fixture(scope="module")
def source_table(stack):
    from idstore_tools.local.stack import connect_postgres

    conn = connect_postgres(stack)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("drop table if exists part_src")
    cur.execute("create table part_src (product_id text, n int)")
    cur.execute("insert into part_src select 'B' || lpad(i::text, 6, '0'), i from generate_series(1, 5000) as i")
    cur.executemany("insert into part_src values (%s, -1)", [(v,) for v in ODD_IDS])
    conn.close()
    return "part_src"


def plain_rows(pg, query):
    cur = pg.cursor()
    cur.execute(query)
    return [row[0] for row in cur.fetchall()]


QUERIES = [
    "select product_id from part_src",
    "select product_id from part_src where n % 3 <> 1 or n < 0;",
]


@pytest.mark.parametrize("partitions", [1, 2, 3, 8, 13])
@pytest.mark.parametrize("query", QUERIES)
def test_every_row_matches_exactly_one_predicate_in_sql(stack, pg, source_table, query, partitions):
    predicates = hash_predicates(stack.postgres_jdbc_url, "product_id", partitions)
    assert all("hashtext" in p for p in predicates[1:])
    derived = f"({query.rstrip(';')}) as s"
    matches = " + ".join(f"(case when {p} then 1 else 0 end)" for p in predicates)
    assert plain_rows(pg, f"select count(*) from {derived} where {matches} <> 1") == [0]
    total = plain_rows(pg, f"select count(*) from {derived}")[0]
    per_predicate = [plain_rows(pg, f"select count(*) from {derived} where {p}")[0] for p in predicates]
    assert sum(per_predicate) == total
    assert total == len(plain_rows(pg, query.rstrip(";")))


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("driver", ["redshift", "postgresql"])
def test_the_spark_read_is_the_plain_query_row_for_row(spark, stack, pg, source_table, query, driver):
    url = stack.jdbc_url if driver == "redshift" else stack.postgres_jdbc_url
    assert url.startswith(f"jdbc:{driver}://")
    config = load_config(None, [
        f"source.url={url}", f"source.query={query}", "source.partitions=5", "source.ssl=false",
        f"source.secret_id={stack.secret_id}", f"aws.endpoint_url={stack.moto_endpoint}",
        "source.fetchsize=500",
    ])
    credentials = resolve_credentials(config.source, config.aws, {})  # from moto's Secrets Manager
    df = read_source(spark, config.source, credentials)
    assert df.rdd.getNumPartitions() == 5
    rows = df.select("product_id", F.spark_partition_id().alias("p")).collect()
    assert Counter(r.product_id for r in rows) == Counter(plain_rows(pg, query.rstrip(";")))
    # partition i holds exactly what predicate i selects
    derived = f"({query.rstrip(';')}) as s"
    per_partition = Counter(r.p for r in rows)
    for i, predicate in enumerate(hash_predicates(url, "product_id", 5)):
        assert per_partition.get(i, 0) == plain_rows(pg, f"select count(*) from {derived} where {predicate}")[0]
    assert all(per_partition.get(i, 0) > 0 for i in range(5))  # the hash spreads the ids
    assert sum(r.product_id is None for r in rows) == 3


REDSHIFT_URL = "jdbc:redshift://redshift.example:5439/dev"


def _fnv1a_64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h - (1 << 64) if h >= 1 << 63 else h


@pytest.mark.parametrize("partitions", [2, 3, 8, 13])
@pytest.mark.parametrize("query", QUERIES)
def test_redshift_predicates_run_on_the_stand_in_and_cover_every_row_once(stack, pg, source_table, query, partitions):
    """The Redshift dialect's FNV_HASH predicates, run for real on the stand-in's fnv_hash."""
    predicates = hash_predicates(REDSHIFT_URL, "product_id", partitions)
    assert all("FNV_HASH" in p for p in predicates)
    derived = f"({query.rstrip(';')}) as s"
    cur = pg.cursor()
    matches = ", ".join(f"(case when {p} then 1 else 0 end)" for p in predicates)
    cur.execute(f"select product_id, {matches} from {derived}")
    rows = cur.fetchall()
    assert len(rows) == len(plain_rows(pg, query.rstrip(";")))
    for product_id, *hits in rows:
        assert sum(hits) == 1, (product_id, hits)
        # plain Python: |FNV-1a(id)| mod n (SQL's remainder truncates: ABS(h % n) = |h| mod n), NULL in 0
        expected = 0 if product_id is None else abs(_fnv1a_64(product_id.encode("utf-8"))) % partitions
        assert hits.index(1) == expected, product_id
    assert sum(1 for r in rows if r[0] is None) == 3
    per_partition = Counter(hits.index(1) for _, *hits in rows)
    assert len(per_partition) == partitions  # the hash spreads the ids over every partition
