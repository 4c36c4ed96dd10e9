"""Parallel Scan of the table's keys: one Scan segment per Spark task.

Reads are paced by a token bucket in RCU (a Scan page of up to 1 MB costs 128 RCU at
eventual consistency), so a mirror run does not starve the table's readers.
"""
from typing import Iterator

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession

from idstore.config import DynamoDBConfig
from idstore.dynamodb.rate import TokenBucket
from idstore.dynamodb.retry import full_jitter, retry_reason

KEY_SCHEMA = pa.schema([("key", pa.string())])


def _segment_scanner(cfg: DynamoDBConfig, total_segments: int, read_rate: float):
    def scan(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import time

        from idstore.dynamodb.writer import WriterSettings, dynamodb_client

        client = dynamodb_client(WriterSettings(cfg.table, cfg.key_attribute, cfg.region, cfg.endpoint_url, 0.0))
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
                    bucket.adjust(128.0 - page.get("ConsumedCapacity", {}).get("CapacityUnits", 128.0))
                    keys = [item[cfg.key_attribute]["S"] for item in page.get("Items", [])]
                    if keys:
                        yield pa.RecordBatch.from_pydict({"key": keys}, schema=KEY_SCHEMA)
                    if "LastEvaluatedKey" not in page:
                        break
                    request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    return scan


def scan_keys(spark: SparkSession, cfg: DynamoDBConfig, segments: int = 0, read_rate: float = 0.0) -> DataFrame:
    """Every key in the table as a one-column DataFrame `key`."""
    segments = segments or max(1, spark.sparkContext.defaultParallelism * 2)
    per_task = (read_rate or 1000.0 * segments) / max(1, min(segments, spark.sparkContext.defaultParallelism))
    seeds = spark.range(segments, numPartitions=segments).selectExpr("cast(id as int) as segment")
    return seeds.mapInArrow(_segment_scanner(cfg, segments, per_task), "key string")
