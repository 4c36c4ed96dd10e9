"""dist/: what `make package` builds, and the bootstrap action installing it from the wheelhouse alone."""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

from idstore import __version__
from idstore_tools.deploy import layout, package

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP = REPO / "bootstrap" / "install-idstore.sh"


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def quick_dist(tmp_path_factory) -> Path:
    """dist/ without the wheelhouse, as `make package` builds it with --no-wheelhouse."""
    out = tmp_path_factory.mktemp("quick") / "dist"
    result = subprocess.run([sys.executable, "-m", "idstore_tools.deploy.package", "--out", str(out), "--no-wheelhouse"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def local_dist(tmp_path_factory) -> Path:
    """dist/ with a wheelhouse for this interpreter and machine only (the cluster's four take longer)."""
    if not pypi_reachable():
        pytest.skip("no package index reachable: the wheelhouse is downloaded")
    out = tmp_path_factory.mktemp("local") / "dist"
    package.build(out, targets=[package.local_target()], serverless=False)
    return out


# -- the layout and the manifest ----------------------------------------------------------------
def test_dist_holds_the_wheel_jobs_conf_bootstrap_and_a_manifest_of_checksums(quick_dist):
    manifest = json.loads((quick_dist / "manifest.json").read_text())
    wheel = f"idstore-{__version__}-py3-none-any.whl"
    assert manifest["version"] == __version__ and manifest["wheel"] == wheel
    expected = {wheel, f"wheelhouse/{wheel}", "jobs/sync_product_ids.py", "jobs/filter_failure_events.py",
                "bootstrap/install-idstore.sh", "conf/base.toml", "conf/prod.example.toml", "conf/log4j2.properties"}
    assert expected <= set(manifest["files"])
    on_disk = {p.relative_to(quick_dist).as_posix() for p in quick_dist.rglob("*") if p.is_file()}
    assert on_disk == set(manifest["files"]) | {"manifest.json"}
    for relative, entry in manifest["files"].items():
        data = (quick_dist / relative).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert (quick_dist / "jobs/sync_product_ids.py").read_bytes() == (REPO / "jobs/sync_product_ids.py").read_bytes()
    assert os.access(quick_dist / "bootstrap/install-idstore.sh", os.X_OK)
    assert manifest["wheelhouse"]["complete"] is False


def test_the_wheel_ships_base_toml_and_no_test_or_build_leftovers(quick_dist):
    names = zipfile.ZipFile(quick_dist / f"idstore-{__version__}-py3-none-any.whl").namelist()
    assert "idstore/base.toml" in names and "idstore/deploy/package.py" in names
    with zipfile.ZipFile(quick_dist / f"idstore-{__version__}-py3-none-any.whl") as wheel:
        assert wheel.read("idstore/base.toml") == (REPO / "conf/base.toml").read_bytes()
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", "jobs/"))]


def test_a_changed_file_in_dist_is_caught(quick_dist, tmp_path):
    copy = tmp_path / "dist"
    shutil.copytree(quick_dist, copy)
    package.verify_dist(copy)
    (copy / "jobs/sync_product_ids.py").write_text("print('not the job')\n")
    with pytest.raises(package.PackageError, match="sync_product_ids.py"):
        package.verify_dist(copy)


def test_building_refuses_to_replace_a_folder_that_is_not_a_dist(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(package.PackageError, match="not a dist"):
        package.build(tmp_path, wheelhouse=False)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_cluster_targets_are_cpython_39_and_311_on_both_architectures():
    assert {t.name for t in package.CLUSTER_TARGETS} == {"3.9-x86_64", "3.9-aarch64", "3.11-x86_64", "3.11-aarch64"}
    target = package.Target("3.9", "aarch64")
    args = target.pip_args()
    assert args[:7] == ["--only-binary=:all:", "--implementation", "cp", "--python-version", "3.9", "--abi", "cp39"]
    assert "manylinux_2_34_aarch64" in args and "manylinux2014_aarch64" in args  # Amazon Linux 2023: glibc 2.34
    assert "manylinux_2_35_aarch64" not in args


# -- the wheelhouse -----------------------------------------------------------------------------
def test_dependency_markers_are_evaluated_for_the_target_not_this_python(quick_dist, tmp_path):
    idstore_wheel = quick_dist / f"idstore-{__version__}-py3-none-any.whl"
    for_39 = package.wheel_requirements(idstore_wheel, package.Target("3.9", "x86_64"))
    for_311 = package.wheel_requirements(idstore_wheel, package.Target("3.11", "x86_64"))
    assert any(r.startswith("tomli") for r in for_39)  # tomllib is 3.11+
    assert not any(r.startswith("tomli") for r in for_311)
    assert not any(r.startswith("pyspark") for r in for_39 + for_311)  # EMR has its own
    # botocore-style pins that differ by Python version and CPU
    wheel = tmp_path / "dep-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("dep-1.0.dist-info/METADATA", "\n".join([
            "Metadata-Version: 2.1", "Name: dep", "Version: 1.0",
            'Requires-Dist: urllib3 (<1.27,>=1.25.4) ; python_version < "3.10"',
            'Requires-Dist: urllib3 (!=2.2.0,<3,>=1.25.4) ; python_version >= "3.10"',
            'Requires-Dist: only-arm ; platform_machine == "aarch64"',
            "Requires-Dist: test-only ; extra == 'test'",
            "Requires-Dist: Some_Thing[fast]>=2",
        ]))
    assert package.wheel_requirements(wheel, package.Target("3.9", "x86_64")) == [
        "urllib3<1.27,>=1.25.4", "some-thing[fast]>=2"]
    assert package.wheel_requirements(wheel, package.Target("3.11", "aarch64")) == [
        "urllib3!=2.2.0,<3,>=1.25.4", "only-arm", "some-thing[fast]>=2"]
    assert "test-only" in package.wheel_requirements(wheel, package.Target("3.9", "x86_64"), extras=["test"])


def test_the_manifest_lists_the_wheels_of_each_target(local_dist):
    manifest = json.loads((local_dist / "manifest.json").read_text())
    target = package.local_target()
    wheels = manifest["wheelhouse"]["targets"][target.name]
    assert {"boto3", "botocore", "pyarrow"} <= set(wheels)
    assert "pyspark" not in wheels
    for name in wheels.values():
        assert f"wheelhouse/{name}" in manifest["files"]


@pytest.fixture
def stub_s3(tmp_path):
    """`aws s3 cp` served from a local folder, and a `sudo` that just runs the command."""
    root, bin_dir = tmp_path / "s3", tmp_path / "bin"
    root.mkdir()
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(r"""#!/usr/bin/env bash
set -euo pipefail
[[ "$1 $2" == "s3 cp" ]] || { echo "stub aws: unsupported: $*" >&2; exit 2; }
shift 2
echo "$*" >> "$STUB_S3_ROOT/calls.log"
recursive=0; paths=()
for arg in "$@"; do
  case "$arg" in --recursive) recursive=1 ;; --*) ;; *) paths+=("$arg") ;; esac
done
source_path="$STUB_S3_ROOT/${paths[0]#s3://}"
if [[ $recursive == 1 ]]; then
  mkdir -p "${paths[1]}"; cp -R "$source_path/." "${paths[1]}/"
else
  cp "$source_path" "${paths[1]}"
fi
""")
    (bin_dir / "sudo").write_text('#!/usr/bin/env bash\nexec "$@"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return root, bin_dir


def run_bootstrap(stub, dist: Path, python: str, work: Path):
    root, bin_dir = stub
    release = root / "artifacts" / "idstore" / "releases" / __version__
    if not release.exists():
        release.parent.mkdir(parents=True)
        shutil.copytree(dist, release)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(work), "STUB_S3_ROOT": str(root),
        "IDSTORE_BOOTSTRAP_DIR": str(work / "bootstrap"),
        # what the script must ignore: any index, find-links or config of the node
        "PIP_INDEX_URL": "http://127.0.0.1:9/nothing", "PIP_FIND_LINKS": "/opt/wheels",
    }
    return subprocess.run(["bash", str(BOOTSTRAP), f"s3://artifacts/idstore/releases/{__version__}", python],
                          env=env, capture_output=True, text=True, timeout=600)


def test_bootstrap_installs_idstore_from_the_wheelhouse_alone_into_a_fresh_venv(local_dist, stub_s3, tmp_path):
    fresh = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(fresh)
    python = str(fresh / "bin" / "python")
    result = run_bootstrap(stub_s3, local_dist, python, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"idstore {__version__}" in result.stdout
    probe = subprocess.run(
        [python, "-c", "import idstore, pyarrow, boto3, idstore.config as c; c.load_config(); print(idstore.__file__)"],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(fresh))  # the installed wheel, not this checkout
    frozen = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True)
    installed = {p["name"].lower() for p in json.loads(frozen.stdout)}
    assert {"idstore", "boto3", "pyarrow"} <= installed and "pyspark" not in installed

    # a second run (a node re-bootstrapped) only reads the manifest and changes nothing
    calls = stub_s3[0] / "calls.log"
    calls.write_text("")
    again = run_bootstrap(stub_s3, local_dist, python, tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already installed" in again.stderr
    assert [line.split()[-2].rsplit("/", 1)[-1] for line in calls.read_text().splitlines()] == ["manifest.json"]


def test_bootstrap_refuses_a_wheelhouse_that_does_not_match_the_manifest(quick_dist, stub_s3, tmp_path):
    # an interpreter without site-packages, so idstore is not already there
    python = tmp_path / "python-no-site"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    python.chmod(0o755)
    dist = tmp_path / "tampered"
    shutil.copytree(quick_dist, dist)
    with open(dist / "wheelhouse" / f"idstore-{__version__}-py3-none-any.whl", "ab") as wheel:
        wheel.write(b"tampered")
    result = run_bootstrap(stub_s3, dist, str(python), tmp_path)
    assert result.returncode != 0
    assert "checksum mismatch" in result.stderr


def test_bootstrap_script_is_valid_bash_with_strict_mode():
    text = BOOTSTRAP.read_text()
    assert "set -euo pipefail" in text and "--no-index" in text and "--find-links" in text
    assert subprocess.run(["bash", "-n", str(BOOTSTRAP)]).returncode == 0
    # make setup installs shellcheck with the other system packages
    result = subprocess.run(["shellcheck", str(BOOTSTRAP)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# -- EMR Serverless -----------------------------------------------------------------------------
def test_serverless_archive_holds_idstore_and_its_dependencies_for_pythonpath(local_dist, tmp_path):
    target = package.local_target()
    manifest = json.loads((local_dist / "manifest.json").read_text())
    wheels = [manifest["wheel"], *manifest["wheelhouse"]["targets"][target.name].values()]
    archive = package.build_serverless_archive(local_dist / "wheelhouse", wheels, target, tmp_path / "deps.tar.gz")
    unpacked = tmp_path / "deps"  # what spark.archives=...#deps unpacks on each container
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked)
    # -S: no site-packages, only PYTHONPATH=./deps as on Serverless
    probe = subprocess.run(
        [sys.executable, "-S", "-c",
         "import idstore, pyarrow, boto3, idstore.config as c; c.load_config(); print(idstore.__file__)"],
        env={"PYTHONPATH": "./deps", "PATH": os.environ["PATH"]}, cwd=str(tmp_path),
        capture_output=True, text=True, timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(unpacked))
    assert layout.serverless_archive("3.9", "x86_64") == "serverless/deps-cp39-x86_64.tar.gz"
