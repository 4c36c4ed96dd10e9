"""The filter as a user pays for it: whole `spark-submit` runs, idstore against the hand-written job.

    make bench-filter-runs                                        # 300,000 and 3,000,000 events, 3%
    .venv/bin/python benchmarks/bench_filter_runs.py --events 300000,3000000 --fractions 0.03,0.1 --rounds 3

Each run is its own `spark-submit --master local[2]` from a cold JVM, as one EMR step: the id set
read from the same sync snapshot, the listing, the pass, and for idstore its quarantine, per-day
counts, file sizing and report. The hand-written job is what a competent user writes:

    ids = spark.read.parquet(snapshot).select(F.col("product_id").alias("k"))
    ev = spark.read.schema(schema).json(events)
    ev.join(F.broadcast(ids), ev["detail.productId"] == ids["k"], "left_semi") \\
      .write.mode("overwrite").partitionBy("dt").parquet(out)

Rounds interleave the sizes and the contenders. From the medians: the whole-run time of each
at each size, the per-event ratio (the difference between the large and the small archive,
idstore over hand-written, so the fixed cost per run cancels) and idstore's fixed cost over
the hand-written job (the small archive's difference, less the per-event part). The archives
are bench_filter.py's (cached in bench-results/filter-data/). A benchmark, not a test.
"""
import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_filter import RESULTS, START, ensure_data, event_schema  # noqa: E402

HAND_JOB = '''
import sys
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

events, snapshot, out, schema = sys.argv[1:5]
spark = SparkSession.builder.appName("hand-written filter").getOrCreate()
ids = spark.read.parquet(snapshot).select(F.col("product_id").alias("k"))
ev = spark.read.schema(schema).json(events)
ev.join(F.broadcast(ids), ev["detail.productId"] == ids["k"], "left_semi") \\
  .write.mode("overwrite").partitionBy("dt").parquet(out)
spark.stop()
'''
CONTENDERS = ("hand-written job", "idstore")


def run_once(name: str, data: Path, days: int, work: Path) -> float:
    """Seconds of one whole spark-submit of `name` over `data`'s json.gz archive."""
    from idstore_tools.local_submit import spark_submit, spark_submit_command

    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work / "out-quarantine", ignore_errors=True)
    events, snapshot = data / "json.gz", data / "snapshots" / "run_id=bench"
    started = time.perf_counter()
    if name == "idstore":
        conf = work / "filter.toml"
        conf.write_text(
            f'[events]\npath = "{events}"\nschema = "{event_schema(False)}"\n'
            f'[output]\npath = "{out}"\nquarantine_path = "{work / "out-quarantine"}"\n'
            f'[snapshot]\npath = "{data / "snapshots"}"\n'
        )
        last = START.fromordinal(START.toordinal() + days - 1)
        result = spark_submit("filter", ["--config", str(conf), "--from", START.isoformat(), "--to", last.isoformat()])
    else:
        script = work / "hand_filter.py"
        script.write_text(HAND_JOB)
        command = spark_submit_command("filter", [])[:-1]  # the same spark-submit settings, another script
        import os
        import subprocess

        env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
               "SPARK_LOCAL_IP": "127.0.0.1"}
        result = subprocess.run([*command, str(script), str(events), str(snapshot), str(out), event_schema(False)],
                                env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{(result.stdout + result.stderr)[-3000:]}")
    return seconds


def summarise(times: Dict[str, Dict[int, List[float]]], sizes: List[int]) -> Dict[str, float]:
    small, large = sizes[0], sizes[-1]
    med = {name: {n: statistics.median(times[name][n]) for n in sizes} for name in CONTENDERS}
    per_event = {name: (med[name][large] - med[name][small]) / (large - small) for name in CONTENDERS}
    ratio = per_event["idstore"] / per_event["hand-written job"]
    # the fixed cost: what a run costs beyond its events, over the hand-written job's
    fixed = {name: med[name][small] - per_event[name] * small for name in CONTENDERS}
    return {"per_event_ratio": ratio, "fixed_over_hand_s": fixed["idstore"] - fixed["hand-written job"],
            **{f"{name} @ {n}": med[name][n] for name in CONTENDERS for n in sizes}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="300000,3000000", help="archive sizes, smallest first")
    parser.add_argument("--fractions", default="0.03")
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--files-per-day", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--spelling", default="compact", choices=("compact", "json.dumps"),
                        help="how the archive's lines are written: compact, or as Python's json.dumps writes them")
    parser.add_argument("--flawed-per-file", type=int, default=3,
                        help="broken, id-less and awkward lines in every file (0: none), as archives hold")
    args = parser.parse_args(argv)
    sizes = sorted(int(n) for n in args.events.split(","))
    report: Dict[str, Dict] = {}
    lines = ["| in set | events | hand-written job s (median, min-max) | idstore s (median, min-max) |",
             "|---:|---:|---:|---:|"]
    verdicts = []
    for fraction in (float(f) for f in args.fractions.split(",")):
        archives = {n: ensure_data(n, args.days, args.ids, fraction, args.files_per_day, args.spelling,
                                  json_only=True, flawed_per_file=args.flawed_per_file) for n in sizes}
        times: Dict[str, Dict[int, List[float]]] = {name: {n: [] for n in sizes} for name in CONTENDERS}
        with tempfile.TemporaryDirectory(prefix="bench-filter-runs-") as tmp:
            for round_ in range(args.rounds):
                for n in sizes:
                    order = CONTENDERS if round_ % 2 == 0 else tuple(reversed(CONTENDERS))
                    for name in order:
                        seconds = run_once(name, archives[n], args.days, Path(tmp))
                        times[name][n].append(seconds)
                        print(f"bench-filter-runs: {fraction:.0%} {n:,} events, round {round_ + 1}: {name} "
                              f"{seconds:.1f} s", flush=True)
        summary = summarise(times, sizes)
        report[str(fraction)] = {"times": {k: {str(n): v for n, v in t.items()} for k, t in times.items()},
                                 **summary}
        for n in sizes:
            cells = [f"{statistics.median(times[name][n]):.1f} ({min(times[name][n]):.1f}-{max(times[name][n]):.1f})"
                     for name in CONTENDERS]
            lines.append(f"| {fraction:.0%} | {n:,} | {cells[0]} | {cells[1]} |")
        verdicts.append(f"{fraction:.0%}: per event idstore/hand-written {summary['per_event_ratio']:.2f}x "
                        f"(target <= 0.60x: {'met' if summary['per_event_ratio'] <= 0.60 else 'missed'}); "
                        f"fixed cost per run {summary['fixed_over_hand_s']:+.1f} s over the hand-written job "
                        f"(target <= 2 s: {'met' if summary['fixed_over_hand_s'] <= 2 else 'missed'})")
    print("\n".join(["", *lines, "", *verdicts]))
    RESULTS.mkdir(exist_ok=True)
    suffix = "" if args.spelling == "compact" else f"-{args.spelling}"
    (RESULTS / f"bench-filter-runs{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
