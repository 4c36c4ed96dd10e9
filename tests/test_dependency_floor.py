"""idstore on the oldest boto3 its setup.py allows (make setup installs it into .floor/): the S3
conditional writes of the run lock, the newest parameters idstore passes, against moto."""
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from idstore_tools.local.stack import MOTO_ENV, create_bucket

REPO = Path(__file__).resolve().parents[1]
FLOOR = REPO / ".floor"

LOCK_ON_THE_FLOOR = """
import sys
import boto3, botocore
from idstore.lock import LockRefused, TableLock

floor, location, endpoint = sys.argv[1:]
assert (boto3.__version__, botocore.__version__) == (floor, floor), (boto3.__version__, botocore.__version__)
first = TableLock(location, "floor-1", lease_s=30, endpoint_url=endpoint, region="us-east-1")
with first.held():  # put_object(IfNoneMatch="*")
    first.renew()  # put_object(IfMatch=etag)
    first.check()
    try:
        TableLock(location, "floor-2", lease_s=30, endpoint_url=endpoint, region="us-east-1").acquire()
    except LockRefused:
        pass
    else:
        raise SystemExit("a second run took a held lock")
TableLock(location, "floor-3", lease_s=30, endpoint_url=endpoint, region="us-east-1").acquire()  # after release
print("lock ok on boto3", boto3.__version__)
"""


def boto3_floor() -> str:
    return re.search(r'"boto3>=([0-9.]+)"', (REPO / "setup.py").read_text()).group(1)


@pytest.mark.integration
def test_the_run_lock_works_on_the_oldest_boto3_setup_py_allows(stack):
    floor = boto3_floor()
    assert (FLOOR / f"boto3-{floor}.dist-info").is_dir(), f"no boto3 {floor} in {FLOOR}: run make setup"
    location = f"{create_bucket(stack, f'floor-{uuid.uuid4().hex[:8]}')}/snapshots/_LOCK.json"
    env = {**os.environ, **MOTO_ENV, "PYTHONPATH": os.pathsep.join([str(FLOOR), str(REPO / "lib")])}
    result = subprocess.run([sys.executable, "-c", LOCK_ON_THE_FLOOR, floor, location, stack.moto_endpoint],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"lock ok on boto3 {floor}" in result.stdout
