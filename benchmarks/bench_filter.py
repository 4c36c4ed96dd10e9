"""Benchmark of the filter job against the broadcast join a user would write by hand.

    make bench-filter                                   # 4,000,000 events, 3% and 10% in the set
    .venv/bin/python benchmarks/bench_filter.py --events 400000 --repeat 1    # a quick run

The archive (JSON lines, gzip, and the same events as Parquet; and, for json.gz, the same
events with 20 fields in `detail`) and the id set (a sync snapshot) are generated once
per event count and fraction and cached under bench-results/filter-data/.

For each fraction one child process (local[2], one warm JVM) runs the json.gz archives,
the narrow one and the wide one in the same rounds, and another runs Parquet: every
contender once to warm up, then `--repeat` rounds, the archives and the contenders
alternating within each round; the table gives the median and the spread (min-max) of the
timed rounds. A ratio is the median of the rounds' own ratios (contender / baseline in the
same round), so a load that drifts across the run cancels out of it, and the wide schema's
ratio is measured beside the narrow one it is compared with, not minutes apart. Parquet
runs 7 rounds by default, as a 3 s run varies by 10-25% on a shared 2-core machine. The
baseline of the verdicts is the hand-written join:

    ev = spark.read.schema(schema).json(events_path)       # or .parquet
    ev.join(F.broadcast(ids), ev["detail.productId"] == ids["k"], "left_semi") \
      .write.mode("overwrite").partitionBy("dt").parquet(out)

Beside it, the same join with the scan split into 2 tasks a core, as idstore splits it. The
floors are what no filter can beat: reading the text only (json.gz) and reading the
id column only. A benchmark, not a test: it prints what it measured and asserts nothing.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date, timedelta
from multiprocessing import Pool
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench-results"
FORMATS = ("json.gz", "parquet", "json.gz-wide")
BASELINE = "hand-written join"
# the same join with the scan split as idstore splits it (spark.sql.files.minPartitionNum):
# what a user who tunes that setting gets, beside the verdicts' untuned baseline
TUNED = "hand-written join, 2 scan tasks a core"
CONTENDERS = ("floor: text only", "floor: id column only", BASELINE, TUNED, "idstore",
              "idstore, validate=all", "sort-merge join", "python-udf")
DEFAULT_CONTENDERS = ("floor: text only", "floor: id column only", BASELINE, TUNED, "idstore",
                      "idstore, validate=all")
START = date(2024, 1, 1)
RESULT_PREFIX = "BENCH-RESULT "
DETAIL = ("productId", "fcId", "stage", "reason")


def event_schema(wide: bool) -> str:
    detail = [f"{name}: STRING" for name in DETAIL]
    if wide:
        from idstore_tools.testing.datagen import WIDE_EXTRA_FIELDS, wide_detail_fields

        detail += ["attempt: INT"] + [f"{name}: STRING" for name in wide_detail_fields(WIDE_EXTRA_FIELDS)]
    return ("id STRING, time STRING, `detail-type` STRING, source STRING, "
            f"detail STRUCT<{', '.join(detail)}>")


# ---------------------------------------------------------------- data, generated once

def _day_job(task):
    """One day of JSON.gz events, then the same events as Parquet (pyarrow, snappy)."""
    (root, parquet_root, day_index, n_events, match_ids, other_ids, fraction, files_per_day, spelling, json_only,
     flawed) = task
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    from idstore_tools.testing.datagen import WIDE_EXTRA_FIELDS, write_event_archive

    day = START + timedelta(days=day_index)
    write_event_archive(root, day, 1, n_events, match_ids, other_ids, fraction, seed=1000 + day_index,
                        files_per_day=files_per_day, spelling=spelling, flawed_per_file=flawed)
    if spelling != "compact" or json_only:
        return day.isoformat()  # for the json.gz whole-run benchmark only
    # the same events, 20 fields in detail (same seed: same ids, same order)
    write_event_archive(str(Path(root).parent / "json.gz-wide"), day, 1, n_events, match_ids, other_ids,
                        fraction, seed=1000 + day_index, files_per_day=files_per_day,
                        extra_detail_fields=WIDE_EXTRA_FIELDS)
    options = pj.ParseOptions(explicit_schema=_arrow_schema(), unexpected_field_behavior="ignore")
    for source in sorted((Path(root) / f"dt={day.isoformat()}").glob("part-*.json.gz")):
        target = Path(parquet_root) / source.parent.name / source.name.replace(".json.gz", ".parquet")
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pj.read_json(str(source), parse_options=options), str(target), compression="snappy")
    return day.isoformat()


def _arrow_schema():
    import pyarrow as pa

    detail = pa.struct([(name, pa.string()) for name in ("productId", "fcId", "stage", "reason")])
    return pa.schema([("id", pa.string()), ("time", pa.string()), ("detail-type", pa.string()),
                      ("source", pa.string()), ("detail", detail)])


def write_pointer(data: Path) -> None:
    """The snapshot's pointer as sync writes it: with the key count and bytes the filter sizes its join by."""
    import pyarrow.parquet as pq

    from idstore import io
    from idstore.snapshot import Fingerprint, Pointer

    snapshot = data / "snapshots" / "run_id=bench"
    keys = pq.read_table(str(snapshot), columns=["product_id"]).column("product_id").to_pylist()
    stamp = "2024-01-01T00:00:00+00:00"
    pointer = Pointer(run_id="bench", path=str(snapshot), id_column="product_id", written_at=stamp, keys=len(keys),
                      fingerprint=Fingerprint.from_dict({}), verified_at=stamp, runs_since_verify=0,
                      key_bytes=sum(len(key.encode("utf-8")) for key in keys), id_type="string")
    io.write_json(str(data / "snapshots" / "_LATEST.json"), pointer.as_dict())


def ensure_data(n_events: int, days: int, n_ids: int, fraction: float, files_per_day: int,
                spelling: str = "compact", json_only: bool = False, flawed_per_file: int = 0) -> Path:
    """The cached archive for these parameters; generated (2 processes) when missing.

    `spelling` "json.dumps": json.gz only, written as Python's json.dumps writes (datagen).
    `json_only`: json.gz only, for the whole-run benchmark (no Parquet, no wide copy).
    `flawed_per_file`: broken, id-less and awkward lines in every file (datagen), json.gz only."""
    name = f"events{n_events}-days{days}-ids{n_ids}-match{fraction}-files{files_per_day}"
    name += f"-flawed{flawed_per_file}" if flawed_per_file else ""
    json_only = json_only or bool(flawed_per_file)
    data = RESULTS / "filter-data" / (name if spelling == "compact" else f"{name}-{spelling}")
    if (data / "COMPLETE").exists() and (spelling != "compact" or json_only or (data / "json.gz-wide").exists()):
        print(f"bench-filter: using cached data in {data.relative_to(REPO)}", flush=True)
        write_pointer(data)
        return data
    import pyarrow as pa
    import pyarrow.parquet as pq

    from idstore_tools.testing.datagen import program_ids

    shutil.rmtree(data, ignore_errors=True)
    started = time.monotonic()
    print(f"bench-filter: generating {n_events:,} events over {days} days and {n_ids:,} ids ...", flush=True)
    match_ids = program_ids("BENCH", n_ids, seed=1)
    other_ids = program_ids("BENCHOTHER", max(n_ids, 1000), seed=1)
    snapshot = data / "snapshots" / "run_id=bench"
    snapshot.mkdir(parents=True)
    pq.write_table(pa.table({"product_id": match_ids}), str(snapshot / "part-00000.parquet"))
    write_pointer(data)
    per_day = [n_events // days + (1 if i < n_events % days else 0) for i in range(days)]
    tasks = [(str(data / "json.gz"), str(data / "parquet"), i, per_day[i], match_ids, other_ids, fraction,
              files_per_day, spelling, json_only, flawed_per_file) for i in range(days)]
    with Pool(2) as pool:
        for day in pool.imap_unordered(_day_job, tasks):
            print(f"  {day} done ({time.monotonic() - started:.0f} s)", flush=True)
    (data / "COMPLETE").write_text(json.dumps({"events": n_events, "days": days, "ids": n_ids}) + "\n")
    return data


# ---------------------------------------------------------------- the contenders, in one warm JVM

def contender_run(spark, name: str, fmt: str, data: Path, out: Path) -> Dict:
    """One timed run of `name`; rows counted after the clock."""
    from pyspark.sql import functions as F

    wide = fmt.endswith("-wide")
    source = "parquet" if fmt == "parquet" else "json"
    events_root = str(data / fmt)
    schema = event_schema(wide)
    snapshot = str(data / "snapshots" / "run_id=bench")
    shutil.rmtree(out, ignore_errors=True)
    cpu_before = tree_cpu_seconds(os.getpid())
    started = time.perf_counter()
    rows: Optional[int] = None
    if name.startswith("idstore"):
        from idstore.config import load_config
        from idstore.pipeline.filter import run_filter
        from idstore.pipeline.report import RunReport

        config = load_config(None, [
            f"events.path={events_root}", f"events.format={source}", f"events.schema={schema}",
            f"output.path={out}", f"output.quarantine_path={out}-quarantine",
            f"snapshot.path={data / 'snapshots'}",
            "events.validate=" + ("all" if name.endswith("validate=all") else "kept"),
        ])
        report = RunReport(job="filter", run_id="bench", config={})
        run_filter(spark, config, report, {})
        rows = report.counts["matched"]
    elif name == "floor: text only":
        spark.read.text(events_root).write.format("noop").mode("overwrite").save()
        rows = 0
    elif name == "floor: id column only":
        (spark.read.schema("detail STRUCT<productId: STRING>").format(source).load(events_root)
         .select("detail.productId").write.format("noop").mode("overwrite").save())
        rows = 0
    else:
        # what a user writes by hand: the schema given, the folder read whole, a plain write
        if name == TUNED:
            spark.conf.set("spark.sql.files.minPartitionNum", str(2 * spark.sparkContext.defaultParallelism))
        try:
            ev = spark.read.schema(schema).format(source).load(events_root)
            ids = spark.read.parquet(snapshot)
            if name == "python-udf":
                wanted = spark.sparkContext.broadcast({row[0] for row in ids.collect()})
                member = F.udf(lambda value: value in wanted.value, "boolean")
                kept = ev.filter(member(F.col("detail.productId")))
            else:
                keys = ids.hint("shuffle_merge") if name == "sort-merge join" else F.broadcast(ids)
                kept = ev.join(keys, ev["detail.productId"] == keys["product_id"], "left_semi")
            kept.write.mode("overwrite").partitionBy("dt").parquet(str(out))
        finally:
            spark.conf.unset("spark.sql.files.minPartitionNum")  # the next contender runs untuned
    seconds = time.perf_counter() - started
    cpu = tree_cpu_seconds(os.getpid()) - cpu_before
    if rows is None:
        rows = spark.read.parquet(str(out)).count()  # after the clock: Parquet footers only
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(f"{out}-quarantine", ignore_errors=True)
    return {"seconds": seconds, "cpu_seconds": cpu, "rows_out": rows}


def usable(contenders: List[str], fmt: str) -> List[str]:
    """The contenders that apply to `fmt` (Parquet has no text and nothing to validate)."""
    skipped = ("floor: text only", "idstore, validate=all") if fmt == "parquet" else ()
    return [c for c in contenders if c not in skipped]


def run_session(formats: List[str], data: Path, out: Path, contenders: List[str], repeat: int) -> Dict:
    """Every contender on every format once to warm the JVM, then `repeat` rounds, alternating."""
    from idstore.spark import build_session

    spark = build_session("bench-filter", {
        "spark.ui.enabled": "false",
        "spark.pyspark.python": sys.executable,
        "spark.sql.shuffle.partitions": "200",
    }, master="local[2]")
    spark.sparkContext.setLogLevel("ERROR")
    runs: Dict[str, Dict[str, List[Dict]]] = {fmt: {name: [] for name in usable(contenders, fmt)} for fmt in formats}
    order = [(fmt, name) for fmt, names in runs.items() for name in names]
    for round_ in range(repeat + 1):
        # reversed every other round, so no contender always runs first or after the same one
        for fmt, name in (order if round_ % 2 else list(reversed(order))):
            result = contender_run(spark, name, fmt, data, out / fmt)
            if round_:
                runs[fmt][name].append(result)
            print(f"  {fmt} {name}: {result['seconds']:.1f} s" + (" (warm-up)" if not round_ else ""),
                  file=sys.stderr, flush=True)
    spark.stop()
    return runs


# ---------------------------------------------------------------- memory of the child's process tree

def _children(pid: int) -> List[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def _tree(pid: int) -> List[int]:
    pids, stack = [], [pid]
    while stack:
        current = stack.pop()
        pids.append(current)
        stack.extend(_children(current))
    return pids


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its live descendants (the JVM, the Python workers)."""
    total = 0
    for member in _tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def _kib(pid: int, name: str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def measure(formats: List[str], data: Path, contenders: List[str], repeat: int, driver_memory: str) -> Dict:
    """{format: {contender: [runs]}} from one child process (one JVM) that runs `formats` in the same rounds."""
    out = RESULTS / "filter-out"
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_SUBMIT_ARGS": f"--driver-memory {driver_memory} pyspark-shell",
    }
    command = [sys.executable, __file__, "--run-session", ",".join(formats), "--data", str(data), "--out", str(out),
               "--contenders", "|".join(contenders), "--repeat", str(repeat)]
    child = subprocess.run(command, env=env, cwd=str(REPO), stdout=subprocess.PIPE, text=True)
    shutil.rmtree(out, ignore_errors=True)
    lines = [line for line in child.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if child.returncode or not lines:
        raise SystemExit(f"bench-filter: {', '.join(formats)} failed ({child.returncode})")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


# ---------------------------------------------------------------- the table

def _median(runs: List[Dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def table(results: Dict, n_events: int) -> List[str]:
    """results: {(fmt, fraction): {contender: [runs]}}."""
    lines = [
        "| format | in set | contender | seconds (median) | spread | events/s | vs hand-written join | "
        "CPU s | CPU vs hand-written | rows out |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (fmt, fraction), runs in results.items():
        base = runs.get(BASELINE)
        for name in CONTENDERS:
            if name not in runs or not runs[name]:
                continue
            r = runs[name]
            sec, cpu = _median(r, "seconds"), _median(r, "cpu_seconds")
            lo, hi = min(x["seconds"] for x in r), max(x["seconds"] for x in r)
            versus = f"{paired_ratio(r, base, 'seconds'):.2f}x" if base else "-"
            cpu_versus = f"{paired_ratio(r, base, 'cpu_seconds'):.2f}x" if base else "-"
            rows = "-" if name.startswith("floor") else f"{r[0]['rows_out']:,}"
            lines.append(f"| {fmt} | {fraction:.0%} | {name} | {sec:.1f} | {lo:.1f}-{hi:.1f} | "
                         f"{n_events / sec:,.0f} | {versus} | {cpu:.0f} | {cpu_versus} | {rows} |")
    return lines


def paired_ratio(runs: List[Dict], base: List[Dict], key: str) -> float:
    """The median of the rounds' ratios: round i of `runs` against round i of `base`."""
    return statistics.median(r[key] / b[key] for r, b in zip(runs, base))


def ratio(results: Dict, fmt: str, fraction: float, name: str = "idstore", base: str = BASELINE) -> Optional[float]:
    runs = results.get((fmt, fraction), {})
    if not runs.get(name) or not runs.get(base):
        return None
    return paired_ratio(runs[name], runs[base], "seconds")


def verdicts(results: Dict) -> List[str]:
    """The issue's targets, on wall time against the hand-written join (median of the rounds' ratios)."""
    lines = []
    for fmt, limit in (("json.gz", 0.80), ("parquet", 1.00)):
        for fraction in sorted({f for (m, f) in results if m == fmt}):
            value = ratio(results, fmt, fraction)
            if value is not None:
                lines.append(f"{fmt} at {fraction:.0%}: idstore/hand-written join {value:.2f}x, target <= "
                             f"{limit:.2f}x: " + ("met" if value <= limit else "MISSED"))
    for fraction in sorted({f for (m, f) in results if m == "json.gz-wide"}):
        # Spark packs the untuned join's scan by archive size (128 MB splits): the narrow archive
        # can get an odd task count on 2 cores and the wide one not, which moves that ratio as
        # much as the width does; the join with idstore's split has the same layout on both
        for base in (BASELINE, TUNED):
            wide, narrow = (ratio(results, fmt, fraction, base=base) for fmt in ("json.gz-wide", "json.gz"))
            if wide is None or narrow is None:
                continue
            if base == BASELINE:
                lines.append(f"json.gz, 20 fields in detail, at {fraction:.0%}: idstore/hand-written join "
                             f"{wide:.2f}x against {narrow:.2f}x on the narrow schema, target: better: "
                             + ("met" if wide < narrow else "MISSED"))
            else:
                lines.append("  the same against the join with idstore's scan split (one task layout on both "
                             f"archives): {wide:.2f}x against {narrow:.2f}x: "
                             + ("better" if wide < narrow else "not better"))
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4_000_000, help="events in the archive (default 4,000,000)")
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--ids", type=int, default=1_000_000, help="ids in the set (default 1,000,000)")
    parser.add_argument("--fractions", default="0.03,0.1", help="fractions of events whose id is in the set")
    parser.add_argument("--files-per-day", type=int, default=4)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--wide-fractions", default="0.03,0.1",
                        help="fractions run on the wide json.gz archive (default 0.03,0.1)")
    parser.add_argument("--contenders", default="|".join(DEFAULT_CONTENDERS),
                        help="'|'-separated, of: " + ", ".join(CONTENDERS))
    parser.add_argument("--driver-memory", default="3g")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds after the warm-up round (json.gz)")
    parser.add_argument("--parquet-repeat", type=int, default=7,
                        help="timed rounds after the warm-up round (parquet: short runs, more noise)")
    parser.add_argument("--run-session", help=argparse.SUPPRESS)  # formats, comma-separated
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    contenders = [c for c in args.contenders.split("|") if c]

    if args.run_session:
        runs = run_session(args.run_session.split(","), Path(args.data), Path(args.out), contenders, args.repeat)
        print(RESULT_PREFIX + json.dumps(runs), flush=True)
        return 0

    began = time.monotonic()
    load = os.getloadavg()[0]
    results: Dict = {}
    fractions = [float(f) for f in args.fractions.split(",")]
    wide_fractions = [float(f) for f in args.wide_fractions.split(",") if f]
    for fraction in fractions:
        data = ensure_data(args.events, args.days, args.ids, fraction, args.files_per_day)
        formats = [f for f in args.formats.split(",") if f != "json.gz-wide" or fraction in wide_fractions]
        # the json.gz archives share a JVM and its rounds; Parquet, with its own count of rounds, runs apart
        for group in ([f for f in formats if f != "parquet"], [f for f in formats if f == "parquet"]):
            if not group:
                continue
            print(f"bench-filter: {' and '.join(group)}, {fraction:.0%} in the set ...", flush=True)
            repeat = args.parquet_repeat if group == ["parquet"] else args.repeat
            for fmt, runs in measure(group, data, contenders, repeat, args.driver_memory).items():
                results[(fmt, fraction)] = runs
    ordered = dict(sorted(results.items(), key=lambda kv: (FORMATS.index(kv[0][0]), kv[0][1])))
    header = (
        f"bench-filter: {args.events:,} events over {args.days} days ({args.files_per_day} files a day), "
        f"{args.ids:,} ids; local[2], driver {args.driver_memory}, {os.cpu_count()} CPUs, load average "
        f"{load:.1f} at start, {os.getloadavg()[0]:.1f} at the end; one warm JVM per fraction for the json.gz "
        "archives (narrow and wide in the same rounds) and one for Parquet, "
        f"{args.repeat} alternating rounds (parquet: {args.parquet_repeat}) after a warm-up round; seconds are "
        "medians, ratios the median of the rounds' own ratios"
    )
    lines = [header, "", *table(ordered, args.events), "", *verdicts(ordered)]
    print("\n" + "\n".join(lines))
    RESULTS.mkdir(exist_ok=True)
    command = "make bench-filter" if argv is None and len(sys.argv) == 1 else "benchmarks/bench_filter.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    rounds = [{"format": fmt, "fraction": fraction, "contender": name, "rounds": runs[name]}
              for (fmt, fraction), runs in ordered.items() for name in runs]
    (RESULTS / "bench-filter.json").write_text(json.dumps(rounds, indent=1) + "\n")
    (RESULTS / "bench-filter.md").write_text(
        "# bench-filter\n\n"
        f"`{command}`, {time.strftime('%Y-%m-%d %H:%M')}, whole run {time.monotonic() - began:.0f} s.\n\n"
        + "\n".join(lines) + "\n"
    )
    print(f"\nwritten: {(RESULTS / 'bench-filter.md').relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
