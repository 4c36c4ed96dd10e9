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
# `make jars` (scripts/fetch-jars.sh) puts the pinned jars of jvm/pom.xml here, checksummed
JARS_DIR = REPO / ".jars"
REDSHIFT_DRIVER = "com.amazon.redshift.jdbc.Driver"

# s3:// as on EMR, where EMRFS serves it: here S3A (hadoop-aws) does, against moto. Only the
# endpoint differs between stacks, and the job takes it from the config's aws.endpoint_url
# (idstore.spark.session_conf); the keys come from the environment (moto takes any), never
# from the Spark conf.
S3A_CONF = {
    "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
    "spark.hadoop.fs.AbstractFileSystem.s3.impl": "org.apache.hadoop.fs.s3a.S3A",
    "spark.hadoop.fs.s3a.path.style.access": "true",
    "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
    "spark.hadoop.fs.s3a.aws.credentials.provider": "com.amazonaws.auth.EnvironmentVariableCredentialsProvider",
    # moto answers at once: a dead endpoint should fail a local run quickly, not after 20 retries
    "spark.hadoop.fs.s3a.attempts.maximum": "3",
    "spark.hadoop.fs.s3a.retry.limit": "3",
}


class MissingJarsError(RuntimeError):
    """The pinned jars are not in .jars/: `make jars` fetches them."""


def job_jars() -> List[Path]:
    """The jars a job needs here that EMR has on its classpath: S3A + AWS SDK, the Redshift
    driver (from .jars/jobs) and Debian's PostgreSQL driver."""
    jars = sorted((JARS_DIR / "jobs").glob("*.jar"))
    if JDBC_JAR.exists():
        jars.append(JDBC_JAR)
    return jars


def redshift_driver_jar() -> Path:
    """The pinned Redshift JDBC driver (com.amazon.redshift.jdbc.Driver) from .jars/jobs."""
    found = [jar for jar in require_jars("jobs") if jar.name.startswith("redshift-jdbc42-")]
    if not found:
        raise MissingJarsError(f"no redshift-jdbc42-*.jar in {JARS_DIR / 'jobs'}: run `make jars`")
    return found[0]


def jdbc_driver_jars() -> str:
    """spark.jars for an in-process session that reads the local stack: both JDBC drivers.

    Every session a test process starts must name the same jars: a later session in the same
    JVM cannot add a jar to the driver's class path, only the first one's spark.jars count.
    """
    return f"{JDBC_JAR},{redshift_driver_jar()}"


def peer_jars() -> List[Path]:
    """The benchmark peers: the EMR DynamoDB connector and spark-dynamodb (with their SDKs)."""
    return sorted((JARS_DIR / "peers").glob("*.jar"))


def require_jars(kind: str = "jobs") -> List[Path]:
    """The jars of `kind`, or a MissingJarsError that says how to fetch them."""
    jars = sorted((JARS_DIR / kind).glob("*.jar"))
    if not jars:
        raise MissingJarsError(f"no jars in {JARS_DIR / kind}: run `make jars` (scripts/fetch-jars.sh)")
    return jars


def local_spark_conf(extra_jars: Sequence[Path] = ()) -> Dict[str, str]:
    """What a local run needs that EMR provides: this Python on the workers, the jars, s3:// on S3A."""
    conf = {
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4",
        "spark.driver.extraJavaOptions": f"-Dlog4j.configurationFile={REPO / 'conf' / 'log4j2.properties'}",
    }
    jars = [*job_jars(), *extra_jars]
    if jars:
        # On the JVM's own class path, as on EMR: spark.jars would copy the 280 MB SDK bundle
        # into every local run's work dir. Driver and executors are one JVM on local[N].
        class_path = ":".join(str(jar) for jar in jars)
        conf["spark.driver.extraClassPath"] = class_path
        conf["spark.executor.extraClassPath"] = class_path
    if (JARS_DIR / "jobs").is_dir():
        conf.update(S3A_CONF)
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
