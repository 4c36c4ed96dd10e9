"""Shared fixtures: one local SparkSession and one local stack for the suite."""
import json
import os
import re
import sys

import pytest
from botocore.session import get_session
from botocore.validate import validate_parameters

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


@pytest.fixture(scope="session")
def valid_request():
    """valid_request(service, operation, params): botocore's own parameter validation, against
    the service model it ships; raises ParamValidationError naming every problem."""
    session = get_session()

    def check(service: str, operation: str, params) -> None:
        model = session.get_service_model(service).operation_model(operation)
        params = json.loads(json.dumps(params))
        validate_parameters(params, model.input_shape)
        problems = list(_model_limits(params, model.input_shape, operation))
        assert not problems, "\n".join(problems)

    return check

def _model_limits(value, shape, where):
    """What ParamValidator leaves out: enum members and maximum lengths of the same model."""
    if shape.type_name == "structure" and isinstance(value, dict):
        for name, member in value.items():
            if name in shape.members:
                yield from _model_limits(member, shape.members[name], f"{where}.{name}")
    elif shape.type_name == "list" and isinstance(value, list):
        for index, item in enumerate(value):
            yield from _model_limits(item, shape.member, f"{where}[{index}]")
    elif shape.type_name == "map" and isinstance(value, dict):
        for key, item in value.items():
            yield from _model_limits(key, shape.key, f"{where} key")
            yield from _model_limits(item, shape.value, f"{where}[{key}]")
    elif shape.type_name == "string" and isinstance(value, str):
        if shape.enum and value not in shape.enum:
            yield f"{where}: {value!r} is not one of {shape.enum}"
        maximum = shape.metadata.get("max")
        if maximum is not None and len(value) > maximum:
            yield f"{where}: {len(value)} characters, more than {maximum}"
        pattern = _python_pattern(shape.metadata.get("pattern"))
        if pattern and not pattern.fullmatch(value):
            yield f"{where}: {value!r} does not match {pattern.pattern}"
    elif shape.type_name in ("integer", "long") and isinstance(value, int):
        maximum = shape.metadata.get("max")
        if maximum is not None and value > maximum:
            yield f"{where}: {value} is more than {maximum}"

def _python_pattern(pattern):
    """The model's (Java) regex, when Python reads it the same way; else None."""
    if not pattern:
        return None
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error:
        return None
