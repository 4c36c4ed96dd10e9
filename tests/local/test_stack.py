"""The local stack, real processes: PostgreSQL and moto start, answer, leave nothing behind."""

import hashlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3
import pg8000.dbapi
import pytest
import tomllib

from idstore_tools.local import (
    LocalStack,
    StackError,
    connect_postgres,
    reset_moto,
    store_source_secret,
    write_local_config,
)

BASE_TOML = Path(__file__).resolve().parents[2] / "conf" / "base.toml"


def _client(service, endpoint):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _secret(endpoint):
    response = _client("secretsmanager", endpoint).get_secret_value(SecretId="idstore/local-source")
    return json.loads(response["SecretString"])


def _alive(pid):
    """Independent of the code under test: signal 0, and a zombie counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def _pids_with_cmdline(fragment):
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            continue
        pid = int(cmdline.parent.name)
        if fragment in text and pid != os.getpid() and _alive(pid):
            found.append(pid)
    return found


def _children(pid):
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def _uid_of(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


@pytest.fixture(scope="module")
def stack():
    local = LocalStack()
    info = local.start()
    yield local, info
    local.stop()


def test_postgres_answers_with_the_password_from_secrets_manager(stack):
    _, info = stack
    secret = _secret(info.moto_endpoint)
    assert secret["username"] == "idstore"
    conn = pg8000.dbapi.connect(
        user=secret["username"],
        password=secret["password"],
        host="127.0.0.1",
        port=info.pg_port,
        database="idstore",
    )
    try:
        cursor = conn.cursor()
        cursor.execute("select current_user, current_database(), current_setting('fsync')")
        assert tuple(cursor.fetchone()) == ("idstore", "idstore", "off")
    finally:
        conn.close()
    assert info.postgres_jdbc_url == f"jdbc:postgresql://127.0.0.1:{info.pg_port}/idstore"


def test_pgbouncer_logs_in_with_the_same_password_and_reaches_the_same_database(stack):
    _, info = stack
    assert info.jdbc_url == f"jdbc:redshift://127.0.0.1:{info.bouncer_port}/idstore"
    assert info.bouncer_port not in (0, info.pg_port)
    conn = connect_postgres(info, port=info.bouncer_port)
    try:
        cursor = conn.cursor()
        cursor.execute("select current_user, current_database(), inet_server_port()")
        assert tuple(cursor.fetchone()) == ("idstore", "idstore", info.pg_port)  # the server behind it
        # Redshift's FNV_HASH, as its documentation gives it (the partition predicates use it)
        cursor.execute("select fnv_hash('Amazon Redshift')")
        assert cursor.fetchone()[0] == 7783490368944507294
    finally:
        conn.close()
    with pytest.raises(pg8000.dbapi.DatabaseError, match="28P01|password"):
        pg8000.dbapi.connect(
            user="idstore", password="wrong", host="127.0.0.1", port=info.bouncer_port, database="idstore"
        )


def test_pgbouncer_keeps_a_verifier_not_the_password_and_listens_on_tcp_only(stack):
    local, info = stack
    folder = Path(local.state.bouncer_dir)
    assert folder.stat().st_mode & 0o077 == 0
    for file in folder.iterdir():
        if file.is_file():
            assert info.pg_password not in file.read_text(errors="replace"), file
    userlist = (folder / "userlist.txt").read_text()
    assert f'"idstore" "md5{hashlib.md5((info.pg_password + "idstore").encode()).hexdigest()}"' in userlist
    assert not list(folder.glob(".s.PGSQL.*")) and not list(Path("/tmp").glob(f".s.PGSQL.{info.bouncer_port}"))
    assert _uid_of(local.state.bouncer_pid) == _uid_of(local.state.pg_pid)


def test_postgres_refuses_a_wrong_password(stack):
    _, info = stack
    with pytest.raises(pg8000.dbapi.DatabaseError, match="28P01"):
        pg8000.dbapi.connect(
            user="idstore",
            password="wrong",
            host="127.0.0.1",
            port=info.pg_port,
            database="idstore",
        )


def test_postgres_runs_unprivileged_when_started_as_root(stack):
    local, _ = stack
    expected = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert _uid_of(local.state.pg_pid) == expected
    assert Path(local.state.pg_data_dir).stat().st_uid == expected


def test_connect_postgres_uses_the_stack_login(stack):
    _, info = stack
    conn = connect_postgres(info)
    try:
        cursor = conn.cursor()
        cursor.execute("select 40 + 2")
        assert cursor.fetchone()[0] == 42
    finally:
        conn.close()


def test_moto_answers_dynamodb_and_s3(stack):
    _, info = stack
    dynamodb = _client("dynamodb", info.moto_endpoint)
    dynamodb.create_table(
        TableName="StackProbe",
        KeySchema=[{"AttributeName": "product_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "product_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName="StackProbe", Item={"product_id": {"S": "B000000001"}})
    item = dynamodb.get_item(TableName="StackProbe", Key={"product_id": {"S": "B000000001"}})[
        "Item"
    ]
    assert item == {"product_id": {"S": "B000000001"}}

    s3 = _client("s3", info.moto_endpoint)
    s3.create_bucket(Bucket="stack-probe")
    s3.put_object(Bucket="stack-probe", Key="a/b.txt", Body=b"hello")
    assert s3.get_object(Bucket="stack-probe", Key="a/b.txt")["Body"].read() == b"hello"


def test_reset_moto_wipes_state_and_the_secret_can_be_stored_again(stack):
    _, info = stack
    s3 = _client("s3", info.moto_endpoint)
    s3.create_bucket(Bucket="to-be-reset")
    reset_moto(info.moto_endpoint)
    assert s3.list_buckets()["Buckets"] == []
    store_source_secret(info)
    assert _secret(info.moto_endpoint)["password"] == info.pg_password


def test_stack_info_repr_hides_the_password(stack):
    _, info = stack
    assert info.pg_password not in repr(info)
    assert info.pg_password not in str(info)


def test_local_config_has_real_endpoints_known_keys_and_no_password(stack, tmp_path):
    _, info = stack
    path = write_local_config(info, tmp_path / "local.toml", tmp_path / "data")
    text = path.read_text()
    assert info.pg_password not in text
    config = tomllib.loads(text)
    base = tomllib.loads(BASE_TOML.read_text())
    for section, values in config.items():
        if section != "spark":
            assert set(values) <= set(base[section]), section
    assert config["aws"]["endpoint_url"] == info.moto_endpoint  # the one endpoint: DynamoDB and S3A take it
    assert "endpoint_url" not in config["dynamodb"] and not any("endpoint" in key for key in config["spark"])
    assert config["dynamodb"]["table"] == "IdentifierStore"
    assert config["source"]["url"] == info.jdbc_url
    assert config["source"]["ssl"] is False
    assert config["source"]["user"] == "idstore"
    assert config["source"]["secret_id"] == "idstore/local-source"
    assert "program = 'FFA'" in config["source"]["query"]
    for section, key in [
        ("snapshot", "path"),
        ("events", "path"),
        ("output", "path"),
        ("output", "quarantine_path"),
        ("report", "path"),
    ]:
        assert Path(config[section][key]).is_relative_to(tmp_path / "data"), (section, key)


def test_stop_leaves_no_process_and_no_temp_data_behind():
    local = LocalStack()
    local.start()
    state = local.state
    postgres_children = _children(state.pg_pid)
    assert postgres_children  # checkpointer, walwriter, ...: what a careless stop leaves behind
    pids = [state.pg_pid, state.bouncer_pid, state.moto_pid] + postgres_children + _children(state.moto_pid)
    local.stop()
    assert [pid for pid in pids if _alive(pid)] == []
    assert not Path(state.work_dir).exists()
    local.stop()  # idempotent


def test_a_start_that_fails_half_way_stops_what_it_started():
    work_dir = Path(tempfile.mkdtemp(prefix="idstore-halfway-"))
    work_dir.chmod(0o755)  # as root, postgres runs as nobody and must reach pgdata inside
    try:
        with socket.socket() as blocker:
            blocker.bind(("127.0.0.1", 0))
            blocker.listen(1)
            port = blocker.getsockname()[1]
            local = LocalStack(work_dir=work_dir, moto_port=port, startup_timeout_s=30)
            with pytest.raises(StackError, match="moto"):
                local.start()  # moto cannot bind; postgres is up by the time that shows
        assert (work_dir / "postgres.log").exists()  # postgres was started
        assert _pids_with_cmdline(str(work_dir)) == []
        assert _pids_with_cmdline(f"-p {port}") == []
        assert not (work_dir / "pgdata").exists()
        assert local.state is None
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def _cli(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "idstore_tools.local", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("storage", ["s3", "local"])
def test_cli_up_status_seed_down_round_trip_without_writing_the_password(tmp_path, storage):
    state_dir = tmp_path / "state"
    up = _cli("up", "--dir", str(state_dir), "--storage", storage)
    assert up.returncode == 0, up.stderr
    try:
        state = json.loads((state_dir / "stack.json").read_text())
        # `up` has exited; the servers it started must still run.
        assert _alive(state["pg_pid"]) and _alive(state["bouncer_pid"]) and _alive(state["moto_pid"])
        endpoint = f"http://127.0.0.1:{state['moto_port']}"
        password = _secret(endpoint)["password"]
        for written in (state_dir / "stack.json", state_dir / "local.toml"):
            assert password not in written.read_text(), written
        assert password not in up.stdout + up.stderr
        assert f"jdbc:redshift://127.0.0.1:{state['bouncer_port']}/idstore" in up.stdout
        assert f"jdbc:postgresql://127.0.0.1:{state['pg_port']}/idstore" in up.stdout

        key_schema = _client("dynamodb", endpoint).describe_table(TableName="IdentifierStore")[
            "Table"
        ]["KeySchema"]
        assert key_schema == [{"AttributeName": "product_id", "KeyType": "HASH"}]
        config = tomllib.loads((state_dir / "local.toml").read_text())
        assert config["source"]["url"] == f"jdbc:redshift://127.0.0.1:{state['bouncer_port']}/idstore"
        assert config["source"]["ssl"] is False

        status = _cli("status", "--dir", str(state_dir))
        assert status.returncode == 0 and status.stdout.count("running") == 3, status.stdout
        assert "NOT running" not in status.stdout

        seed = _cli(
            "seed", "--dir", str(state_dir), "--ids", "500", "--events", "3000", "--days", "2"
        )
        assert seed.returncode == 0, seed.stderr
        conn = pg8000.dbapi.connect(
            user="idstore",
            password=password,
            host="127.0.0.1",
            port=state["pg_port"],
            database="idstore",
        )
        try:
            cursor = conn.cursor()
            cursor.execute("select count(*) from program_products where program = 'FFA'")
            assert cursor.fetchone()[0] == 500
        finally:
            conn.close()
        events_path = config["events"]["path"]
        if storage == "s3":
            # the config the jobs are given is the one in moto's S3; the local file is its copy
            assert events_path == "s3://idstore-local/data/failure-events"
            s3 = _client("s3", endpoint)
            in_s3 = s3.get_object(Bucket="idstore-local", Key="conf/local.toml")["Body"].read()
            assert tomllib.loads(in_s3.decode()) == config
            assert "--config s3://idstore-local/conf/local.toml" in up.stdout
            listed = s3.list_objects_v2(Bucket="idstore-local", Prefix="data/failure-events/")
            days = sorted({o["Key"].split("/")[2] for o in listed.get("Contents", [])})
            # one endpoint setting reaches boto3, S3A and DynamoDB alike
            assert config["aws"]["endpoint_url"] == endpoint
            assert "spark.hadoop.fs.s3a.endpoint" not in config["spark"] and not config["dynamodb"].get("endpoint_url")
        else:
            days = sorted(p.name for p in Path(events_path).iterdir())
        assert days == ["dt=2024-01-01", "dt=2024-01-02"]
        postgres_children = _children(state["pg_pid"])
        assert postgres_children
    finally:
        down = _cli("down", "--dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert [
        pid for pid in [state["pg_pid"], state["bouncer_pid"], state["moto_pid"], *postgres_children] if _alive(pid)
    ] == []
    assert _pids_with_cmdline(state["work_dir"]) == []
    assert not Path(state["work_dir"]).exists()
    assert not (state_dir / "stack.json").exists()
    assert _cli("status", "--dir", str(state_dir)).returncode == 1
