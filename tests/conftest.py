"""Shared fixtures: one local SparkSession and one local stack for the suite."""
import os
import sys

import pytest

from idstore_tools.local.stack import MOTO_ENV
from idstore_tools.local_submit import jdbc_driver_jars

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # local Spark stays on loopback
# Every JVM of the suite (the session's, each spark-submit's) lives for seconds on tiny data:
# the C2 compiler's threads and G1's would take about half of the suite's CPU for code that
# never runs long enough to repay them. Tests only: jobs and benchmarks keep the JVM defaults.
os.environ.setdefault("JDK_JAVA_OPTIONS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
# moto takes any credentials; Spark's Python workers inherit the JVM's environment,
# so these are set before any session starts.
for _key, _value in MOTO_ENV.items():
    os.environ.setdefault(_key, _value)


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("idstore-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.pyspark.python", sys.executable)
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        # the two JDBC drivers only: the suite reads its stack through the Redshift driver
        .config("spark.jars", jdbc_driver_jars())
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def local_stack():
    """One local stack (PostgreSQL behind pgbouncer + moto server) for every test that needs one."""
    from idstore_tools.local.stack import LocalStack

    running = LocalStack()
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def stack(local_stack):
    """How to reach the suite's stack (a StackInfo)."""
    return local_stack.info


@pytest.fixture
def pg(stack):
    """A connection to the stack's PostgreSQL, autocommit."""
    from idstore_tools.local.stack import connect_postgres

    conn = connect_postgres(stack)
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def moto_endpoint():
    """An in-process moto server over HTTP, for tests that need AWS but not the whole stack."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
