"""A real PostgreSQL (and moto's Secrets Manager) for the source readers."""
import os

import pytest

from idstore.local.stack import LocalStack, connect_postgres

# Spark's Python workers inherit the environment of the JVM: set before any session starts.
for _key, _value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1"}.items():
    os.environ.setdefault(_key, _value)


@pytest.fixture(scope="session")
def source_stack():
    with LocalStack() as info:
        yield info


@pytest.fixture
def source_pg(source_stack):
    conn = connect_postgres(source_stack)
    conn.autocommit = True
    yield conn
    conn.close()
