"""Benchmark of the DynamoDB writer: idstore against the hand-written loop and boto3's batch_writer.

    make bench-write                                  # 1,000,000 ids at 10,000 WCU/s, 10 ms per call
    .venv/bin/python benchmarks/bench_write.py --ids 100000          # a quick run

The capacity emulator runs as its own process (its CLI), with a table budget of --rate
WCU/s (1 s burst) and --latency-ms per call, and is reset before each contender:

  hand-written loop   one process, chunks of 25, UnprocessedItems re-sent at once
  batch_writer        boto3 Table.batch_writer() inside foreachPartition (local[2])
  idstore             write_dataframe: mapInArrow, the budget split over the tasks
  idstore + faults    the same with 30% of items returned unprocessed and 2% HTTP 500

Measured from the emulator, not from the contenders: the per-second series of consumed
WCU (items/s here: every item is 1 WCU), the share of BatchWriteItem calls answered with
a throttle error, and the items lost (ids sent minus ids the table holds, read back).
"Steady state" is the whole seconds between 5% and 95% of the contender's items.
The single-threaded baselines are latency-bound far below the budget, so they get
--baseline-ids ids (their rate does not depend on the count) to keep the run short.
A benchmark, not a test: it prints what it measured and asserts nothing.
"""
import argparse
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench-results"
TABLE = "IdentifierStore"
KEY = "product_id"
REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": REGION}
FAULTS = {"unprocessed_fraction": 0.3, "error_5xx_fraction": 0.02}


# ---------------------------------------------------------------- the emulator, over HTTP

class Emulator:
    """The capacity emulator as a separate process, driven through its admin paths."""

    def __init__(self, rate: float, latency_ms: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "idstore_tools.testing.emulator", "--port", "0", "--latency-ms", str(latency_ms),
             "--write-rate", str(rate), "--burst-s", "1", "--seed", "1"],
            stdout=subprocess.PIPE, text=True,
        )
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError(f"the emulator did not start: {self.url!r}")

    def admin(self, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/_emulator/{path}", data=data,
                                         method="GET" if body is None else "POST")
        with urllib.request.urlopen(request, timeout=600) as response:
            return json.loads(response.read())

    def fresh_table(self, faults: Optional[Dict[str, float]] = None) -> None:
        import boto3

        self.admin("reset", {})
        self.admin("faults", {"unprocessed_fraction": 0.0, "error_5xx_fraction": 0.0, **(faults or {}), "seed": 7})
        boto3.client("dynamodb", region_name=REGION, endpoint_url=self.url).create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
        )

    def stored_keys(self) -> set:
        return {item[KEY]["S"] for item in self.admin(f"items?table={TABLE}")["items"]}

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """Stop it; with millions of items on a busy machine it may take a while to exit, then kill it."""
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def save_results(out: Path, stem: str, text: str, figures: Dict[str, Any]) -> None:
    """Print a benchmark's table and keep it, with its figures as JSON, under `out`."""
    print()
    print(text)
    (out / f"{stem}.md").write_text(text + "\n")
    (out / f"{stem}.json").write_text(json.dumps(figures, indent=1) + "\n")


def ids(n: int) -> List[str]:
    return [f"B{i:09d}" for i in range(n)]


# ---------------------------------------------------------------- the contenders

def hand_written_loop(endpoint: str, n: int, spark) -> None:
    """What people write: chunks of 25, re-send UnprocessedItems until there are none."""
    import boto3

    client = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)
    keys = ids(n)
    for start in range(0, n, 25):
        requests = [{"PutRequest": {"Item": {KEY: {"S": key}}}} for key in keys[start:start + 25]]
        response = client.batch_write_item(RequestItems={TABLE: requests})
        while response.get("UnprocessedItems"):
            response = client.batch_write_item(RequestItems=response["UnprocessedItems"])


def _batch_writer_partition(endpoint: str):
    def write(rows) -> None:
        import boto3

        table = boto3.resource("dynamodb", region_name=REGION, endpoint_url=endpoint).Table(TABLE)
        with table.batch_writer(overwrite_by_pkeys=[KEY]) as writer:
            for row in rows:
                writer.put_item(Item={KEY: row[KEY]})

    return write


def batch_writer_in_spark(endpoint: str, n: int, spark) -> None:
    """boto3's batch_writer inside foreachPartition, as the Spark examples do it."""
    from pyspark.sql import functions as F

    df = spark.range(n, numPartitions=max(2, spark.sparkContext.defaultParallelism))
    df.select(F.format_string("B%09d", "id").alias(KEY)).foreachPartition(_batch_writer_partition(endpoint))


def idstore_writer(endpoint: str, n: int, spark, rate: float) -> Dict[str, float]:
    """idstore's writer through Spark, partitioned as the sync job does it."""
    from pyspark.sql import functions as F

    from idstore.config import load_config
    from idstore.dynamodb import bulk as ddb

    cfg = dataclasses.replace(load_config().dynamodb, table=TABLE, key_attribute=KEY, region=REGION,
                              endpoint_url=endpoint, write_rate=rate)
    plan = ddb.plan_write(spark, cfg, ddb.describe_table(cfg), n)
    df = spark.range(n, numPartitions=plan.partitions).select(F.format_string("B%09d", "id").alias(KEY))
    return ddb.write_dataframe(df, KEY, cfg, plan, action="put").as_dict()


def _warm(batches):
    import boto3  # noqa: F401 - imported once per Python worker, as every contender needs

    import idstore.dynamodb.writer  # noqa: F401

    yield from batches


def warm_up(spark) -> None:
    """Start the Python workers before anything is timed: no contender pays for that."""
    slots = spark.sparkContext.defaultParallelism
    spark.range(slots, numPartitions=slots).mapInArrow(_warm, "id long").count()


# ---------------------------------------------------------------- measuring

def steady_state(series: List[float]) -> List[float]:
    """The whole seconds between 5% and 95% of what was written."""
    total = sum(series)
    if not total:
        return []
    done, first, last = 0.0, None, None
    for second, wcu in enumerate(series):
        before, done = done, done + wcu
        if first is None and done >= 0.05 * total:
            first = second + 1
        if before <= 0.95 * total:
            last = second - 1
    return series[first:last + 1] if first is not None and last is not None and last >= first else []


def run_contender(name: str, emulator: Emulator, n: int, rate: float, body, faults=None) -> Dict[str, Any]:
    emulator.fresh_table(faults)
    cpu_before, load_before = emulator.cpu_seconds(), os.getloadavg()[0]
    print(f"-- {name}: {n:,} ids ...", flush=True)
    started = time.monotonic()
    writer_stats = body()
    seconds = time.monotonic() - started
    metrics = emulator.admin("metrics")
    stored = emulator.stored_keys()
    series = [wcu for _, wcu in metrics["wcu_per_second"]]
    first = next((i for i, wcu in enumerate(series) if wcu > 0), 0)
    series = series[first:]
    steady = steady_state(series)
    calls = metrics["ops"].get("BatchWriteItem", 0)
    expected = set(ids(n))
    result = {
        "contender": name,
        "ids": n,
        "seconds": round(seconds, 1),
        "items_per_s": round(n / seconds),
        "steady_items_per_s": round(sum(steady) / len(steady)) if steady else 0,
        "steady_budget_pct": round(100 * sum(steady) / len(steady) / rate, 1) if steady else 0.0,
        "steady_seconds": len(steady),
        "calls": calls,
        "throttled_calls": metrics["requests"]["throttled"],
        "throttled_pct": round(100 * metrics["requests"]["throttled"] / calls, 2) if calls else 0.0,
        "partial_calls": metrics["requests"]["partial"],
        "calls_5xx": metrics["requests"]["5xx"],
        "items_unprocessed": metrics["items_unprocessed"],
        "items_lost": len(expected - stored),
        "unexpected_items": len(stored - expected),
        "faults": faults or {},
        "emulator_cpu_s": round(emulator.cpu_seconds() - cpu_before, 1),
        "load_avg_1m": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "wcu_per_second": series,
    }
    if writer_stats:
        result["writer"] = {k: v for k, v in writer_stats.items() if isinstance(v, (int, float))}
    print(f"   {result['items_per_s']:,} items/s overall, {result['steady_budget_pct']}% of the budget in steady "
          f"state, {result['throttled_pct']}% throttled calls, {result['items_lost']} lost", flush=True)
    return result


# ---------------------------------------------------------------- reporting

def table(results: List[Dict[str, Any]], rate: float, latency_ms: float) -> str:
    head = (f"{results[-1]['ids'] if results else 0:,} ids for idstore into the capacity emulator: "
            f"{rate:,.0f} WCU/s budget, {latency_ms:g} ms per call, local[2] on {os.cpu_count()} cores")
    lines = [
        head, "",
        "| contender | ids | items/s (overall) | items/s (steady) | % of budget (steady) | throttled calls "
        "| items lost |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['contender']} | {r['ids']:,} | {r['items_per_s']:,} | {r['steady_items_per_s']:,} "
            f"| {r['steady_budget_pct']:.1f}% | {r['throttled_pct']:.2f}% ({r['throttled_calls']:,} of {r['calls']:,}) "
            f"| {r['items_lost']:,} |"
        )
    return "\n".join(lines)


def plot(results: List[Dict[str, Any]], rate: float, latency_ms: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=110)
    longest = max(len(r["wcu_per_second"]) for r in results)
    ax.axhline(rate, color="black", linestyle="--", linewidth=1, label=f"budget {rate:,.0f} WCU/s")
    for r in results:
        series = r["wcu_per_second"]
        ax.plot(range(len(series)), series, linewidth=1.4, label=f"{r['contender']} ({r['ids']:,} ids)")
    ax.set_xlim(0, longest)
    peak = max(max(r["wcu_per_second"] or [0]) for r in results)
    ax.set_ylim(0, max(rate * 1.3, peak * 1.05))  # bursts after a pause are drawn, not clipped
    ax.set_xlabel("seconds since the contender's first write")
    ax.set_ylabel("items written per second (1 WCU each)")
    ax.set_title(f"DynamoDB writes against a budgeted table, {latency_ms:g} ms per call (capacity emulator)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------- main

def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", type=int, default=1_000_000, help="ids idstore writes (default 1,000,000)")
    parser.add_argument("--baseline-ids", type=int, default=100_000,
                        help="ids each single-threaded baseline writes (at most --ids)")
    parser.add_argument("--rate", type=float, default=10_000.0, help="the table's budget, WCU/s")
    parser.add_argument("--latency-ms", type=float, default=10.0, help="the emulator's latency per call")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.update(CREDENTIALS)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    logging.basicConfig(level=logging.WARNING, format="   %(message)s")
    logging.getLogger("idstore").setLevel(logging.INFO)
    args.out.mkdir(parents=True, exist_ok=True)
    baseline_n = min(args.ids, args.baseline_ids)

    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]").appName("bench-write")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.pyspark.python", sys.executable)
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    warm_up(spark)
    emulator = Emulator(args.rate, args.latency_ms)
    results = []
    try:
        results.append(run_contender("hand-written loop", emulator, baseline_n, args.rate,
                                     lambda: hand_written_loop(emulator.url, baseline_n, spark)))
        results.append(run_contender("batch_writer in foreachPartition", emulator, baseline_n, args.rate,
                                     lambda: batch_writer_in_spark(emulator.url, baseline_n, spark)))
        results.append(run_contender("idstore", emulator, args.ids, args.rate,
                                     lambda: idstore_writer(emulator.url, args.ids, spark, args.rate)))
        results.append(run_contender("idstore, 30% unprocessed + 2% 5xx", emulator, args.ids, args.rate,
                                     lambda: idstore_writer(emulator.url, args.ids, spark, args.rate),
                                     faults=FAULTS))
    finally:
        emulator.stop()
        spark.stop()

    save_results(args.out, "bench-write", table(results, args.rate, args.latency_ms),
                 {"rate_wcu": args.rate, "latency_ms": args.latency_ms, "cores": os.cpu_count(), "results": results})
    png = args.out / "bench-write.png"
    plot(results, args.rate, args.latency_ms, png)
    docs = REPO / "docs"
    docs.mkdir(exist_ok=True)
    shutil.copyfile(png, docs / "bench-write.png")
    print(f"\nwrote {args.out / 'bench-write.md'}, {args.out / 'bench-write.json'}, {png} and docs/bench-write.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
