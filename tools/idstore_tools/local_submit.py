"""spark-submit of the jobs on this machine, exactly as an EMR step runs them, bar the master.

Used by `make demo`, the integration tests and the benchmarks.
"""
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
JOBS = {"sync": REPO / "jobs" / "sync_product_ids.py", "filter": REPO / "jobs" / "filter_failure_events.py"}
JDBC_JAR = Path("/usr/share/java/postgresql.jar")


def local_spark_conf() -> Dict[str, str]:
    """What a local run needs that EMR provides: this Python on the workers, the JDBC jar."""
    conf = {
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.driver.extraJavaOptions": f"-Dlog4j.configurationFile={REPO / 'conf' / 'log4j2.properties'}",
    }
    if JDBC_JAR.exists():
        conf["spark.jars"] = str(JDBC_JAR)
    return conf


def spark_submit_command(job: str, args: Sequence[str], master: str = "local[2]",
                         spark_conf: Optional[Mapping[str, str]] = None) -> List[str]:
    conf = {**local_spark_conf(), **(spark_conf or {})}
    command = [str(Path(sys.executable).parent / "spark-submit"), "--master", master]
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    return command + [str(JOBS[job]), *args]


def spark_submit(job: str, args: Sequence[str], env: Optional[Mapping[str, str]] = None,
                 master: str = "local[2]", spark_conf: Optional[Mapping[str, str]] = None,
                 timeout: float = 900, capture: bool = True) -> subprocess.CompletedProcess:
    environ: Dict[str, str] = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",  # local runs stay on loopback
        **(env or {}),
    }
    return subprocess.run(
        spark_submit_command(job, args, master, spark_conf),
        env=environ, cwd=str(REPO), timeout=timeout, text=True,
        capture_output=capture,
    )
