"""DynamoDB's import from S3 (ImportTable), driver side: the request, following it to its end,
and what an import cannot set, applied after it.

An import always creates a new table; it spends no write capacity and is billed per GB of
uncompressed input. DescribeImport is the only view of it: its counts may stay at zero until it
ends, so the progress line gives the time so far and an ETA only once the counts move.
"""
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping

from idstore import io
from idstore.config import BillingMode, DynamoDBConfig
from idstore.dynamodb.transport import control_client
from idstore.progress import progress_line

log = logging.getLogger(__name__)

IN_PROGRESS, COMPLETED, CANCELLING, CANCELLED, FAILED = "IN_PROGRESS", "COMPLETED", "CANCELLING", "CANCELLED", "FAILED"
POLL_S = (1, 2, 4, 8, 15, 30)  # DescribeImport's pace: quick for a small import, then every 30 s
ACTIVE_WAIT_S = 600  # how long an imported table may take to turn ACTIVE before its settings are applied


def client(cfg: DynamoDBConfig):
    return control_client(cfg.region, cfg.endpoint_url)


@dataclass(frozen=True)
class ImportState:
    """One DescribeImport answer, typed."""

    arn: str
    status: str
    processed_items: int
    imported_items: int
    errors: int
    processed_bytes: int
    failure: str  # "code: message", or "" when none

    @classmethod
    def of(cls, description: Mapping[str, Any]) -> "ImportState":
        failure = ": ".join(str(part) for part in (description.get("FailureCode"), description.get("FailureMessage"))
                            if part)
        return cls(description["ImportArn"], description["ImportStatus"],
                   int(description.get("ProcessedItemCount") or 0), int(description.get("ImportedItemCount") or 0),
                   int(description.get("ErrorCount") or 0), int(description.get("ProcessedSizeBytes") or 0), failure)

    @property
    def ended(self) -> bool:
        return self.status not in (IN_PROGRESS, CANCELLING)


def table_parameters(cfg: DynamoDBConfig) -> Dict[str, Any]:
    """TableCreationParameters: the key schema idstore writes (one string HASH key), billing, encryption."""
    parameters: Dict[str, Any] = {
        "TableName": cfg.table,
        "AttributeDefinitions": [{"AttributeName": cfg.key_attribute, "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": cfg.key_attribute, "KeyType": "HASH"}],
        "BillingMode": str(cfg.create_billing_mode),
    }
    if cfg.create_billing_mode == BillingMode.PROVISIONED:
        parameters["ProvisionedThroughput"] = {"ReadCapacityUnits": cfg.create_read_capacity,
                                               "WriteCapacityUnits": cfg.create_write_capacity}
    if cfg.create_kms_key_id:
        parameters["SSESpecification"] = {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": cfg.create_kms_key_id}
    return parameters


def import_request(cfg: DynamoDBConfig, staged_prefix: str, client_token: str) -> Dict[str, Any]:
    """ImportTable's request for the gzip DynamoDB JSON objects whose keys start with `staged_prefix`."""
    bucket, key_prefix = io.split_s3(staged_prefix)
    return {
        "ClientToken": client_token,  # the same request again within 8 hours is the same import
        "S3BucketSource": {"S3Bucket": bucket, "S3KeyPrefix": key_prefix},
        "InputFormat": "DYNAMODB_JSON",
        "InputCompressionType": "GZIP",
        "TableCreationParameters": table_parameters(cfg),
    }


def start_import(cfg: DynamoDBConfig, request: Mapping[str, Any]) -> ImportState:
    state = ImportState.of(client(cfg).import_table(**request)["ImportTableDescription"])
    log.info("import %s started: %s from s3://%s/%s*", state.arn, cfg.table, request["S3BucketSource"]["S3Bucket"],
             request["S3BucketSource"]["S3KeyPrefix"])
    return state


def follow_import(cfg: DynamoDBConfig, arn: str, items: int, still_ours: Callable[[], None] = lambda: None,
                  sleep: Callable[[float], None] = time.sleep) -> ImportState:
    """DescribeImport until the import ends, logging the writer's progress line; `still_ours`
    is called between polls (the run lock's check: a run that lost its table stops following)."""
    ddb, started, polls = client(cfg), time.monotonic(), 0
    while True:
        state = ImportState.of(ddb.describe_import(ImportArn=arn)["ImportTableDescription"])
        elapsed = time.monotonic() - started
        rate = state.processed_items / elapsed if elapsed > 0 else 0.0
        log.info("%s (%s, %.0f s)", progress_line("import", state.processed_items, items, rate), state.status,
                 elapsed)
        if state.ended:
            return state
        sleep(POLL_S[min(polls, len(POLL_S) - 1)])
        polls += 1
        still_ours()


def wait_active(ddb, table: str, sleep: Callable[[float], None] = time.sleep) -> Dict[str, Any]:
    """The table's description once it is ACTIVE."""
    deadline = time.monotonic() + ACTIVE_WAIT_S
    while True:
        description = ddb.describe_table(TableName=table)["Table"]
        if description["TableStatus"] == "ACTIVE":
            return description
        if time.monotonic() > deadline:
            raise TimeoutError(f"{table} is not ACTIVE {ACTIVE_WAIT_S} s after its import")
        sleep(2)


def apply_settings(cfg: DynamoDBConfig) -> List[str]:
    """What the import's table-creation parameters cannot set, applied once the table is ACTIVE:
    the TTL, point-in-time recovery, deletion protection. A resumed run may find some already
    set, so each is set only when it is not; returns what the table has."""
    ddb, applied = client(cfg), []
    table = wait_active(ddb, cfg.table)
    if cfg.ttl_attribute:
        ttl = ddb.describe_time_to_live(TableName=cfg.table)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            ddb.update_time_to_live(TableName=cfg.table, TimeToLiveSpecification={
                "Enabled": True, "AttributeName": cfg.ttl_attribute})
        applied.append(f"ttl={cfg.ttl_attribute}")
    if cfg.create_point_in_time_recovery:
        ddb.update_continuous_backups(TableName=cfg.table, PointInTimeRecoverySpecification={
            "PointInTimeRecoveryEnabled": True})
        applied.append("point_in_time_recovery")
    if cfg.create_deletion_protection:
        if not table.get("DeletionProtectionEnabled"):
            ddb.update_table(TableName=cfg.table, DeletionProtectionEnabled=True)
        applied.append("deletion_protection")
    return applied
