"""spark-submit entry point of the sync job: a program's ProductIds from Redshift into DynamoDB.

    spark-submit --deploy-mode cluster jobs/sync_product_ids.py \
        --config s3://bucket/idstore/conf/prod.toml [--set dynamodb.mode=mirror] [--run-id ID] [--dry-run]

Exit code 0 on success, 1 failed, 2 config error, 3 refused by a safety guard.
"""
import sys
from typing import Optional, Sequence

from idstore.pipeline.entry import run_job


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_job("sync", argv)


if __name__ == "__main__":
    sys.exit(main())
