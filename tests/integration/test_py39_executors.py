"""Both jobs on Python 3.9, driver and executors, installed as EMR installs them.

`make package` builds the cluster wheelhouse (CPython 3.9, x86_64); the release goes to moto's
S3; bootstrap/install-idstore.sh (the EMR bootstrap action itself) installs it into a fresh
Python 3.9 venv with pip --no-index; spark-submit runs the released jobs/ with that 3.9 as the
driver's and the workers' Python, pyspark coming from Spark's own python/lib as on EMR. The
table and the output are compared with plain Python.
"""
import gzip
import json
import os
import shutil
import subprocess
import sys
import uuid
from glob import glob
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from idstore_tools.local.stack import aws_client, create_bucket, moto_env, upload_tree, write_local_config
from idstore_tools.local_submit import REPO, spark_submit_command

pytestmark = pytest.mark.integration

# The `aws` command the bootstrap action calls (EMR nodes have the AWS CLI): `aws s3 cp` of one
# object or a prefix, through boto3 against AWS_ENDPOINT_URL (moto).
AWS_CLI_STAND_IN = '''#!{python}
import os, sys
from pathlib import Path
import boto3
args = [a for a in sys.argv[1:] if a != "--only-show-errors"]
recursive = "--recursive" in args
args = [a for a in args if a != "--recursive"]
if args[:2] != ["s3", "cp"] or len(args) != 4 or not args[2].startswith("s3://"):
    sys.exit("aws stand-in: only `aws s3 cp [--recursive] s3://... LOCAL` is known")
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
bucket, _, key = args[2][5:].partition("/")
target = Path(args[3])
if not recursive:
    s3.download_file(bucket, key, str(target))
    sys.exit(0)
prefix = key.rstrip("/") + "/"
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for obj in page.get("Contents", []):
        local = target / obj["Key"][len(prefix):]
        local.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, obj["Key"], str(local))
'''

IDS = [f"P39-{i:05d}" for i in range(400)]
OTHERS = [f"Q39-{i:05d}" for i in range(400)]
DAY = "2024-06-01"


def _python39():
    found = sorted(glob("/root/.pyenv/versions/3.9.*/bin/python3.9")) or [shutil.which("python3.9") or ""]
    assert found[-1], "Python 3.9 not found (pyenv's /root/.pyenv/versions/3.9.*)"
    return found[-1]


def _run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, (command, result.stdout[-3000:], result.stderr[-3000:])
    return result


@pytest.fixture(scope="module")
def installed(stack, tmp_path_factory):
    """The release built by `make package`, installed by the bootstrap action into a 3.9 venv."""
    work = tmp_path_factory.mktemp("py39")
    dist = work / "dist"
    # `make package` exactly, writing elsewhere than the checkout's dist/; setup is not redone
    _run(["make", "--no-print-directory", "-o", ".venv/.installed", "-o", ".jars/.verified", "package",
          f"PACKAGE_ARGS=--out {dist} --target 3.9-x86_64 --no-serverless"], cwd=str(REPO))
    manifest = json.loads((dist / "manifest.json").read_text())
    release = f"{create_bucket(stack, 'idstore-py39-release')}/idstore/releases/{manifest['version']}"
    upload_tree(stack, dist, release)

    venv = work / "venv39"
    _run([_python39(), "-m", "venv", str(venv)])
    bin_dir = work / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(AWS_CLI_STAND_IN.format(python=sys.executable))
    (bin_dir / "aws").chmod(0o755)
    env = {**os.environ, **moto_env(stack.moto_endpoint), "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "IDSTORE_BOOTSTRAP_DIR": str(work / "bootstrap")}
    boot = _run(["bash", str(dist / "bootstrap" / "install-idstore.sh"), release, str(venv / "bin" / "python")],
                env=env)
    assert f"installed idstore {manifest['version']}" in boot.stderr
    python = venv / "bin" / "python"
    where = _run([str(python), "-c", "import sys, idstore; print(sys.version_info[:2], idstore.__file__)"]).stdout
    assert where.startswith("(3, 9)") and str(venv) in where, where
    site = Path(where.split()[-1]).parent.parent
    # every interpreter that starts from this venv (the driver, Spark's Python daemon that forks
    # the workers) records its version, executable and argv where the test can read them
    (site / "zz_idstore_test_record.pth").write_text(
        "import os, sys, json; os.environ.get('IDSTORE_TEST_PY_RECORD') and "
        "open(os.environ['IDSTORE_TEST_PY_RECORD'], 'a').write(json.dumps([list(sys.version_info[:2]), "
        "sys.executable, sys.argv, os.getpid()]) + '\\n')\n")
    return {"python": str(python), "dist": dist, "site": site, "version": manifest["version"]}


def _submit(stack, installed, job, conf, *args, record):
    python = installed["python"]
    command = spark_submit_command(job, ["--conf", str(conf), *args], spark_conf={
        "spark.pyspark.python": python, "spark.pyspark.driver.python": python})
    script = str(installed["dist"] / "jobs" / Path(command[-len(args) - 3]).name)
    command[-len(args) - 3] = script  # the released jobs/, as the EMR step runs them
    import pyspark

    # Spark's home, as /usr/lib/spark on EMR: spark-submit would look for it with the 3.9 Python
    env = {**os.environ, **moto_env(stack.moto_endpoint), "PYSPARK_PYTHON": python,
           "PYSPARK_DRIVER_PYTHON": python, "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_HOME": str(Path(pyspark.__file__).parent), "IDSTORE_TEST_PY_RECORD": str(record)}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(command, env=env, cwd=str(installed["dist"]), capture_output=True, text=True, timeout=900)
    return result.returncode, result.stdout + result.stderr


def test_sync_and_filter_run_on_python_39_driver_and_executors(stack, pg, installed, tmp_path):
    from idstore_tools.testing.readback import scan_key_set

    cur = pg.cursor()
    cur.execute("drop table if exists py39_program")
    cur.execute("create table py39_program (product_id text)")
    cur.executemany("insert into py39_program values (%s)", [(i,) for i in IDS])
    # no table: the sync creates it by import, so the 3.9 executors stage the set too
    table = f"py39-{uuid.uuid4().hex[:8]}"
    ddb = aws_client("dynamodb", stack.moto_endpoint)
    staging = f"{create_bucket(stack, 'idstore-py39-staging')}/imports"
    data = tmp_path / "data"
    events = data / "failure-events" / f"dt={DAY}"
    events.mkdir(parents=True)
    lines = [json.dumps({"id": f"e{i}", "time": f"{DAY}T00:00:00Z", "detail-type": "F", "source": "fc",
                         "detail": {"productId": (IDS if i % 4 == 0 else OTHERS)[i % 400]}}) for i in range(2000)]
    (events / "part-00000.json.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    conf = write_local_config(stack, tmp_path / "job.toml", data)
    text = conf.read_text().replace('"IdentifierStore"', json.dumps(table)).replace(
        "from program_products where program = 'FFA'", "from py39_program")
    conf.write_text(text)

    record = tmp_path / "interpreters.jsonl"
    code, output = _submit(stack, installed, "sync", conf, "--set", "dynamodb.create=import",
                           "--set", f"dynamodb.import_path={staging}", record=record)
    assert code == 0, output[-4000:]
    assert scan_key_set(ddb, table, "product_id") == set(IDS)
    (sync_report,) = (data / "reports" / "sync").glob("run_id=*.json")
    assert json.loads(sync_report.read_text())["details"]["import"]["imported"] == len(IDS)

    code, output = _submit(stack, installed, "filter", conf, "--from", DAY, "--to", DAY, record=record)
    assert code == 0, output[-4000:]
    expected = sorted(json.loads(line)["id"] for line in lines if json.loads(line)["detail"]["productId"] in set(IDS))
    got = sorted(i for f in sorted((data / "filtered").rglob("*.parquet"))
                 for i in pq.read_table(str(f), columns=["id"]).column("id").to_pylist())
    assert got == expected
    # the pre-filter read plain ids with idstore's jar, which came with the installed wheel
    (filter_report,) = (data / "reports" / "filter").glob("run_id=*.json")
    assert json.loads(filter_report.read_text())["details"]["candidate_test"] == "jvm"

    # who ran: the 3.9 venv's interpreter as each job's driver and as Spark's Python daemon
    # (which forks the workers), and no other Python from that venv or elsewhere reported in
    started = [json.loads(line) for line in record.read_text().splitlines()]
    assert all(version == [3, 9] and executable == installed["python"] for version, executable, _, _ in started)
    drivers = [argv for _, _, argv, _ in started if argv and argv[0].endswith(("sync_product_ids.py", "filter_failure_events.py"))]
    assert {Path(a[0]).name for a in drivers} == {"filter_failure_events.py", "sync_product_ids.py"}
    assert all(Path(a[0]).parent == installed["dist"] / "jobs" for a in drivers)
    daemons = [pid for _, _, argv, pid in started if argv == ["-m"]]  # `python -m pyspark.daemon`
    assert len(daemons) >= 2, started  # at least one per job
