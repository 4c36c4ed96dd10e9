"""The local stack for the demo and the tests: throwaway PostgreSQL plus a moto server.

`LocalStack` runs them in-process; `idstore local up|down|status|seed` runs them detached.
"""

from idstore_tools.local.stack import (
    LocalStack,
    StackError,
    StackInfo,
    StackState,
    connect_postgres,
    create_id_table,
    reset_moto,
    store_source_secret,
    write_local_config,
)

__all__ = [
    "LocalStack",
    "StackError",
    "StackInfo",
    "StackState",
    "connect_postgres",
    "create_id_table",
    "reset_moto",
    "store_source_secret",
    "write_local_config",
]
