"""`idstore local up|down|status|seed`: the local stack as detached processes for development.

State lives in DIR/stack.json (pids, ports, directories; never the password) beside DIR/local.toml.
"""

import argparse
import json
import logging
import shutil
import socket
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import List, Optional, Sequence

from idstore_tools.local.stack import (
    LOCAL_BUCKET,
    SECRET_ID,
    TABLE,
    LocalStack,
    StackError,
    StackState,
    connect_postgres,
    create_bucket,
    create_id_table,
    delete_prefix,
    info_from_state,
    is_running,
    upload_tree,
    write_local_config,
)

log = logging.getLogger(__name__)

STATE_FILE = "stack.json"
CONFIG_FILE = "local.toml"
DATA_DIR = "data"
# Programs besides the one the config selects, so the source query has something to filter out.
OTHER_PROGRAMS = ("SNS", "PRIME")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return args.func(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="idstore local",
        description="Throwaway PostgreSQL behind pgbouncer (the Redshift stand-in, read through the "
        "Redshift JDBC driver) and a moto server, for local runs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--dir", type=Path, default=Path(".idstore"), help="state directory (default .idstore)"
        )
        sub.set_defaults(func=func)
        return sub

    up = add(
        "up",
        _up,
        "start PostgreSQL, pgbouncer and moto in the background; write DIR/stack.json and DIR/local.toml",
    )
    up.add_argument("--pg-port", type=int, default=0, help="PostgreSQL port (default: a free one)")
    up.add_argument(
        "--bouncer-port", type=int, default=0,
        help="pgbouncer port, where jdbc:redshift:// reads (default: a free one)",
    )
    up.add_argument("--moto-port", type=int, default=0, help="moto port (default: a free one)")
    up.add_argument(
        "--program", default="FFA", help="program the generated config selects (default FFA)"
    )
    up.add_argument(
        "--storage",
        choices=("s3", "local"),
        default="s3",
        help=f"s3 (default): config, events and job output on s3://{LOCAL_BUCKET} in moto, as on "
        "EMR; local: under DIR/data",
    )
    down = add("down", _down, "stop the stack and remove its temp data")
    down.add_argument(
        "--purge", action="store_true", help="also remove DIR/data (seeded events, job output)"
    )
    add("status", _status, "say what runs")
    seed = add(
        "seed",
        _seed,
        "load program ids into PostgreSQL and write a failure-event archive under DIR/data",
    )
    seed.add_argument(
        "--program", default="FFA", help="program whose ids the events match (default FFA)"
    )
    seed.add_argument(
        "--ids", type=int, default=100_000, help="ids in the program (default 100000)"
    )
    seed.add_argument(
        "--events", type=int, default=1_000_000, help="events to write (default 1000000)"
    )
    seed.add_argument("--days", type=int, default=7, help="days of events (default 7)")
    seed.add_argument(
        "--start",
        type=date.fromisoformat,
        default=date(2024, 1, 1),
        help="first day (default 2024-01-01)",
    )
    seed.add_argument(
        "--match-fraction",
        type=float,
        default=0.1,
        help="share of events with a program id (default 0.1)",
    )
    seed.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    return parser


def _up(args: argparse.Namespace) -> int:
    state_dir = args.dir.resolve()
    existing = _load_state(state_dir)
    if existing is not None:
        if _running(existing):
            print(
                f"local stack already up (see {state_dir / STATE_FILE}); `idstore local down` first"
            )
            return 1
        print("found a stale stack.json; cleaning up after it")
        LocalStack.from_state(existing).stop()
        (state_dir / STATE_FILE).unlink()

    state_dir.mkdir(parents=True, exist_ok=True)
    stack = LocalStack(
        pg_port=args.pg_port, moto_port=args.moto_port, bouncer_port=args.bouncer_port, stop_at_exit=False
    )
    try:
        info = stack.start()
    except StackError as exc:
        print(f"idstore local up: {exc}", file=sys.stderr)
        return 1
    try:
        state = stack.state
        config_path = state_dir / CONFIG_FILE
        data_dir = state_dir / DATA_DIR
        data_dir.mkdir(exist_ok=True)
        conf_arg = str(config_path)
        if args.storage == "s3":
            data_root = f"{create_bucket(info, LOCAL_BUCKET)}/data"
            conf_arg = f"s3://{LOCAL_BUCKET}/conf/{CONFIG_FILE}"
            write_local_config(info, conf_arg, data_root, program=args.program)
        else:
            data_root = str(data_dir)
        # a copy to read (and to use as --conf FILE) beside stack.json
        write_local_config(info, config_path, data_root, program=args.program)
        create_id_table(info)
        record = dict(
            state.to_dict(),
            jdbc_url=info.jdbc_url,
            postgres_jdbc_url=info.postgres_jdbc_url,
            moto_endpoint=info.moto_endpoint,
            region=info.region,
            secret_id=info.secret_id,
            config=str(config_path),
            conf=conf_arg,
            storage=args.storage,
            data_root=data_root,
            data_dir=str(data_dir),
            started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        _write_json(state_dir / STATE_FILE, record)
    except BaseException:
        stack.stop()
        raise

    print(f"Redshift    {info.jdbc_url}  user {info.pg_user}  (pgbouncer, pid {state.bouncer_pid}; the jobs read here)")
    print(f"PostgreSQL  {info.postgres_jdbc_url}  user {info.pg_user}  (pid {state.pg_pid})")
    print(
        f"moto        {info.moto_endpoint}  (pid {state.moto_pid}; DynamoDB table {TABLE} created)"
    )
    print(f"password    in Secrets Manager as {SECRET_ID}; read it with:")
    print(
        f"            aws --endpoint-url {info.moto_endpoint} secretsmanager get-secret-value "
        f"--secret-id {SECRET_ID} --query SecretString --output text"
    )
    print(f"config      {conf_arg}" + (f"  (a copy in {config_path})" if conf_arg != str(config_path) else ""))
    print(f"data        {data_root}")
    print(f"state       {state_dir / STATE_FILE}  (temp data {state.work_dir})")
    print("next:")
    print(
        "  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing"
        f" AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL={info.moto_endpoint}"
    )
    print(f"  idstore local seed --dir {args.dir}")
    print(f"  idstore sync --config {conf_arg}")
    print(f"  idstore filter --config {conf_arg} --from 2024-01-01 --to 2024-01-07")
    print(f"  idstore local down --dir {args.dir}")
    return 0


def _down(args: argparse.Namespace) -> int:
    state_dir = args.dir.resolve()
    state = _load_state(state_dir)
    if state is None:
        print(f"no local stack in {state_dir}")
    else:
        LocalStack.from_state(state).stop()
        print(
            f"stopped pgbouncer (pid {state.bouncer_pid}), PostgreSQL (pid {state.pg_pid}) "
            f"and moto (pid {state.moto_pid}); "
            f"removed {state.work_dir}"
        )
    for name in (STATE_FILE, CONFIG_FILE):
        path = state_dir / name
        if path.exists():
            path.unlink()
    if args.purge and (state_dir / DATA_DIR).exists():
        shutil.rmtree(state_dir / DATA_DIR)
        print(f"removed {state_dir / DATA_DIR}")
    return 0


def _status(args: argparse.Namespace) -> int:
    state_dir = args.dir.resolve()
    state = _load_state(state_dir)
    if state is None:
        print(f"no local stack in {state_dir} (start one with `idstore local up`)")
        return 1
    pg_up = is_running(state.pg_pid, state.pg_data_dir) and _listening(state.pg_port)
    bouncer_up = is_running(state.bouncer_pid, state.bouncer_dir) and _listening(state.bouncer_port)
    moto_up = is_running(state.moto_pid, "moto") and _listening(state.moto_port)
    print(
        f"pgbouncer   {'running' if bouncer_up else 'NOT running'}  pid {state.bouncer_pid}  "
        f"jdbc:redshift://127.0.0.1:{state.bouncer_port}/idstore"
    )
    print(
        f"PostgreSQL  {'running' if pg_up else 'NOT running'}  pid {state.pg_pid}  "
        f"jdbc:postgresql://127.0.0.1:{state.pg_port}/idstore"
    )
    print(
        f"moto        {'running' if moto_up else 'NOT running'}  pid {state.moto_pid}  "
        f"http://127.0.0.1:{state.moto_port}"
    )
    print(f"config      {state_dir / CONFIG_FILE}")
    up = pg_up and bouncer_up and moto_up
    if not up:
        print("`idstore local down` cleans up, `idstore local up` starts afresh")
    return 0 if up else 1


def _seed(args: argparse.Namespace) -> int:
    from idstore_tools.testing.datagen import (
        program_ids,
        seed_program_products,
        write_event_archive,
    )

    state_dir = args.dir.resolve()
    state = _load_state(state_dir)
    if state is None or not _running(state):
        print(f"no running local stack in {state_dir} (start one with `idstore local up`)")
        return 1
    info = info_from_state(state)  # the password comes from moto's Secrets Manager
    programs = {args.program: args.ids}
    for other in OTHER_PROGRAMS:
        if other != args.program:
            programs[other] = max(1, args.ids // 2)
    conn = connect_postgres(info)
    try:
        ids = seed_program_products(conn, programs, seed=args.seed)
    finally:
        conn.close()
    # Events also name products in no program at all, as real archives do.
    other_ids: List[str] = [i for p, v in ids.items() if p != args.program for i in v]
    other_ids += program_ids("UNLISTED", max(1, args.ids // 2), seed=args.seed)
    record = json.loads((state_dir / STATE_FILE).read_text())
    data_root = record.get("data_root") or str(state_dir / DATA_DIR)
    on_s3 = data_root.startswith("s3://")
    events_root = (
        state_dir / DATA_DIR / "seed-events" if on_s3 else Path(data_root) / "failure-events"
    )
    if events_root.exists():
        shutil.rmtree(events_root)  # a re-seed with fewer days must not leave old days behind
    counts = write_event_archive(
        events_root,
        start=args.start,
        days=args.days,
        n_events=args.events,
        match_ids=ids[args.program],
        other_ids=other_ids,
        match_fraction=args.match_fraction,
        seed=args.seed,
    )
    where = str(events_root)
    if on_s3:
        where = f"{data_root}/failure-events"
        delete_prefix(info, where)
        upload_tree(info, events_root, where)
        shutil.rmtree(events_root)
    last = args.start + timedelta(days=args.days - 1)
    print(f"program_products: {', '.join(f'{p} {len(v)}' for p, v in ids.items())} ids")
    print(
        f"events: {counts['total']} ({counts['matched']} with a {args.program} id) "
        f"{args.start}..{last} under {where}"
    )
    return 0


def _load_state(state_dir: Path) -> Optional[StackState]:
    path = state_dir / STATE_FILE
    if not path.exists():
        return None
    return StackState.from_dict(json.loads(path.read_text()))


def _running(state: StackState) -> bool:
    return (
        is_running(state.pg_pid, state.pg_data_dir)
        and is_running(state.bouncer_pid, state.bouncer_dir)
        and is_running(state.moto_pid, "moto")
    )


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
