"""The writers people pick instead of idstore, against bench_write.py's capacity emulator.

    make bench-write                                       # bench_write.py, then this
    .venv/bin/python benchmarks/bench_write_peers.py --ids 100000     # a quick run

Same emulator (its own process: --rate WCU/s with a 1 s burst, --latency-ms per call), same
ids, same budget, measured the same way (bench_write.run_contender: the emulator's per-second
WCU series, its throttle count, the ids read back), plus the CPU seconds the client side spent
per million items (this process, the Spark JVM and its Python workers; the emulator apart):

  EMR DynamoDB connector   emr-dynamodb-hadoop's DynamoDBOutputFormat through
                           saveAsHadoopDataset and a JobConf, as Data Pipeline's "Import DynamoDB
                           backup data from S3" runs it: dynamodb.throughput.write.percent,
                           dynamodb.throughput.write (the budget), dynamodb.endpoint = the emulator
  spark-dynamodb           audienceproject's data source: .write.format("dynamodb") with its
                           throughput option; the endpoint from the aws.dynamodb.endpoint property

Each runs the way its documentation shows; where one fails, the row says how far it got (the
ids the table holds) and why. The jars are the pinned ones of jvm/pom.xml (`make jars`).
A benchmark, not a test: it prints what it measured and asserts nothing.
"""
import argparse
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import bench_write as bw  # beside this file: the emulator, the ids and the measurement

from idstore_tools.local_submit import job_jars, require_jars

ITEMS_PER_PARTITION = 50_000  # as bench_write's idstore contender (the sync job's partitioning)

# PySpark hands Python objects to a Hadoop OutputFormat through Converter classes (JVM side):
# these make the (key, id) pairs the Text and DynamoDBItemWritable DynamoDBOutputFormat takes.
CONVERTERS_JAVA = """
package idstore.bench;

import java.util.Collections;
import org.apache.hadoop.dynamodb.DynamoDBItemWritable;
import org.apache.hadoop.io.Text;
import org.apache.spark.api.python.Converter;
import software.amazon.awssdk.services.dynamodb.model.AttributeValue;

public class PeerConverters {
    public static class KeyToText implements Converter<Object, Object> {
        public Object convert(Object key) { return new Text(String.valueOf(key)); }
    }

    public static class IdToItem implements Converter<Object, Object> {
        public Object convert(Object id) {
            return new DynamoDBItemWritable(Collections.singletonMap(
                "%(key)s", AttributeValue.builder().s(String.valueOf(id)).build()));
        }
    }
}
"""


def converters_jar(work: Path, class_path: List[Path]) -> Path:
    """Compile the two converters (javac) into a jar beside the benchmark's results."""
    source = work / "src" / "idstore" / "bench" / "PeerConverters.java"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(CONVERTERS_JAVA % {"key": bw.KEY})
    classes = work / "classes"
    classes.mkdir(exist_ok=True)
    subprocess.run(["javac", "-nowarn", "-cp", ":".join(str(p) for p in class_path), "-d", str(classes), str(source)],
                   check=True, capture_output=True, text=True)
    jar = work / "idstore-bench-converters.jar"
    with zipfile.ZipFile(jar, "w") as out:
        for path in sorted(classes.rglob("*.class")):
            out.write(path, path.relative_to(classes).as_posix())
    return jar


# ---------------------------------------------------------------- the peers

def _id_pairs(n: int, partitions: int, spark):
    return (spark.range(n, numPartitions=partitions).rdd
            .map(lambda row: ("", "B%09d" % row.id)))


def emr_dynamodb_connector(endpoint: str, n: int, spark, rate: float, yarn: bool = True) -> None:
    """DynamoDBOutputFormat with a JobConf, as the EMR connector's README writes from Spark.

    yarn=False sets dynamodb.yarn.enabled=false: the connector then does not size its tasks from
    the YARN cluster's node memory (EMR's job-flow information, absent off EMR).
    """
    partitions = max(2, -(-n // ITEMS_PER_PARTITION))
    job_conf = {
        "mapred.output.format.class": "org.apache.hadoop.dynamodb.write.DynamoDBOutputFormat",
        "mapred.output.key.class": "org.apache.hadoop.io.Text",
        "mapred.output.value.class": "org.apache.hadoop.dynamodb.DynamoDBItemWritable",
        "dynamodb.output.tableName": bw.TABLE,
        "dynamodb.endpoint": endpoint,
        "dynamodb.region": bw.REGION,
        "dynamodb.regionid": bw.REGION,
        # the table's budget stated as its WCU, all of it for this job (Data Pipeline's ratio)
        "dynamodb.throughput.write": str(int(rate)),
        "dynamodb.throughput.write.percent": "1.0",
    }
    if not yarn:
        job_conf["dynamodb.yarn.enabled"] = "false"
    _id_pairs(n, partitions, spark).saveAsHadoopDataset(
        job_conf,
        keyConverter="idstore.bench.PeerConverters$KeyToText",
        valueConverter="idstore.bench.PeerConverters$IdToItem",
    )


def spark_dynamodb(endpoint: str, n: int, spark, rate: float) -> None:
    """audienceproject's spark-dynamodb: .write.format("dynamodb") with its throughput option."""
    from pyspark.sql import functions as F

    jvm = spark.sparkContext._jvm
    # its documented way to a local endpoint (DynamoDB Local in its own tests); one JVM on local[N]
    jvm.java.lang.System.setProperty("aws.dynamodb.endpoint", endpoint)
    jvm.java.lang.System.setProperty("aws.dynamodb.region", bw.REGION)
    partitions = max(2, -(-n // ITEMS_PER_PARTITION))
    df = spark.range(n, numPartitions=partitions).select(F.format_string("B%09d", "id").alias(bw.KEY))
    (df.write.format("dynamodb")
     .option("tableName", bw.TABLE)
     .option("region", bw.REGION)
     .option("throughput", str(int(rate)))
     .mode("append")
     .save())


PEERS: Dict[str, Callable[[str, int, Any, float], None]] = {
    "EMR DynamoDB connector (DynamoDBOutputFormat, Data Pipeline's import)": emr_dynamodb_connector,
    "EMR DynamoDB connector, dynamodb.yarn.enabled=false": (
        lambda endpoint, n, spark, rate: emr_dynamodb_connector(endpoint, n, spark, rate, yarn=False)),
    "spark-dynamodb (.write.format(\"dynamodb\"))": spark_dynamodb,
}


# ---------------------------------------------------------------- measuring

def _proc_cpu(pid: int) -> float:
    """utime + stime of a live process and of its children it has waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> List[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        found += [int(c) for c in children]
        todo += [int(c) for c in children]
    return found


def client_cpu_seconds(jvm_pid: int) -> Dict[int, float]:
    """CPU seconds so far per process of the client side: this process, the JVM and its Python workers."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    cpu = {os.getpid(): own.ru_utime + own.ru_stime}
    for pid in [jvm_pid, *_descendants(jvm_pid)]:
        cpu[pid] = _proc_cpu(pid)
    return cpu


def run_peer(name: str, body, emulator: "bw.Emulator", n: int, rate: float, spark, jvm_pid: int) -> Dict[str, Any]:
    """bench_write's measurement of one peer; a peer that fails is measured as far as it got."""
    failure: List[str] = []

    def guarded():
        try:
            body(emulator.url, n, spark, rate)
        except Exception as exc:  # noqa: BLE001 - a peer's failure is a result to report
            failure.append(_reason(exc))
            logging.getLogger("bench-write-peers").warning("%s failed: %s", name, failure[0])

    before = client_cpu_seconds(jvm_pid)
    result = bw.run_contender(name, emulator, n, rate, guarded)
    after = client_cpu_seconds(jvm_pid)
    cpu = sum(after[pid] - before.get(pid, 0.0) for pid in after)
    result["client_cpu_s"] = round(cpu, 1)
    result["client_cpu_s_per_million"] = round(cpu * 1_000_000 / n, 1)
    result["stored"] = n - result["items_lost"]
    result["status"] = "completed" if not failure else f"FAILED: {failure[0]}"
    if failure:  # what it wrote before it failed, not the ids it was given
        result["items_per_s"] = round(result["stored"] / result["seconds"]) if result["seconds"] else 0
    return result


def _reason(exc: BaseException) -> str:
    """The innermost JVM cause of a Py4J/Spark error, else the Python exception, on one line."""
    text = str(exc)
    java = getattr(exc, "java_exception", None)
    if java is not None:
        cause = java
        while cause.getCause() is not None:
            cause = cause.getCause()
        text = f"{cause.getClass().getName()}: {cause.getMessage()}"
    elif not text:
        text = "".join(traceback.format_exception_only(type(exc), exc))
    return " ".join(text.split())[:400]


def table(results: List[Dict[str, Any]], rate: float, latency_ms: float) -> str:
    head = (f"peers, {results[0]['ids'] if results else 0:,} ids each into the capacity emulator: {rate:,.0f} WCU/s "
            f"budget, {latency_ms:g} ms per call, local[2] on {os.cpu_count()} cores")
    lines = [head, "",
             "| contender | ids | items/s (overall) | items/s (steady) | % of budget (steady) | throttled calls "
             "| items lost | client CPU s per 1M items | status |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        lines.append(
            f"| {r['contender']} | {r['ids']:,} | {r['items_per_s']:,} | {r['steady_items_per_s']:,} "
            f"| {r['steady_budget_pct']:.1f}% | {r['throttled_pct']:.2f}% ({r['throttled_calls']:,} of {r['calls']:,}) "
            f"| {r['items_lost']:,} | {r['client_cpu_s_per_million']:,.1f} | {r['status']} |")
    return "\n".join(lines)


def peer_session(work: Path):
    """local[2]: the jobs' jars on the JVM's class path, the peers' jars and the converters in
    spark.jars (after Spark's own classes: emr-dynamodb-hadoop is a fat jar carrying old copies
    of commons-lang3, jackson and netty, which must not shadow Spark's)."""
    import pyspark
    from pyspark.sql import SparkSession

    peers = require_jars("peers")
    spark_jars = sorted((Path(pyspark.__file__).parent / "jars").glob("*.jar"))
    converters = converters_jar(work, [*spark_jars, *job_jars(), *peers])
    joined = ":".join(str(p) for p in job_jars())
    spark = (
        SparkSession.builder.master("local[2]").appName("bench-write-peers")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.pyspark.python", sys.executable)
        .config("spark.driver.extraClassPath", joined)
        .config("spark.executor.extraClassPath", joined)
        .config("spark.jars", ",".join(str(p) for p in [*peers, converters]))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", type=int, default=1_000_000, help="ids each peer writes (default 1,000,000)")
    parser.add_argument("--rate", type=float, default=10_000.0, help="the table's budget, WCU/s")
    parser.add_argument("--latency-ms", type=float, default=10.0, help="the emulator's latency per call")
    parser.add_argument("--only", action="append", choices=sorted(k.split(" ")[0] for k in PEERS),
                        help="run only this peer (EMR or spark-dynamodb; repeatable)")
    parser.add_argument("--out", type=Path, default=bw.RESULTS)
    args = parser.parse_args(argv)
    os.environ.update(bw.CREDENTIALS)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # Spark's Python workers unpickle bench_write's functions by reference: let them import it
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    logging.basicConfig(level=logging.WARNING, format="   %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)

    work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    spark = peer_session(work)
    jvm_pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
    bw.warm_up(spark)
    emulator = bw.Emulator(args.rate, args.latency_ms)
    results = []
    started = time.monotonic()
    try:
        for name, body in PEERS.items():
            if args.only and name.split(" ")[0] not in args.only:
                continue
            results.append(run_peer(name, body, emulator, args.ids, args.rate, spark, jvm_pid))
    finally:
        emulator.stop()
        spark.stop()

    bw.save_results(args.out, "bench-write-peers", table(results, args.rate, args.latency_ms),
                    {"rate_wcu": args.rate, "latency_ms": args.latency_ms, "cores": os.cpu_count(),
                     "seconds": round(time.monotonic() - started),
                     "jars": [p.name for p in require_jars("peers")], "results": results})
    print(f"\nwrote {args.out / 'bench-write-peers.md'} and {args.out / 'bench-write-peers.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
