"""Parallel Scan of the table's keys: one Scan segment per Spark task.

Reads are paced by a token bucket in RCU (a Scan page of up to 1 MB costs 128 RCU at
eventual consistency), so a scan does not starve the table's readers. Every scan is paced
by one rule, `rate.scan_read_rate`, applied here to the table's DescribeTable description.
"""
import logging
from typing import Any, Iterator, Mapping, Optional

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession

from idstore.config import DynamoDBConfig
from idstore.dynamodb.rate import SCAN_RCU_PER_SEGMENT, TokenBucket, scan_read_rate
from idstore.dynamodb.retry import full_jitter, retry_reason

log = logging.getLogger(__name__)

KEY_SCHEMA = pa.schema([("key", pa.string()), ("rcu", pa.float64())])


def _segment_scanner(cfg: DynamoDBConfig, total_segments: int, read_rate: float):
    def scan(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import time

        from idstore.dynamodb.transport import dynamodb_client

        client = dynamodb_client(cfg.region, cfg.endpoint_url)
        bucket = TokenBucket(read_rate, read_rate)
        for batch in batches:
            for segment in batch.column(0).to_pylist():
                request = {
                    "TableName": cfg.table, "Segment": segment, "TotalSegments": total_segments,
                    "ProjectionExpression": "#k", "ExpressionAttributeNames": {"#k": cfg.key_attribute},
                    "ReturnConsumedCapacity": "TOTAL",
                }
                attempt = 0
                while True:
                    bucket.acquire(128.0)
                    try:
                        page = client.scan(**request)
                    except Exception as exc:  # noqa: BLE001 - classified below
                        if retry_reason(exc) is None or attempt >= 12:
                            raise
                        time.sleep(full_jitter(attempt))
                        attempt += 1
                        continue
                    attempt = 0
                    consumed = float(page.get("ConsumedCapacity", {}).get("CapacityUnits", 128.0))
                    bucket.adjust(128.0 - consumed)
                    keys = [item[cfg.key_attribute]["S"] for item in page.get("Items", [])]
                    # the page's read units spread over its keys (a page without keys: one null key),
                    # so a sum over the rows is what the Scan consumed
                    rows = keys or [None]
                    yield pa.RecordBatch.from_pydict(
                        {"key": rows, "rcu": [consumed / len(rows)] * len(rows)}, schema=KEY_SCHEMA)
                    if "LastEvaluatedKey" not in page:
                        break
                    request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    return scan


def scan_keys(spark: SparkSession, cfg: DynamoDBConfig, table: Optional[Mapping[str, Any]] = None,
              segments: int = 0) -> DataFrame:
    """Every key in the table as a one-column DataFrame `key` (see scan_table)."""
    scanned = scan_table(spark, cfg, table, segments)
    return scanned.where(scanned["key"].isNotNull()).select("key")


def scan_table(spark: SparkSession, cfg: DynamoDBConfig, table: Optional[Mapping[str, Any]] = None,
               segments: int = 0) -> DataFrame:
    """Every key in the table, `key`, with the read units its page consumed, `rcu` (a page
    without keys is a row with a null key); paced by `rate.scan_read_rate`, the one rule
    for every scan.

    `table` is the table's DescribeTable description ("Table"); when it is None the table
    is described here.
    """
    segments = segments or max(1, spark.sparkContext.defaultParallelism * 2)
    if table is None:
        from idstore.dynamodb.bulk import describe_table

        table = describe_table(cfg)
    rate = scan_read_rate(cfg, dict(table))
    why = "dynamodb.read_rate" if cfg.read_rate > 0 else (
        f"{cfg.capacity_fraction:g} x the provisioned RCU" if rate else
        f"the default pace, {SCAN_RCU_PER_SEGMENT:g} RCU/s per segment")
    total = rate or SCAN_RCU_PER_SEGMENT * segments
    tasks = max(1, min(segments, spark.sparkContext.defaultParallelism))
    log.info("scanning %s in %d segments at %.0f RCU/s (%s), %.1f RCU/s per task", cfg.table, segments, total,
             why, total / tasks)
    seeds = spark.range(segments, numPartitions=segments).selectExpr("cast(id as int) as segment")
    return seeds.mapInArrow(_segment_scanner(cfg, segments, total / tasks), "key string, rcu double")
