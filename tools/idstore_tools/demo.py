"""`make demo`: the whole flow on this machine, on real components, checked end to end.

Local stack up -> seed 100,000 program ids and 1,000,000 events over 7 days -> a first (full)
sync through spark-submit as an EMR step runs it -> change 1% of the program in PostgreSQL ->
a second sync, a delta run that writes only what changed -> filter -> read back the DynamoDB
table after each sync and the Parquet output, compare them with plain Python, print the two
syncs side by side -> stack down. By default the config, the events and everything the jobs
write live on s3:// in moto (S3A, as EMRFS on EMR); `--storage local` keeps them in a local folder.
"""
import argparse
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from idstore import io
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

PROGRAM = "FFA"  # the program the demo's config syncs
JOINERS_FROM = "SNS"  # the second sync's new ids come from here: products that have failure events too
CHURN = 0.005  # of the program's ids leave it and as many join: 1% of the program changes
# mirror: ids that leave the program leave the table too, so the delta run has deletes to show
SYNC_FLAGS = ("--set", "dynamodb.mode=mirror")


@dataclass(frozen=True)
class SyncRun:
    """One sync as the demo saw it: its run report and the spark-submit's wall time."""

    report: Dict[str, Any]
    seconds: float

    @property
    def counts(self) -> Dict[str, Any]:
        return self.report["counts"]

    @property
    def details(self) -> Dict[str, Any]:
        return self.report["details"]

    @property
    def write_seconds(self) -> float:
        durations = self.report["durations_s"]
        return durations.get("write", 0.0) + durations.get("delete", 0.0)


def _run_job(info: StackInfo, job: str, conf: str, extra: Sequence[str] = ()) -> float:
    started = time.monotonic()
    result = spark_submit(job, ["--config", conf, *extra], env=moto_env(info.moto_endpoint), capture=False)
    if result.returncode != 0:
        raise SystemExit(f"demo: {job} exited {result.returncode}")
    return time.monotonic() - started


def _sync(info: StackInfo, conf: str, data_root: str, run_id: str) -> SyncRun:
    seconds = _run_job(info, "sync", conf, ["--run-id", run_id, *SYNC_FLAGS])
    report_path = io.join(data_root, "reports", "sync", f"run_id={run_id}.json")
    return SyncRun(io.read_json(report_path, info.moto_endpoint, info.region), seconds)


def _program_ids(info: StackInfo, program: str) -> Set[str]:
    """The program's ids as PostgreSQL holds them now: what the table must hold after a sync.

    The seed writes only ids that validation keeps, so no validation is needed on this side.
    """
    conn = connect_postgres(info)
    try:
        cursor = conn.cursor()
        cursor.execute("select product_id from program_products where program = %s", (program,))
        return {row[0] for row in cursor.fetchall()}
    finally:
        conn.close()


def _change_program(info: StackInfo, leavers_from: Sequence[str], joiners_from: Sequence[str],
                    seed: int) -> Tuple[int, int]:
    """CHURN of the program's ids leave it, as many of JOINERS_FROM's join it; (left, joined)."""
    rng = random.Random(f"idstore-demo-churn:{seed}")
    count = round(len(leavers_from) * CHURN)
    leaving, joining = rng.sample(list(leavers_from), count), rng.sample(list(joiners_from), count)
    conn = connect_postgres(info)
    try:
        cursor = conn.cursor()
        cursor.execute("delete from program_products where program = %s and product_id = any(%s)",
                       (PROGRAM, leaving))
        left = cursor.rowcount
        cursor.execute(
            "insert into program_products (program, product_id, title, price, active) "
            "select %s, product_id, title, price, active from program_products "
            "where program = %s and product_id = any(%s)",
            (PROGRAM, JOINERS_FROM, joining),
        )
        joined = cursor.rowcount
        conn.commit()
    finally:
        conn.close()
    if (left, joined) != (count, count):
        raise SystemExit(f"demo: changing the program removed {left} and added {joined} ids, not {count} each")
    return left, joined


def _table_check(info: StackInfo, label: str) -> Tuple[bool, str]:
    """The table's keys (a plain boto3 Scan) against the program's ids in PostgreSQL; printed too."""
    print(f"demo: {label}: reading the table back with a plain boto3 Scan (slow on moto: 30-45 s per 100,000 ids) ...",
          flush=True)
    expected = _program_ids(info, PROGRAM)
    in_table = scan_key_set(aws_client("dynamodb", info.moto_endpoint), "IdentifierStore", "product_id")
    ok = in_table == expected
    line = (f"demo: {label}: table holds {len(in_table):,} ids; program {PROGRAM} has {len(expected):,} "
            f"in PostgreSQL: {'EXACT MATCH' if ok else 'MISMATCH'} "
            f"(missing {len(expected - in_table)}, extra {len(in_table - expected)})")
    print(line, flush=True)
    return ok, line


def _usd(value: float) -> str:
    return f"${value:.6f}"


def _comparison(full: SyncRun, dlt: SyncRun, left: int, joined: int) -> List[str]:
    """The two syncs side by side, and what the delta run saved against a full run now."""
    prices = full.report["config"]["cost"]
    rows = [
        ("strategy", full.details["strategy"], dlt.details["strategy"]),
        ("puts", f"{full.counts['written']:,}", f"{dlt.counts['written']:,}"),
        ("deletes", f"{full.counts.get('deleted', 0):,}", f"{dlt.counts.get('deleted', 0):,}"),
        ("unchanged (not written)", f"{full.counts['unchanged']:,}", f"{dlt.counts['unchanged']:,}"),
        ("write units consumed", f"{full.details['consumed_wcu']:,.0f}", f"{dlt.details['consumed_wcu']:,.0f}"),
        ("read units consumed", f"{full.details['consumed_rcu']:,.0f}", f"{dlt.details['consumed_rcu']:,.0f}"),
        ("cost", _usd(full.details["cost_usd"]), _usd(dlt.details["cost_usd"])),
        ("seconds writing", f"{full.write_seconds:.1f}", f"{dlt.write_seconds:.1f}"),
        ("seconds, whole spark-submit", f"{full.seconds:.1f}", f"{dlt.seconds:.1f}"),
    ]
    lines = [
        f"demo: the two syncs ({left:,} ids left program {PROGRAM} and {joined:,} joined it between them; "
        f"${prices['write_unit_usd_per_million']:g} per million write units, "
        f"${prices['read_unit_usd_per_million']:g} per million read units)",
        f"  {'':<28}{'full run':>14}{'delta run':>14}",
    ]
    lines += [f"  {name:<28}{a:>14}{b:>14}" for name, a, b in rows]
    would = dlt.details["cost"]["full_run"]
    spent = dlt.details["cost_usd"]
    share = f"{spent / would['usd']:.1%} of it" if would["usd"] else "n/a"
    lines.append(f"demo: a full run instead of the delta run would have cost {_usd(would['usd'])} "
                 f"({would['write_units']:,.0f} write units + {would['read_units']:,.0f} read units); "
                 f"the delta run cost {_usd(spent)}, {share}")
    return lines


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
            conf = str(write_local_config(info, f"s3://{LOCAL_BUCKET}/conf/demo.toml", data_root, PROGRAM))
        else:
            data_root = str(work / "data")
            conf = str(write_local_config(info, work / "demo.toml", data_root, PROGRAM))
        create_id_table(info)
        started = time.monotonic()
        programs = {PROGRAM: ids, JOINERS_FROM: ids // 2, "PRIME": ids // 2}
        conn = connect_postgres(info)
        try:
            seeded = seed_program_products(conn, programs, seed=7)
        finally:
            conn.close()
        others = seeded[JOINERS_FROM] + seeded["PRIME"]
        write_event_archive(local_events, date(2024, 5, 1), days, events,
                            match_ids=seeded[PROGRAM], other_ids=others, match_fraction=0.03, seed=7)
        if storage == "s3":
            upload_tree(info, local_events, f"{data_root}/failure-events")
        else:
            shutil.copytree(local_events, Path(data_root) / "failure-events")
        timings["seed"] = time.monotonic() - started
        print(f"demo: config {conf}; events, output, quarantine, snapshots and reports under {data_root}",
              flush=True)
        checks: List[Tuple[bool, str]] = []

        print("\ndemo: sync 1 of 2, the first run: no record yet, so a full run", flush=True)
        full = _sync(info, conf, data_root, "demo-sync-1")
        timings["full sync"] = full.seconds
        started = time.monotonic()
        checks.append(_table_check(info, "after the full run"))
        timings["table checks"] = time.monotonic() - started

        started = time.monotonic()
        left, joined = _change_program(info, seeded[PROGRAM], seeded[JOINERS_FROM], seed=7)
        timings["change 1%"] = time.monotonic() - started
        print(f"\ndemo: changed 1% of program {PROGRAM} in PostgreSQL: {left:,} ids left it, {joined:,} "
              f"{JOINERS_FROM} ids joined it", flush=True)
        print("demo: sync 2 of 2: a delta run against the first run's record", flush=True)
        dlt = _sync(info, conf, data_root, "demo-sync-2")
        timings["delta sync"] = dlt.seconds
        if dlt.details["strategy"] != "delta":
            raise SystemExit(f"demo: the second sync was a {dlt.details['strategy']} run, not a delta run: "
                             f"{dlt.details['strategy_reason']}")
        started = time.monotonic()
        checks.append(_table_check(info, "after the delta run"))
        timings["table checks"] += time.monotonic() - started

        # The filter reads the latest record: the second sync's, the program as it is now.
        print(f"\ndemo: filter: the events of program {PROGRAM}'s ids as the delta run left them", flush=True)
        timings["filter"] = _run_job(info, "filter", conf)
        expected_ids = _program_ids(info, PROGRAM)
        expected_events = sorted(
            e["id"] for e in read_event_archive(local_events)
            if e["detail"]["productId"] in expected_ids
        )
        if storage == "s3":
            filtered = download_tree(info, f"{data_root}/filtered", work / "filtered-from-s3")
        else:
            filtered = Path(data_root) / "filtered"
        got_events = sorted(_filtered_event_ids(filtered))
    ok_events = got_events == expected_events
    print()
    print("\n".join(_comparison(full, dlt, left, joined)))
    print()
    for _, line in checks:
        print(line)
    print(f"demo: filter kept {len(got_events):,} events; plain Python finds {len(expected_events):,}: "
          f"{'EXACT MATCH' if ok_events else 'MISMATCH'}")
    print("demo: seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print(f"demo: files under {work}")
    return 0 if all(ok for ok, _ in checks) and ok_events else 1


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
