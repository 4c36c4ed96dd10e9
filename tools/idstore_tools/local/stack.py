"""The local stack: a throwaway PostgreSQL behind pgbouncer (the Redshift stand-in) and a moto server.

Used by the demo, `idstore local up|down` and the tests; all bind 127.0.0.1 on free ports.
pgbouncer is what lets the real Redshift JDBC driver log in (see PGBOUNCER_IGNORED_PARAMETERS).
"""

import atexit
import hashlib
import http.client
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

log = logging.getLogger(__name__)

REGION = "us-east-1"
SECRET_ID = "idstore/local-source"
PG_USER = "idstore"
PG_DATABASE = "idstore"
TABLE = "IdentifierStore"
KEY_ATTRIBUTE = "product_id"
# moto accepts any credentials; passing these explicitly means nothing depends on the caller's env.
MOTO_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# the same, as the environment of a process (spark-submit, Spark's Python workers) that talks to moto
MOTO_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
# the bucket `idstore local up` and the demo keep the config, the events and every output in
LOCAL_BUCKET = "idstore-local"
# initdb, postgres and pgbouncer refuse to run as root; this user runs them then.
UNPRIVILEGED_USER = "nobody"
# The startup parameters the Redshift JDBC driver (2.1) always sends. PostgreSQL refuses a
# connection that names a parameter it does not know; pgbouncer drops these before they reach it.
# That is all pgbouncer does here: it does not emulate Redshift, it lets its driver talk to PostgreSQL.
PGBOUNCER_IGNORED_PARAMETERS = (
    "extra_float_digits", "driver_version", "os_version", "client_protocol_version", "client_type",
    "application_type", "pluginName", "compression", "geometry_mode",
)

_STOP_TIMEOUT_S = 15.0


class StackError(RuntimeError):
    """The local stack could not start (the message carries the relevant log tail)."""


@dataclass(frozen=True)
class StackInfo:
    """How to reach a running stack. The password never shows in repr or logs."""

    pg_host: str
    pg_port: int
    pg_database: str
    pg_user: str
    pg_password: str = field(repr=False)
    bouncer_port: int = 0
    moto_endpoint: str = ""
    region: str = REGION
    secret_id: str = SECRET_ID

    @property
    def jdbc_url(self) -> str:
        """The source as local runs read it: the Redshift driver, through pgbouncer.

        `ssl=false` in the config, not here: pgbouncer speaks no TLS to its clients.
        """
        return f"jdbc:redshift://{self.pg_host}:{self.bouncer_port}/{self.pg_database}"

    @property
    def postgres_jdbc_url(self) -> str:
        """PostgreSQL itself, through its own driver (a user may point idstore at PostgreSQL)."""
        return f"jdbc:postgresql://{self.pg_host}:{self.pg_port}/{self.pg_database}"


@dataclass(frozen=True)
class StackState:
    """What `stop` needs: pids, ports and directories. Holds no secret; saved as stack.json."""

    work_dir: str
    owns_work_dir: bool
    pg_data_dir: str = ""
    pg_port: int = 0
    moto_port: int = 0
    pg_pid: int = 0
    moto_pid: int = 0
    bouncer_port: int = 0
    bouncer_pid: int = 0
    bouncer_dir: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StackState":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class LocalStack:
    """Starts PostgreSQL, pgbouncer and moto; `with LocalStack() as info:` stops them on exit.

    `start()` returns a StackInfo; `stop()` is idempotent, also cleans up after a start
    that failed half-way, and works on a stack started by another process
    (`LocalStack.from_state`), since `idstore local up` exits while the servers run on.
    Without `work_dir` everything lives in a fresh temp dir that `stop()` removes; with
    one, only its pgdata is removed, and as root `nobody` must be able to reach it.
    """

    def __init__(
        self,
        work_dir: Optional[Union[str, Path]] = None,
        pg_port: int = 0,
        moto_port: int = 0,
        bouncer_port: int = 0,
        pg_bin: Optional[Union[str, Path]] = None,
        stop_at_exit: bool = True,
        startup_timeout_s: float = 60.0,
    ) -> None:
        self._requested_work_dir = Path(work_dir) if work_dir is not None else None
        self._requested_pg_port = pg_port
        self._requested_moto_port = moto_port
        self._requested_bouncer_port = bouncer_port
        self._pg_bin = Path(pg_bin) if pg_bin is not None else None
        self._stop_at_exit = stop_at_exit
        self._startup_timeout_s = startup_timeout_s
        self._state: Optional[StackState] = None
        self._info: Optional[StackInfo] = None
        self._procs: Dict[int, subprocess.Popen] = {}
        self._atexit_registered = False

    @classmethod
    def from_state(cls, state: StackState) -> "LocalStack":
        """A handle on a stack started elsewhere (from stack.json), for `stop()`."""
        stack = cls(stop_at_exit=False)
        stack._state = state
        return stack

    @property
    def state(self) -> Optional[StackState]:
        return self._state

    @property
    def info(self) -> Optional[StackInfo]:
        return self._info

    def __enter__(self) -> StackInfo:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> StackInfo:
        if self._state is not None:
            raise StackError("this LocalStack was already started; use a new one")
        if self._stop_at_exit:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            return self._start()
        except BaseException:
            # Whatever got started so far must not outlive the failure.
            self.stop()
            raise

    def _start(self) -> StackInfo:
        if self._requested_work_dir is None:
            work_dir = Path(tempfile.mkdtemp(prefix="idstore-local-"))
            owns = True
        else:
            work_dir = self._requested_work_dir.resolve()
            work_dir.mkdir(parents=True, exist_ok=True)
            owns = False
        self._state = StackState(work_dir=str(work_dir), owns_work_dir=owns)
        run_as = _unprivileged_user()
        if run_as is not None and owns:
            # mkdtemp made it 0700 root; the cluster's owner must reach pgdata inside.
            os.chown(work_dir, run_as.pw_uid, run_as.pw_gid)
        pg_bin = self._pg_bin or find_pg_bin()
        password = secrets.token_urlsafe(24)

        # moto takes a few seconds to import; let it boot while initdb runs.
        moto_port = self._requested_moto_port or free_port()
        moto = self._spawn(_moto_command(moto_port), work_dir / "moto.log", cwd=work_dir)
        self._state = _replace(self._state, moto_port=moto_port, moto_pid=moto.pid)
        endpoint = f"http://127.0.0.1:{moto_port}"

        pg_data = work_dir / "pgdata"
        self._state = _replace(self._state, pg_data_dir=str(pg_data))
        _init_postgres(pg_bin, pg_data, password, run_as)
        pg_port = self._requested_pg_port or free_port()
        postgres = self._spawn(
            _postgres_command(pg_bin, pg_data, pg_port),
            work_dir / "postgres.log",
            cwd=work_dir,
            run_as=run_as,
        )
        self._state = _replace(self._state, pg_port=pg_port, pg_pid=postgres.pid)

        bouncer_dir = work_dir / "pgbouncer"
        bouncer_port = self._requested_bouncer_port or free_port()
        bouncer_ini = _write_pgbouncer_config(bouncer_dir, pg_port, bouncer_port, password, run_as)
        self._state = _replace(self._state, bouncer_dir=str(bouncer_dir))
        deadline = time.monotonic() + self._startup_timeout_s
        info = StackInfo(
            pg_host="127.0.0.1",
            pg_port=pg_port,
            pg_database=PG_DATABASE,
            pg_user=PG_USER,
            pg_password=password,
            bouncer_port=bouncer_port,
            moto_endpoint=endpoint,
        )
        _wait_for_postgres(info, postgres, work_dir / "postgres.log", deadline)
        bouncer = self._spawn(
            [find_pgbouncer(), str(bouncer_ini)], bouncer_dir / "pgbouncer.log", cwd=bouncer_dir, run_as=run_as
        )
        self._state = _replace(self._state, bouncer_port=bouncer_port, bouncer_pid=bouncer.pid)
        _wait_for_moto(endpoint, moto, work_dir / "moto.log", deadline)
        _wait_for_postgres(info, bouncer, bouncer_dir / "pgbouncer.log", deadline, port=bouncer_port)
        install_fnv_hash(info)
        store_source_secret(info)
        self._info = info
        log.info(
            "local stack up: postgres %s (pid %d), pgbouncer %s (pid %d), moto %s (pid %d), work dir %s",
            info.postgres_jdbc_url,
            postgres.pid,
            info.jdbc_url,
            bouncer.pid,
            endpoint,
            moto.pid,
            work_dir,
        )
        return info

    def _spawn(
        self,
        command: List[str],
        log_path: Path,
        cwd: Path,
        run_as: Optional[pwd.struct_passwd] = None,
    ) -> subprocess.Popen:
        user_args: Dict[str, Any] = {}
        if run_as is not None:
            user_args = {"user": run_as.pw_uid, "group": run_as.pw_gid, "extra_groups": []}
        with open(log_path, "ab") as log_file:
            # A session of its own: the server outlives the CLI that started it, and
            # its whole process group (postgres backends) can be signalled at once.
            # No inherited stdout: a caller capturing output would otherwise never see EOF.
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=str(cwd),
                start_new_session=True,
                **user_args,
            )
        self._procs[proc.pid] = proc
        return proc

    def stop(self) -> None:
        """Stop the servers, remove the temp data; safe to call twice or after a failed start."""
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False
        state = self._state
        if state is None:
            return
        if state.bouncer_pid:
            # SIGINT: a safe shutdown that waits for nothing (its clients are gone or expendable)
            _stop_process(
                state.bouncer_pid, self._procs.get(state.bouncer_pid), signal.SIGINT, marker=state.bouncer_dir
            )
        if state.pg_pid:
            _stop_process(
                state.pg_pid, self._procs.get(state.pg_pid), signal.SIGINT, marker=state.pg_data_dir
            )
        if state.moto_pid:
            _stop_process(
                state.moto_pid, self._procs.get(state.moto_pid), signal.SIGTERM, marker="moto"
            )
        if state.owns_work_dir:
            shutil.rmtree(state.work_dir, ignore_errors=True)
        else:
            for folder in (state.pg_data_dir, state.bouncer_dir):
                if folder:
                    shutil.rmtree(folder, ignore_errors=True)
        self._procs.clear()
        self._state = None
        self._info = None
        log.info(
            "local stack stopped; removed %s",
            state.work_dir if state.owns_work_dir else state.pg_data_dir,
        )


def find_pg_bin() -> Path:
    """The newest /usr/lib/postgresql/N/bin, else the directory of `postgres`/`initdb` on PATH."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1,
        reverse=True,
    )
    for name in ("postgres", "initdb"):
        found = shutil.which(name)
        if found:
            candidates.append(Path(os.path.realpath(found)).parent)
    for candidate in candidates:
        if (candidate / "postgres").is_file() and (candidate / "initdb").is_file():
            return candidate
    raise StackError("PostgreSQL binaries (initdb, postgres) not found; install postgresql")


def find_pgbouncer() -> str:
    """pgbouncer's binary (Debian installs it in /usr/sbin, which a user's PATH may lack)."""
    for candidate in (shutil.which("pgbouncer"), "/usr/sbin/pgbouncer"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise StackError("pgbouncer not found; install Debian's pgbouncer (make system-deps)")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def aws_client(service: str, endpoint: str, region: str = REGION):
    """A boto3 client for the moto server, independent of the caller's AWS environment."""
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name=region, **MOTO_CREDENTIALS)


def store_source_secret(info: StackInfo) -> None:
    """Store the PostgreSQL login in moto's Secrets Manager the way Redshift secrets are stored."""
    client = aws_client("secretsmanager", info.moto_endpoint, info.region)
    secret = json.dumps({"username": info.pg_user, "password": info.pg_password})
    try:
        client.create_secret(Name=info.secret_id, SecretString=secret)
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=info.secret_id, SecretString=secret)


def read_source_secret(
    endpoint: str, secret_id: str = SECRET_ID, region: str = REGION
) -> Dict[str, str]:
    client = aws_client("secretsmanager", endpoint, region)
    return json.loads(client.get_secret_value(SecretId=secret_id)["SecretString"])


def info_from_state(state: StackState, password: Optional[str] = None) -> StackInfo:
    """StackInfo of a running stack; the password is read back from moto's Secrets Manager."""
    endpoint = f"http://127.0.0.1:{state.moto_port}"
    if password is None:
        password = read_source_secret(endpoint)["password"]
    return StackInfo(
        pg_host="127.0.0.1",
        pg_port=state.pg_port,
        pg_database=PG_DATABASE,
        pg_user=PG_USER,
        pg_password=password,
        bouncer_port=state.bouncer_port,
        moto_endpoint=endpoint,
    )


def reset_moto(endpoint: str) -> None:
    """Wipe all moto state. This also drops the source secret: call store_source_secret after."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def create_id_table(
    info: StackInfo, table: str = TABLE, key_attribute: str = KEY_ATTRIBUTE
) -> None:
    """Create the on-demand DynamoDB lookup table in moto; an existing table is left alone."""
    client = aws_client("dynamodb", info.moto_endpoint, info.region)
    try:
        client.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": key_attribute, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key_attribute, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except client.exceptions.ResourceInUseException:
        log.info("DynamoDB table %s already exists", table)


# Redshift's FNV_HASH(value [, seed]) for the PostgreSQL stand-in, so the Redshift dialect's
# partition predicates run here as they do on Redshift: 64-bit FNV-1a over the value's bytes
# (text: its UTF-8 bytes, trailing spaces kept; smallint/integer/bigint: 2/4/8 bytes, little
# endian, as Redshift's documented examples give), the seed being the previous hash, the result
# a signed BIGINT. Arithmetic in numeric, modulo 2^64: bigint would overflow.
FNV_HASH_SQL = """
CREATE OR REPLACE FUNCTION fnv_hash(value bytea, seed bigint) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    h numeric := CASE WHEN seed < 0 THEN seed + 18446744073709551616 ELSE seed END;
    low integer;
BEGIN
    FOR i IN 0 .. length(value) - 1 LOOP
        low := (h % 256)::integer;
        h := ((h - low + (low # get_byte(value, i))) * 1099511628211) % 18446744073709551616;
    END LOOP;
    RETURN (CASE WHEN h >= 9223372036854775808 THEN h - 18446744073709551616 ELSE h END)::bigint;
END $$;
CREATE OR REPLACE FUNCTION fnv_hash(value text, seed bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT fnv_hash(convert_to(value, 'UTF8'), seed) $$;
CREATE OR REPLACE FUNCTION fnv_hash(value text) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT fnv_hash(value, -3750763034362895579) $$;
CREATE OR REPLACE FUNCTION fnv_hash(value smallint, seed bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS
$$ SELECT fnv_hash(substring(int8send(value::bigint) from 8 for 1)
                   || substring(int8send(value::bigint) from 7 for 1), seed) $$;
CREATE OR REPLACE FUNCTION fnv_hash(value integer, seed bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT fnv_hash(substring(int4send(value) from 4 for 1) || substring(int4send(value) from 3 for 1)
                || substring(int4send(value) from 2 for 1) || substring(int4send(value) from 1 for 1), seed) $$;
CREATE OR REPLACE FUNCTION fnv_hash(value bigint, seed bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT fnv_hash(substring(int8send(value) from 8 for 1) || substring(int8send(value) from 7 for 1)
                || substring(int8send(value) from 6 for 1) || substring(int8send(value) from 5 for 1)
                || substring(int8send(value) from 4 for 1) || substring(int8send(value) from 3 for 1)
                || substring(int8send(value) from 2 for 1) || substring(int8send(value) from 1 for 1), seed) $$;
CREATE OR REPLACE FUNCTION fnv_hash(value smallint) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT fnv_hash(value, -3750763034362895579) $$;
CREATE OR REPLACE FUNCTION fnv_hash(value integer) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT fnv_hash(value, -3750763034362895579) $$;
CREATE OR REPLACE FUNCTION fnv_hash(value bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT fnv_hash(value, -3750763034362895579) $$;
"""


def install_fnv_hash(info: StackInfo) -> None:
    """Create Redshift's fnv_hash functions in the stand-in's database (idempotent)."""
    conn = connect_postgres(info)
    try:
        conn.cursor().execute(FNV_HASH_SQL)
        conn.commit()
    finally:
        conn.close()


def connect_postgres(info: StackInfo, database: Optional[str] = None, port: int = 0):
    """A pg8000 DB-API connection to the stack's PostgreSQL (not autocommit); `port` may be pgbouncer's."""
    import pg8000.dbapi

    return pg8000.dbapi.connect(
        user=info.pg_user,
        password=info.pg_password,
        host=info.pg_host,
        port=port or info.pg_port,
        database=database or info.pg_database,
        timeout=30,
    )


def moto_env(endpoint: str) -> Dict[str, str]:
    """MOTO_ENV plus AWS_ENDPOINT_URL: what a driver needs to read `--conf s3://...` from moto
    (boto3 takes the endpoint from there before the config, which names it, is read)."""
    return {**MOTO_ENV, "AWS_ENDPOINT_URL": endpoint}


def create_bucket(info: StackInfo, bucket: str = LOCAL_BUCKET) -> str:
    """Create `bucket` in moto's S3 (an existing one is kept); returns its s3:// root."""
    client = aws_client("s3", info.moto_endpoint, info.region)
    try:
        client.create_bucket(Bucket=bucket)
    except (client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
        pass
    return f"s3://{bucket}"


def upload_tree(info: StackInfo, folder: Union[str, Path], uri: str) -> int:
    """Copy every file under a local folder to the s3:// prefix `uri`; returns the file count."""
    from idstore.io import split_s3

    bucket, prefix = split_s3(uri)
    client = aws_client("s3", info.moto_endpoint, info.region)
    root = Path(folder)
    count = 0
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        key = "/".join(part for part in (prefix.strip("/"), file.relative_to(root).as_posix()) if part)
        client.upload_file(str(file), bucket, key)
        count += 1
    return count


def list_keys(info: StackInfo, uri: str) -> List[str]:
    """Every key under the s3:// prefix `uri`, relative to it."""
    from idstore.io import split_s3

    bucket, prefix = split_s3(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    client = aws_client("s3", info.moto_endpoint, info.region)
    keys: List[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"][len(prefix):] for obj in page.get("Contents", []))
    return keys


def delete_prefix(info: StackInfo, uri: str) -> int:
    """Delete every object under the s3:// prefix `uri`; returns how many there were."""
    from idstore.io import split_s3

    bucket, prefix = split_s3(uri)
    base = prefix.rstrip("/") + "/" if prefix else ""
    client = aws_client("s3", info.moto_endpoint, info.region)
    keys = [base + relative for relative in list_keys(info, uri)]
    for start in range(0, len(keys), 1000):
        chunk = [{"Key": key} for key in keys[start:start + 1000]]
        client.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
    return len(keys)


def download_tree(info: StackInfo, uri: str, folder: Union[str, Path]) -> Path:
    """Copy every object under the s3:// prefix `uri` into a local folder (kept as a tree)."""
    from idstore.io import split_s3

    bucket, prefix = split_s3(uri)
    client = aws_client("s3", info.moto_endpoint, info.region)
    target = Path(folder)
    base = prefix.rstrip("/") + "/" if prefix else ""
    for relative in list_keys(info, uri):
        local = target / relative
        local.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, base + relative, str(local))
    return target


def write_local_config(
    info: StackInfo,
    path: Union[str, Path],
    data_dir: Union[str, Path],
    program: str = "FFA",
) -> Union[Path, str]:
    """Write an idstore TOML config for this stack; the password stays in Secrets Manager.

    `data_dir` is a local folder or an s3:// prefix (in moto, as on EMR); `path` a local file
    or an s3:// key, where it is uploaded to moto (the bucket must exist: create_bucket).
    Either way aws.endpoint_url, the one endpoint setting, sends boto3, S3A and DynamoDB to
    moto, so an s3:// path works in any config.
    """
    from idstore.io import is_s3

    if not program.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"program {program!r}: expected letters, digits, '_' or '-'")
    data: Union[Path, str] = str(data_dir).rstrip("/") if is_s3(str(data_dir)) else Path(data_dir).resolve()
    sections = [
        ("aws", {"region": info.region, "endpoint_url": info.moto_endpoint}),
        (
            "source",
            {
                "url": info.jdbc_url,
                "query": f"select product_id from program_products where program = '{program}'",
                "id_column": "product_id",
                "user": info.pg_user,
                "password_env": "",
                "secret_id": info.secret_id,
                "partitions": 4,
                "ssl": False,  # pgbouncer speaks no TLS to its clients; Redshift's endpoints do
            },
        ),
        (
            "dynamodb",
            {
                "table": TABLE,
                "key_attribute": KEY_ATTRIBUTE,
                "write_rate": 2000,
            },
        ),
        ("snapshot", {"path": _under(data, "snapshots")}),
        ("events", {"path": _under(data, "failure-events")}),
        ("output", {"path": _under(data, "filtered"), "quarantine_path": _under(data, "quarantine")}),
        ("report", {"path": _under(data, "reports")}),
        ("spark", {"spark.sql.shuffle.partitions": "8"}),
    ]
    lines = [
        "# Written by `idstore local up` for the running local stack; ports change on every up.",
        f"# The source password is in Secrets Manager ({info.secret_id}) on {info.moto_endpoint}.",
    ]
    for name, values in sections:
        lines.append("")
        lines.append(f"[{name}]")
        lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in values.items())
    text = "\n".join(lines) + "\n"
    if is_s3(str(path)):
        from idstore.io import split_s3

        bucket, key = split_s3(str(path))
        aws_client("s3", info.moto_endpoint, info.region).put_object(
            Bucket=bucket, Key=key, Body=text.encode("utf-8")
        )
        return str(path)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def _under(root: Union[Path, str], name: str) -> str:
    return f"{root}/{name}" if isinstance(root, str) else str(root / name)


def is_running(pid: int, marker: str = "") -> bool:
    """True when `pid` is a live (not zombie) process whose command line contains `marker`."""
    if pid <= 0:
        return False
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():  # not Linux: no way to check the command line
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return False
    # A zombie has exited; its parent (gone, after `up`) just has not reaped it yet.
    if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
        return False
    return marker in cmdline


def descendants(pid: int) -> Dict[int, str]:
    """Live descendants of `pid` as {pid: start time}; the pair survives pid reuse.

    PostgreSQL's children call setsid(), so signalling the postmaster's process group misses them.
    """
    stats = _proc_stats()
    children: Dict[int, List[int]] = {}
    for child, fields_ in stats.items():
        children.setdefault(int(fields_[1]), []).append(child)
    found: Dict[int, str] = {}
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found[child] = stats[child][19]
        todo.extend(children.get(child, []))
    return found


def _proc_stats() -> Dict[int, List[str]]:
    """/proc/PID/stat fields after the command name (state, ppid, pgrp, ...) of live processes."""
    stats = {}
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            after_comm = stat_path.read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if after_comm and after_comm[0] not in ("Z", "X"):
            stats[int(stat_path.parent.name)] = after_comm
    return stats


def _stop_process(
    pid: int, proc: Optional[subprocess.Popen], first_signal: int, marker: str
) -> None:
    """Signal `pid`, wait for it, then kill what is left of its process group."""
    if proc is None and not is_running(pid, marker):
        # Gone already, or the pid now belongs to some other process: never signal that.
        return
    children = descendants(pid)
    try:
        os.kill(pid, first_signal)
    except ProcessLookupError:
        pass
    if not _wait_gone(pid, proc, _STOP_TIMEOUT_S):
        log.warning(
            "pid %d did not stop on signal %d; killing its process group", pid, first_signal
        )
    _kill_group(pid)
    if not _wait_gone(pid, proc, _STOP_TIMEOUT_S):
        log.error("pid %d survived SIGKILL", pid)
    _kill_leftovers(children)


def _kill_leftovers(children: Mapping[int, str]) -> None:
    """SIGKILL children that outlived their parent, if the pid still names the same process."""
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while True:
        stats = _proc_stats()
        left = [
            pid for pid, started in children.items() if pid in stats and stats[pid][19] == started
        ]
        if not left:
            return
        if time.monotonic() > deadline:
            log.error("processes %s survived SIGKILL", left)
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def _wait_gone(pid: int, proc: Optional[subprocess.Popen], timeout_s: float) -> bool:
    if proc is not None:
        try:
            proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_running(pid):
            return True
        time.sleep(0.05)
    return False


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _unprivileged_user() -> Optional[pwd.struct_passwd]:
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam(UNPRIVILEGED_USER)


def _init_postgres(
    pg_bin: Path, data_dir: Path, password: str, run_as: Optional[pwd.struct_passwd]
) -> None:
    """initdb, then set the password and create the database in single-user mode.

    Single-user mode reads the password from a pipe: nothing holds it on disk, and
    `initdb --pwfile=/dev/stdin` fails once privileges are dropped (the pipe is root's).
    """
    user_args: Dict[str, Any] = {}
    if run_as is not None:
        user_args = {"user": run_as.pw_uid, "group": run_as.pw_gid, "extra_groups": []}
    data_dir.mkdir(mode=0o700)
    if run_as is not None:
        os.chown(data_dir, run_as.pw_uid, run_as.pw_gid)
    cwd = str(data_dir)
    initdb = [
        str(pg_bin / "initdb"),
        "-D",
        str(data_dir),
        "-U",
        PG_USER,
        "-E",
        "UTF8",
        "--no-locale",
        "--no-sync",
        "--no-instructions",
        "--auth=trust",
    ]
    _run_checked(initdb, "initdb", cwd=cwd, **user_args)
    # Only TCP from 127.0.0.1, md5: pgbouncer logs in with the md5 verifier its auth_file holds,
    # so that file never holds the password itself. There is no unix socket to trust.
    hba = data_dir / "pg_hba.conf"
    hba.write_text("host all all 127.0.0.1/32 md5\n")
    if run_as is not None:
        os.chown(hba, run_as.pw_uid, run_as.pw_gid)
    single = [
        str(pg_bin / "postgres"),
        "--single",
        "-D",
        str(data_dir),
        "-c",
        "fsync=off",
        "-c",
        "log_min_error_statement=panic",
        "-c",
        "password_encryption=md5",
        "postgres",
    ]
    sql = (
        f"ALTER ROLE {PG_USER} PASSWORD '{password}';\n"
        f"CREATE DATABASE {PG_DATABASE} OWNER {PG_USER};\n"
    )
    result = _run_checked(
        single, "postgres --single", cwd=cwd, input_bytes=sql.encode(), **user_args
    )
    if b"ERROR" in result.stderr or b"FATAL" in result.stderr:
        raise StackError(
            "postgres --single failed:\n"
            + _redact(result.stderr.decode(errors="replace"), password)
        )


def _run_checked(
    command: List[str], what: str, cwd: str, input_bytes: Optional[bytes] = None, **kwargs
):
    try:
        result = subprocess.run(
            command, input=input_bytes, capture_output=True, cwd=cwd, timeout=120, **kwargs
        )
    except subprocess.TimeoutExpired:
        raise StackError(f"{what} timed out") from None
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode(errors="replace")
        raise StackError(f"{what} failed (exit {result.returncode}):\n{output[-2000:]}")
    return result


def _postgres_command(pg_bin: Path, data_dir: Path, port: int) -> List[str]:
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": "",
        # A throwaway cluster: durability buys nothing, speed does.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "shared_buffers": "32MB",
        "max_connections": "50",
        "password_encryption": "md5",
    }
    command = [str(pg_bin / "postgres"), "-D", str(data_dir)]
    for key, value in settings.items():
        command += ["-c", f"{key}={value}"]
    return command


def md5_verifier(user: str, password: str) -> str:
    """PostgreSQL's md5 password verifier: what pg_authid stores and pgbouncer's auth_file may hold."""
    return "md5" + hashlib.md5((password + user).encode("utf-8")).hexdigest()


def _write_pgbouncer_config(
    folder: Path, pg_port: int, port: int, password: str, run_as: Optional[pwd.struct_passwd]
) -> Path:
    """pgbouncer.ini and its auth_file in `folder` (0700, the unprivileged user's); returns the ini.

    md5 to the clients (the Redshift driver refuses SCRAM) and to PostgreSQL; every database
    name is passed through; no unix socket; the startup parameters of the driver dropped.
    """
    folder.mkdir(mode=0o700)
    users = folder / "userlist.txt"
    users.write_text(f'"{PG_USER}" "{md5_verifier(PG_USER, password)}"\n')
    ini = folder / "pgbouncer.ini"
    settings = {
        "listen_addr": "127.0.0.1",
        "listen_port": str(port),
        "unix_socket_dir": "",
        "auth_type": "md5",
        "auth_file": str(users),
        "pool_mode": "session",
        "max_client_conn": "200",
        "default_pool_size": "40",
        "ignore_startup_parameters": ", ".join(PGBOUNCER_IGNORED_PARAMETERS),
        "server_tls_sslmode": "disable",
        "pidfile": "",
        "logfile": "",
    }
    ini.write_text(
        "[databases]\n"
        f"* = host=127.0.0.1 port={pg_port}\n"
        "[pgbouncer]\n" + "".join(f"{key} = {value}\n" for key, value in settings.items())
    )
    users.chmod(0o600)
    ini.chmod(0o600)
    if run_as is not None:
        for path in (folder, users, ini):
            os.chown(path, run_as.pw_uid, run_as.pw_gid)
    return ini


def _moto_command(port: int) -> List[str]:
    script = Path(sys.executable).parent / "moto_server"
    if script.is_file():
        return [str(script), "-H", "127.0.0.1", "-p", str(port)]
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


def _wait_for_moto(endpoint: str, proc: subprocess.Popen, log_path: Path, deadline: float) -> None:
    while True:
        if proc.poll() is not None:
            raise StackError(f"moto server exited with {proc.returncode}:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, http.client.HTTPException):  # not listening yet, or not moto
            pass
        if time.monotonic() > deadline:
            raise StackError(f"moto server did not answer on {endpoint}:\n{_tail(log_path)}")
        time.sleep(0.1)


def _wait_for_postgres(
    info: StackInfo, proc: subprocess.Popen, log_path: Path, deadline: float, port: int = 0
) -> None:
    """Until `select 1` answers on PostgreSQL's port, or on `port` (pgbouncer's) when given."""
    what = "pgbouncer" if port else "postgres"
    port = port or info.pg_port
    last_error: Optional[BaseException] = None
    while True:
        if proc.poll() is not None:
            raise StackError(f"{what} exited with {proc.returncode}:\n{_tail(log_path)}")
        try:
            conn = connect_postgres(info, port=port)
            try:
                cursor = conn.cursor()
                cursor.execute("select 1")
                cursor.fetchall()
                return
            finally:
                conn.close()
        except Exception as exc:  # noqa: BLE001 - refused, or "the database system is starting up"
            last_error = exc
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready on port {port} ({last_error}):\n{_tail(log_path)}")
        time.sleep(0.1)


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def _redact(text: str, password: str) -> str:
    return text.replace(password, "***")


def _replace(state: StackState, **changes: Any) -> StackState:
    data = state.to_dict()
    data.update(changes)
    return StackState(**data)


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(str(value))
