"""A real PostgreSQL (and moto's Secrets Manager) for the source readers."""
import pytest

from idstore.local.stack import connect_postgres


@pytest.fixture(scope="session")
def source_stack(stack):
    return stack


@pytest.fixture
def source_pg(source_stack):
    conn = connect_postgres(source_stack)
    conn.autocommit = True
    yield conn
    conn.close()
