"""`make demo`: the whole flow on this machine, on real components, checked end to end.

Local stack up -> seed 100,000 program ids and 1,000,000 events over 7 days -> sync and
filter through spark-submit as an EMR step runs them -> read back the DynamoDB table and
the Parquet output and compare them with plain Python -> stack down. By default the config,
the events and everything the jobs write live on s3:// in moto (S3A, as EMRFS on EMR);
`--storage local` keeps them in a local folder instead.
"""
import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from idstore_tools.local.stack import (
    LOCAL_BUCKET,
    LocalStack,
    StackInfo,
    aws_client,
    connect_postgres,
    create_bucket,
    create_id_table,
    download_tree,
    moto_env,
    upload_tree,
    write_local_config,
)
from idstore_tools.local_submit import require_jars, spark_submit
from idstore_tools.testing.datagen import read_event_archive, seed_program_products, write_event_archive
from idstore_tools.testing.readback import scan_key_set

log = logging.getLogger("idstore_tools.demo")


def _run_job(info: StackInfo, job: str, conf: str, extra: Sequence[str] = ()) -> float:
    started = time.monotonic()
    result = spark_submit(job, ["--config", conf, *extra], env=moto_env(info.moto_endpoint), capture=False)
    if result.returncode != 0:
        raise SystemExit(f"demo: {job} exited {result.returncode}")
    return time.monotonic() - started


def _filtered_event_ids(path: Path) -> List[str]:
    import pyarrow.parquet as pq

    return pq.read_table(str(path), columns=["id"]).column("id").to_pylist()


def run(ids: int, events: int, days: int, keep: Optional[Path], storage: str = "s3") -> int:
    if storage == "s3":
        require_jars("jobs")  # S3A: hadoop-aws and the AWS SDK bundle (`make jars`)
    work = Path(keep or tempfile.mkdtemp(prefix="idstore-demo-"))
    local_events = work / "failure-events"  # the reference copy plain Python reads
    timings: Dict[str, float] = {}
    with LocalStack() as info:
        os.environ.update(moto_env(info.moto_endpoint))
        if storage == "s3":
            data_root: str = f"{create_bucket(info, LOCAL_BUCKET)}/data"
            conf = str(write_local_config(info, f"s3://{LOCAL_BUCKET}/conf/demo.toml", data_root))
        else:
            data_root = str(work / "data")
            conf = str(write_local_config(info, work / "demo.toml", data_root))
        create_id_table(info)
        started = time.monotonic()
        programs = {"FFA": ids, "SNS": ids // 2, "PRIME": ids // 2}
        conn = connect_postgres(info)
        try:
            seeded = seed_program_products(conn, programs, seed=7)
        finally:
            conn.close()
        others = seeded["SNS"] + seeded["PRIME"]
        write_event_archive(local_events, date(2024, 5, 1), days, events,
                            match_ids=seeded["FFA"], other_ids=others, match_fraction=0.03, seed=7)
        if storage == "s3":
            upload_tree(info, local_events, f"{data_root}/failure-events")
        else:
            shutil.copytree(local_events, Path(data_root) / "failure-events")
        timings["seed"] = time.monotonic() - started
        print(f"demo: config {conf}; events, output, quarantine, snapshots and reports under {data_root}")

        timings["sync"] = _run_job(info, "sync", conf)
        timings["filter"] = _run_job(info, "filter", conf)

        client = aws_client("dynamodb", info.moto_endpoint)
        in_table = scan_key_set(client, "IdentifierStore", "product_id")
        expected_ids = set(seeded["FFA"])
        expected_events = sorted(
            e["id"] for e in read_event_archive(local_events)
            if e["detail"]["productId"] in expected_ids
        )
        if storage == "s3":
            filtered = download_tree(info, f"{data_root}/filtered", work / "filtered-from-s3")
        else:
            filtered = Path(data_root) / "filtered"
        got_events = sorted(_filtered_event_ids(filtered))
    ok_table = in_table == expected_ids
    ok_events = got_events == expected_events
    print(f"\ndemo: table holds {len(in_table):,} ids; program FFA has {len(expected_ids):,}: "
          f"{'EXACT MATCH' if ok_table else 'MISMATCH'} "
          f"(missing {len(expected_ids - in_table)}, extra {len(in_table - expected_ids)})")
    print(f"demo: filter kept {len(got_events):,} events; plain Python finds {len(expected_events):,}: "
          f"{'EXACT MATCH' if ok_events else 'MISMATCH'}")
    print("demo: seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print(f"demo: files under {work}")
    return 0 if ok_table and ok_events else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="idstore-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=100_000, help="program ids to seed (default 100,000)")
    parser.add_argument("--events", type=int, default=1_000_000, help="events to generate (default 1,000,000)")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a new temp folder)")
    parser.add_argument("--storage", choices=("s3", "local"), default="s3",
                        help="s3 (default): config, events and output on s3:// in moto; local: a local folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args.ids, args.events, args.days, args.keep, args.storage)


if __name__ == "__main__":
    sys.exit(main())
