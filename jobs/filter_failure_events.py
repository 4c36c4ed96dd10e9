"""spark-submit entry point of the filter job: failure events of the id set, from S3 archives.

    spark-submit --deploy-mode cluster jobs/filter_failure_events.py \
        --config s3://bucket/idstore/conf/prod.toml [--from 2024-05-01 --to 2024-05-07] [--ids snapshot]

Exit code 0 on success, 1 failed, 2 config error.
"""
import sys
from typing import Optional, Sequence

from idstore.pipeline.entry import run_job


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_job("filter", argv)


if __name__ == "__main__":
    sys.exit(main())
