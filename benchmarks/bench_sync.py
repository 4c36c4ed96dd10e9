"""Benchmark of delta runs: a full mirror run against a delta run after 1% churn, side by side.

    make bench-sync                                        # 1,000,000 ids at 10,000 WCU/s
    .venv/bin/python benchmarks/bench_sync.py --ids 100000  # a quick run

The source is a PostgreSQL table (the local stack: PostgreSQL holds it, moto the secret and the
lock) of product_id text, title text, price int, generated with generate_series. DynamoDB is the
capacity emulator as its own process, every table at a budget of --rate WCU/s (1 s burst) and
--latency-ms per call; the jobs run through spark-submit (local[2]) with dynamodb.write_rate
equal to that budget, in mirror mode, writing title and price as attributes.

  run 1            table A and table B, each brought to the same state by its own first (full) run
  churn            0.4% of the ids leave, 0.4% new ids arrive, 0.2% change their title
  run 2, full      table A with --full: every id put again, the table scanned for what left
  run 2, delta     table B as a delta run: only what changed is written, what left is deleted

and a first load both ways, on the same set before the churn:

  run 1 (full)     table A above: the write path, every id put at the emulator's budget
  run 1 (import)   table C, which does not exist: dynamodb.create = import, in moto (DynamoDB and
                   S3 both), staged as gzip DynamoDB JSON, imported, read back and compared

Measured from the run reports (consumed units, phases) and from the emulator (its own count of
write units consumed, items written and deleted, Scan calls, the per-second series), and by the
clock around each spark-submit. Both tables are read back at the end and compared with the
churned source in plain Python. A benchmark, not a test: it prints and saves, asserts nothing.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import bench_write as bw  # beside this file: the capacity emulator's process

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench-results"
SOURCE_TABLE = "bench_sync_source"
TABLES = {"A": "BenchSyncFull", "B": "BenchSyncDelta"}
IMPORTED = "BenchSyncImported"  # created by the import run, in moto
STAGING_BUCKET = "bench-sync-staging"
GB = 2 ** 30
KEY = "product_id"
REGION = "us-east-1"
LEAVE, ARRIVE, CHANGE = 0.004, 0.004, 0.002  # shares of the set: 1% churn in all
LEAVE_EVERY, CHANGE_EVERY = 250, 500  # i % 250 == 0 leave (0.4%), i % 500 == 1 change (0.2%)
RUNS_PER_MONTH = 30  # nightly
VERIFY_EVERY = 7  # conf/base.toml dynamodb.verify_every_runs: every 7th run is a full run
READ_OPS = ("Scan", "GetItem", "BatchGetItem", "Query")


# ---------------------------------------------------------------- the emulator, over HTTP

class Emulator(bw.Emulator):
    """bench_write's emulator process, with the tables and reads this benchmark needs."""

    def create_table(self, name: str) -> None:
        import boto3

        boto3.client("dynamodb", region_name=REGION, endpoint_url=self.url).create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
        )

    def items(self, table: str) -> List[Dict[str, Any]]:
        return self.admin(f"items?table={table}")["items"]


def emulator_delta(before: Dict[str, Any], after: Dict[str, Any]) -> Dict[str, Any]:
    """What the emulator counted between two metric snapshots (its counters are global)."""
    ops = {op: after["ops"].get(op, 0) - before["ops"].get(op, 0) for op in after["ops"]}
    start = int(before["uptime_s"])
    series = [wcu for second, wcu in after["wcu_per_second"] if second >= start]
    busy = [i for i, wcu in enumerate(series) if wcu > 0]
    series = series[busy[0]:busy[-1] + 1] if busy else []
    return {
        "wcu": round(after["wcu_consumed"] - before["wcu_consumed"], 1),
        "items_written": after["items_written"] - before["items_written"],
        "items_deleted": after["items_deleted"] - before["items_deleted"],
        "delete_requests": after["delete_requests"] - before["delete_requests"],
        "throttled_calls": after["requests"]["throttled"] - before["requests"]["throttled"],
        "items_unprocessed": after["items_unprocessed"] - before["items_unprocessed"],
        "read_calls": {op: ops.get(op, 0) for op in READ_OPS},
        "write_calls": ops.get("BatchWriteItem", 0),
        "seconds_writing": len(series),
        "peak_wcu_per_s": max(series) if series else 0.0,
        "wcu_per_second": series,
    }


# ---------------------------------------------------------------- the source, in PostgreSQL

def execute(info, *statements: str) -> float:
    from idstore_tools.local.stack import connect_postgres

    started = time.monotonic()
    connection = connect_postgres(info)
    try:
        cursor = connection.cursor()
        for statement in statements:
            cursor.execute(statement)
        connection.commit()
    finally:
        connection.close()
    return time.monotonic() - started


def pid_of(column: str) -> str:
    return f"'P' || lpad(({column})::text, 9, '0')"


def create_source(info, n: int) -> float:
    return execute(
        info,
        f"drop table if exists {SOURCE_TABLE}",
        f"create table {SOURCE_TABLE} (product_id text, title text, price int)",
        f"insert into {SOURCE_TABLE} select {pid_of('i')}, 'title ' || i, 100 + i % 9900 "
        f"from generate_series(0, {n - 1}) i",
        f"analyze {SOURCE_TABLE}",
    )


def churn(info, n: int) -> Dict[str, int]:
    """0.4% leave (spread over the key space), 0.4% arrive (new ids), 0.2% change their title."""
    arrive = round(n * ARRIVE)
    index = "substr(product_id, 2)::int"
    seconds = execute(
        info,
        f"delete from {SOURCE_TABLE} where {index} % {LEAVE_EVERY} = 0",
        f"update {SOURCE_TABLE} set title = title || ' v2' where {index} % {CHANGE_EVERY} = 1",
        f"insert into {SOURCE_TABLE} select {pid_of('i')}, 'new ' || i, 100 + i % 9900 "
        f"from generate_series({n}, {n + arrive - 1}) i",
        f"analyze {SOURCE_TABLE}",
    )
    return {"left": -(-n // LEAVE_EVERY), "arrived": arrive, "changed": len(range(1, n, CHANGE_EVERY)),
            "seconds": round(seconds, 1)}


def source_rows(info) -> Dict[str, Tuple[str, int]]:
    from idstore_tools.local.stack import connect_postgres

    connection = connect_postgres(info)
    try:
        cursor = connection.cursor()
        cursor.execute(f"select product_id, title, price from {SOURCE_TABLE}")
        return {pid: (title, price) for pid, title, price in cursor.fetchall()}
    finally:
        connection.close()


def compare(items: List[Dict[str, Any]], source: Dict[str, Tuple[str, int]]) -> Dict[str, int]:
    """The table against the source: ids missing, ids extra, ids whose title or price differ."""
    held = {item[KEY]["S"]: item for item in items}
    wrong = 0
    for pid, (title, price) in source.items():
        item = held.get(pid)
        if item is not None and (item.get("title") != {"S": title} or item.get("price") != {"N": str(price)}):
            wrong += 1
    return {"table_items": len(held), "source_ids": len(source), "missing": len(source.keys() - held.keys()),
            "extra": len(held.keys() - source.keys()), "wrong_attributes": wrong}


# ---------------------------------------------------------------- one run

def table_sets(data: Path, table: str) -> Dict[str, str]:
    """What every run of this benchmark sets: its table, mirror mode, the source and its snapshot path."""
    return {"dynamodb.table": table, "dynamodb.mode": "mirror",
            "source.query": f"select product_id, title, price from {SOURCE_TABLE}",
            "source.attribute_columns": "title,price", "snapshot.path": str(data / f"snapshots-{table}")}


def submit_sync(name: str, conf: Path, data: Path, logs: Path, sets: Dict[str, str],
                flags: Tuple[str, ...] = ()) -> Tuple[Dict[str, Any], float]:
    """One sync as its own spark-submit, `sets` as --set overrides: its report and wall seconds."""
    from idstore_tools.local.stack import MOTO_ENV
    from idstore_tools.local_submit import spark_submit

    run_id = f"bench-{name.replace(' ', '-').replace(',', '')}-{uuid.uuid4().hex[:6]}"
    args = ["--config", str(conf), "--run-id", run_id, *flags]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    started = time.monotonic()
    result = spark_submit("sync", args, env=MOTO_ENV, timeout=7200)
    wall = time.monotonic() - started
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"{run_id}.log").write_text(result.stdout + result.stderr)
    report_path = data / "reports" / "sync" / f"run_id={run_id}.json"
    if result.returncode != 0 or not report_path.exists():
        tail = (result.stdout + result.stderr)[-4000:]
        raise RuntimeError(f"{name}: spark-submit exited {result.returncode} (whole log: "
                           f"{logs / (run_id + '.log')})\n{tail}")
    return json.loads(report_path.read_text()), wall


def run_sync(name: str, conf: Path, data: Path, logs: Path, table: str, emulator: Emulator, rate: float,
             *flags: str) -> Dict[str, Any]:
    sets = {**table_sets(data, table), "dynamodb.endpoint_url": emulator.url, "dynamodb.write_rate": f"{rate:g}"}
    print(f"-- {name}: {table} {' '.join(flags)} ...", flush=True)
    before = emulator.admin("metrics")
    load_before = os.getloadavg()[0]
    report, wall = submit_sync(name, conf, data, logs, sets, flags)
    measured = emulator_delta(before, emulator.admin("metrics"))
    counts, details, durations = report["counts"], report["details"], report["durations_s"]
    out = {
        "name": name,
        "table": table,
        "run_id": report["run_id"],
        "exit_code": 0,  # submit_sync raises on any other
        "outcome": report["outcome"],
        "strategy": details.get("strategy"),
        "strategy_reason": details.get("strategy_reason"),
        "wall_s": round(wall, 1),
        "load_avg_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "durations_s": durations,
        "write_phase_s": round(durations.get("write", 0.0) + durations.get("delete", 0.0), 1),
        "counts": counts,
        "items_written": counts.get("written", 0) + counts.get("deleted", 0),
        "report_wcu": details.get("consumed_wcu", 0.0),
        "report_rcu": details.get("consumed_rcu", 0.0),
        "cost": details.get("cost", {}),
        "plan": details.get("plan"),
        "emulator": measured,
    }
    print(f"   {out['strategy']} run ({out['strategy_reason']}): {out['items_written']:,} items written, "
          f"{measured['wcu']:,.0f} WCU (report {out['report_wcu']:,.0f}), {out['report_rcu']:,.0f} RCU, "
          f"{sum(measured['read_calls'].values()):,} read calls; write phase {out['write_phase_s']:.1f} s, "
          f"job {durations.get('total', 0):.1f} s, spark-submit {wall:.1f} s", flush=True)
    return out


def run_import(conf: Path, data: Path, logs: Path, info) -> Dict[str, Any]:
    """A first load by import into a table that does not exist, in moto, as a whole spark-submit."""
    from idstore_tools.local.stack import aws_client

    aws_client("s3", info.moto_endpoint).create_bucket(Bucket=STAGING_BUCKET)
    print(f"-- run 1 (import): {IMPORTED} ...", flush=True)
    report, wall = submit_sync("run 1 (import)", conf, data, logs, {
        **table_sets(data, IMPORTED), "dynamodb.create": "import", "dynamodb.import_path": f"s3://{STAGING_BUCKET}/imports"})
    imported = report["details"]["import"]
    out = {"name": "run 1 (import)", "table": IMPORTED, "run_id": report["run_id"], "wall_s": round(wall, 1),
           "durations_s": report["durations_s"], "import": imported, "counts": report["counts"],
           "writer_wcu": report["details"].get("consumed_wcu", 0.0)}
    print(f"   imported {imported['imported']:,} items: {imported['staged_bytes']:,} bytes staged "
          f"({imported['gb']:.3f} GB, {imported['objects']} objects), ${imported['cost_usd']:.6f}; stage "
          f"{report['durations_s'].get('stage', 0):.1f} s, import {imported['seconds']:.1f} s, "
          f"spark-submit {wall:.1f} s", flush=True)
    return out


def moto_items(info, table: str, keys: List[str]) -> List[Dict[str, Any]]:
    """Table C read back from moto: BatchGetItem of every source key (moto's Scan pages in quadratic
    time, hours at 1M items), and any item beyond them counted from DescribeTable as a stand-in."""
    from idstore_tools.local.stack import aws_client

    client = aws_client("dynamodb", info.moto_endpoint)
    found: List[Dict[str, Any]] = []
    for start in range(0, len(keys), 100):
        pending = {table: {"Keys": [{KEY: {"S": key}} for key in keys[start:start + 100]]}}
        while pending:
            answer = client.batch_get_item(RequestItems=pending)
            found += answer["Responses"].get(table, [])
            pending = answer.get("UnprocessedKeys") or {}
    extra = client.describe_table(TableName=table)["Table"]["ItemCount"] - len(found)
    return found + [{KEY: {"S": f"<extra {i}>"}} for i in range(max(0, extra))]


def first_load_table(n: int, write: Dict[str, Any], imp: Dict[str, Any], prices, rate: float) -> Tuple[str, Dict]:
    """The first load both ways, side by side, and its price scaled to 10M and 100M ids."""
    i = imp["import"]
    write_units = write["emulator"]["wcu"]
    lines = [
        "| first load | bytes staged (uncompressed) | write units | cost $ | import / write phase s "
        "| whole run s (spark-submit) |",
        "|---|---:|---:|---:|---:|---:|",
        f"| write path (table A, emulator at {rate:,.0f} WCU/s) | 0 | {write_units:,.0f} | {money(write['usd'])} "
        f"| {write['write_phase_s']:.1f} | {write['wall_s']:.1f} |",
        f"| import (table C, moto) | {i['staged_bytes']:,} ({i['gb']:.3f} GB, {i['objects']} objects) "
        f"| {imp['writer_wcu']:,.0f} | {money(i['cost_usd'])} "
        f"| {i['seconds']:.1f} (+ {imp['durations_s'].get('stage', 0):.1f} staging) | {imp['wall_s']:.1f} |",
        f"| ratio import / write path | | | {pct(ratio(i['cost_usd'], write['usd']))} | | "
        f"{pct(ratio(imp['wall_s'], write['wall_s']))} |",
        "",
        f"| ids | write path: write units | write path $ | write path at {rate:,.0f} WCU/s | at 1,000 WCU/s "
        "| import: GB staged | import $ |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    scaled = []
    for ids in (n, 10_000_000, 100_000_000):
        scale = ids / n
        units, gb = write_units * scale, i["gb"] * scale
        row = {"ids": ids, "write_units": units, "write_usd": write["usd"] * scale,
               "import_gb": gb, "import_usd": gb * prices.import_usd_per_gb}
        scaled.append(row)
        lines.append(f"| {ids:,} | {units:,.0f} | {money(row['write_usd'])} | {units / rate / 3600:,.1f} h "
                     f"| {units / 1000 / 3600:,.1f} h | {gb:,.2f} | {money(row['import_usd'])} |")
    return "\n".join(lines), {"scaled": scaled}


# ---------------------------------------------------------------- reporting

def usd(write_units: float, read_units: float, prices) -> float:
    return (write_units * prices.write_unit_usd_per_million + read_units * prices.read_unit_usd_per_million) / 1e6


def money(value: float) -> str:
    if value >= 100:
        return f"${value:,.0f}"
    if value >= 1:
        return f"${value:,.2f}"
    return f"${value:.4f}"


def ratio(a: float, b: float) -> Optional[float]:
    return a / b if b else None


def pct(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def run_table(runs: List[Dict[str, Any]]) -> str:
    lines = [
        "| run | strategy | items written (puts + deletes) | write units (emulator / report) | read units "
        "| Scan calls | write phase s | whole run s (spark-submit) | job s (report) | cost $ |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r['name']} | {r['strategy']} | {r['counts'].get('written', 0):,} + {r['counts'].get('deleted', 0):,} "
            f"| {r['emulator']['wcu']:,.0f} / {r['report_wcu']:,.0f} | {r['report_rcu']:,.0f} "
            f"| {r['emulator']['read_calls']['Scan']:,} | {r['write_phase_s']:.1f} | {r['wall_s']:.1f} "
            f"| {r['durations_s'].get('total', 0):.1f} | {money(r['usd'])} |"
        )
    full, dlt = runs[1], runs[2]
    lines.append(
        f"| ratio delta / full | | {pct(ratio(dlt['items_written'], full['items_written']))} "
        f"| {pct(ratio(dlt['emulator']['wcu'], full['emulator']['wcu']))} "
        f"| {pct(ratio(dlt['report_rcu'], full['report_rcu']))} "
        f"| {dlt['emulator']['read_calls']['Scan']:,} vs {full['emulator']['read_calls']['Scan']:,} "
        f"| {pct(ratio(dlt['write_phase_s'], full['write_phase_s']))} | {pct(ratio(dlt['wall_s'], full['wall_s']))} "
        f"| {pct(ratio(dlt['durations_s'].get('total', 0), full['durations_s'].get('total', 0)))} "
        f"| {pct(ratio(dlt['usd'], full['usd']))} |"
    )
    return "\n".join(lines)


def cost_table(n: int, full: Dict[str, Any], dlt: Dict[str, Any]) -> Tuple[str, List[Dict[str, Any]]]:
    """Per-run cost scaled linearly from n ids to 10M and 100M; a month of nightly runs."""
    full_runs = -(-RUNS_PER_MONTH // VERIFY_EVERY)  # 30 nights: 5 full runs if the first is one
    lines = [
        f"| ids | full mirror, per run | delta, per run | full mirror, {RUNS_PER_MONTH} runs a month "
        f"| delta, {RUNS_PER_MONTH} runs a month | delta + every {VERIFY_EVERY}th run full "
        f"({full_runs} full + {RUNS_PER_MONTH - full_runs} delta) a month |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    rows = []
    for ids in (n, 10_000_000, 100_000_000):
        scale = ids / n
        f_run, d_run = full["usd"] * scale, dlt["usd"] * scale
        row = {"ids": ids, "full_per_run": f_run, "delta_per_run": d_run, "full_per_month": f_run * RUNS_PER_MONTH,
               "delta_per_month": d_run * RUNS_PER_MONTH,
               "delta_with_verification_per_month": f_run * full_runs + d_run * (RUNS_PER_MONTH - full_runs)}
        rows.append(row)
        lines.append(f"| {ids:,} | {money(f_run)} | {money(d_run)} | {money(row['full_per_month'])} "
                     f"| {money(row['delta_per_month'])} | {money(row['delta_with_verification_per_month'])} |")
    return "\n".join(lines), rows


def verdicts(full: Dict[str, Any], dlt: Dict[str, Any]) -> List[str]:
    wcu = ratio(dlt["emulator"]["wcu"], full["emulator"]["wcu"])
    reads = sum(dlt["emulator"]["read_calls"].values())
    wall = ratio(dlt["wall_s"], full["wall_s"])
    job = ratio(dlt["durations_s"].get("total", 0), full["durations_s"].get("total", 0))
    met = {True: "met", False: "MISSED"}
    return [
        f"target write units <= 1.1% of the full run's: {'met' if wcu is not None and wcu <= 0.011 else 'MISSED'} "
        f"({dlt['emulator']['wcu']:,.0f} of {full['emulator']['wcu']:,.0f} WCU = {pct(wcu)})",
        f"target no full-table read: {'met' if reads == 0 and not dlt['report_rcu'] else 'MISSED'} "
        f"({reads} read calls on the table, {dlt['report_rcu']:,.0f} RCU; the full mirror run: "
        f"{full['emulator']['read_calls']['Scan']:,} Scan calls, {full['report_rcu']:,.0f} RCU)",
        f"target whole run <= 15% of the full mirror run's time: {met[wall is not None and wall <= 0.15]} "
        f"({dlt['wall_s']:.1f} s of {full['wall_s']:.1f} s spark-submit = {pct(wall)}; by the report's total "
        f"{dlt['durations_s'].get('total', 0):.1f} s of {full['durations_s'].get('total', 0):.1f} s = {pct(job)})",
    ]


# ---------------------------------------------------------------- main

def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", type=int, default=1_000_000, help="ids in the set (default 1,000,000)")
    parser.add_argument("--rate", type=float, default=10_000.0,
                        help="every table's budget in the emulator and dynamodb.write_rate, WCU/s")
    parser.add_argument("--latency-ms", type=float, default=10.0, help="the emulator's latency per call")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    args.out.mkdir(parents=True, exist_ok=True)
    n = args.ids

    from idstore.config import load_config
    from idstore_tools.local.stack import MOTO_ENV, LocalStack, write_local_config
    from idstore_tools.local_submit import require_jars

    os.environ.update(MOTO_ENV)  # moto and the emulator take any credentials
    require_jars()
    prices = load_config().cost
    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    data = work / "data"
    logs = args.out / "bench-sync-logs"  # each run's spark-submit output
    started = time.monotonic()
    with LocalStack() as info:
        emulator = Emulator(args.rate, args.latency_ms)
        try:
            for table in TABLES.values():
                emulator.create_table(table)
            conf = Path(write_local_config(info, work / "job.toml", data))
            print(f"-- source: {n:,} ids (product_id, title, price) in PostgreSQL ...", flush=True)
            print(f"   generated in {create_source(info, n):.1f} s", flush=True)
            first_a = run_sync("run 1 (full)", conf, data, logs, TABLES["A"], emulator, args.rate)
            first_b = run_sync("run 1 (full), table B", conf, data, logs, TABLES["B"], emulator, args.rate)
            imported = run_import(conf, data, logs, info)
            source = source_rows(info)
            imported["readback"] = compare(moto_items(info, IMPORTED, sorted(source)), source)
            changes = churn(info, n)
            print(f"-- churn: {changes['left']:,} ids left, {changes['arrived']:,} arrived, "
                  f"{changes['changed']:,} changed their title ({changes['seconds']} s)", flush=True)
            full = run_sync("run 2, full mirror", conf, data, logs, TABLES["A"], emulator, args.rate, "--full")
            dlt = run_sync("run 2, delta", conf, data, logs, TABLES["B"], emulator, args.rate)
            print("-- reading both tables back ...", flush=True)
            source = source_rows(info)
            checks = {name: compare(emulator.items(table), source) for name, table in TABLES.items()}
            source_count = len(source)
            del source
        finally:
            emulator.stop()
    for run in (first_a, first_b, full, dlt):
        run["usd"] = usd(run["emulator"]["wcu"], run["report_rcu"], prices)

    runs = [first_a, full, dlt]
    head = (f"{n:,} ids (title, price), 1% churn ({changes['left']:,} left, {changes['arrived']:,} arrived, "
            f"{changes['changed']:,} changed); capacity emulator at {args.rate:,.0f} WCU/s "
            f"(dynamodb.write_rate {args.rate:,.0f}), {args.latency_ms:g} ms per call; spark-submit local[2] "
            f"on {os.cpu_count()} cores; ${prices.write_unit_usd_per_million:g} per million write units, "
            f"${prices.read_unit_usd_per_million:g} per million read units")
    text = [head, "", run_table(runs), ""]
    costs, cost_rows = cost_table(n, full, dlt)
    text += [f"cost at those prices, scaled linearly from {n:,} ids:", "", costs, ""]
    first_load, first_load_raw = first_load_table(n, first_a, imported, prices, args.rate)
    check = imported["readback"]
    text += [f"first load, the write path against DynamoDB's import from S3 (${prices.import_usd_per_gb:g} per GB "
             f"of uncompressed input); moto's import time is moto's, not AWS's:", "", first_load, "",
             f"table C ({IMPORTED}, imported): {check['table_items']:,} items for {check['source_ids']:,} source ids; "
             f"items lost / wrong: {check['missing'] + check['extra'] + check['wrong_attributes']:,}", ""]
    for name, check in checks.items():
        lost = check["missing"] + check["extra"] + check["wrong_attributes"]
        text.append(f"table {name} ({TABLES[name]}): {check['table_items']:,} items for {check['source_ids']:,} "
                    f"source ids; " + ("items lost / wrong: 0" if not lost else
                                       f"items lost / wrong: {check['missing']:,} missing, {check['extra']:,} "
                                       f"extra, {check['wrong_attributes']:,} with wrong attributes"))
    text += [""] + verdicts(full, dlt)
    print()
    print("\n".join(text))
    raw = {
        "ids": n, "rate_wcu": args.rate, "latency_ms": args.latency_ms, "cores": os.cpu_count(),
        "prices": {"write_unit_usd_per_million": prices.write_unit_usd_per_million,
                   "read_unit_usd_per_million": prices.read_unit_usd_per_million,
                   "import_usd_per_gb": prices.import_usd_per_gb},
        "churn": changes, "source_ids_after_churn": source_count, "runs": [first_a, first_b, full, dlt],
        "readback": checks, "cost_scaled": cost_rows, "verdicts": verdicts(full, dlt),
        "first_load": {"import": imported, **first_load_raw},
        "bench_seconds": round(time.monotonic() - started, 1),
    }
    (args.out / "bench-sync.json").write_text(json.dumps(raw, indent=1) + "\n")
    (args.out / "bench-sync.md").write_text("\n".join(text) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    print(f"\nwrote {args.out / 'bench-sync.json'} and {args.out / 'bench-sync.md'} "
          f"({raw['bench_seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
