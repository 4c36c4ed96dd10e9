"""dist/: what `make package` builds (only the idstore distribution and its runtime dependencies,
resolved by uv for each target), and the bootstrap action installing it from the wheelhouse alone."""
import glob
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from idstore import __version__
from idstore_tools.deploy import layout, package

REPO = Path(__file__).resolve().parents[2]
BOOTSTRAP = REPO / "bootstrap" / "install-idstore.sh"
WHEEL = f"idstore-{__version__}-py3-none-any.whl"
ARCH = platform.machine()
PROBE = ("import idstore, pyarrow, pandas, boto3, idstore.config as c; c.load_config(); print(idstore.__file__)\n"
         "try:\n    import idstore_tools\nexcept ImportError:\n    pass\n"
         "else:\n    raise SystemExit('idstore_tools is importable: ' + idstore_tools.__file__)")


def python39() -> str:
    """A CPython 3.9 (what EMR's python3 is): from pyenv, or python3.9 on PATH (a pyenv shim may
    name one it will not run, so each is tried)."""
    for found in [*sorted(glob.glob("/root/.pyenv/versions/3.9.*/bin/python3.9")), shutil.which("python3.9")]:
        if found and subprocess.run([found, "-c", "import sys; assert sys.version_info[:2] == (3, 9)"],
                                    capture_output=True).returncode == 0:
            return found
    pytest.skip("no CPython 3.9 here (pyenv or python3.9 on PATH)")


def fresh_venv(python: str, where: Path) -> str:
    """A new venv of `python`, with pip and nothing else; its interpreter."""
    subprocess.run([python, "-m", "venv", str(where)], check=True, timeout=300)
    return str(where / "bin" / "python")


def top_levels(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        return {name.split("/", 1)[0] for name in archive.namelist()}


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


def test_the_wheel_is_lib_idstore_only_with_base_toml_and_no_tooling(quick_dist):
    names = zipfile.ZipFile(quick_dist / WHEEL).namelist()
    with zipfile.ZipFile(quick_dist / WHEEL) as wheel:
        assert wheel.read("idstore/base.toml") == (REPO / "conf/base.toml").read_bytes()
    assert {n.split("/", 1)[0] for n in names} == {"idstore", f"idstore-{__version__}.dist-info"}
    # every module of lib/idstore, and nothing else: no tooling, no tests, no build leftovers
    modules = {n for n in names if n.endswith(".py")}
    assert modules == {p.relative_to(REPO / "lib").as_posix() for p in (REPO / "lib/idstore").rglob("*.py")}
    for gone in ("idstore/deploy/", "idstore/local/", "idstore/testing/", "idstore/demo.py", "idstore/cli.py"):
        assert not [n for n in names if n.startswith(gone)], gone
    assert not [n for n in names if "__pycache__" in n or "idstore_tools" in n]
    metadata = zipfile.ZipFile(quick_dist / WHEEL).read(f"idstore-{__version__}.dist-info/METADATA").decode()
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]  # the extras are not installed
    assert {re.split(r"[<>=!~ ;\[]", r)[0].lower() for r in requires} == {"boto3", "pyarrow", "pandas", "tomli"}


def test_make_package_prints_the_idstore_wheel_and_what_stays_off_the_cluster(quick_build):
    size = (quick_build.out / WHEEL).stat().st_size
    assert f"{WHEEL}: {package._size(size)}" in quick_build.stdout
    assert "--no-wheelhouse" in quick_build.stdout
    shipped = re.search(r"not shipped: idstore_tools-\S+\.whl \((\d+) kB\)", quick_build.stdout)
    assert shipped, quick_build.stdout


def test_a_tree_with_tooling_under_lib_is_refused(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(REPO / "lib", source / "lib", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    shutil.copy2(REPO / "setup.py", source / "setup.py")
    (source / "lib" / "idstore_tools").mkdir()
    (source / "lib" / "idstore_tools" / "__init__.py").write_text("")
    with pytest.raises(package.PackageError, match="more than the idstore package: idstore_tools"):
        package.build_wheel(source, tmp_path)


def test_a_wheelhouse_with_the_tooling_in_it_is_refused(tmp_path):
    house = tmp_path / "wheelhouse"
    house.mkdir()
    with zipfile.ZipFile(house / "other-1.0-py3-none-any.whl", "w") as archive:
        archive.writestr("other/__init__.py", "")
    package.check_wheelhouse(house)
    with zipfile.ZipFile(house / "sneaky-1.0-py3-none-any.whl", "w") as archive:
        archive.writestr("idstore_tools/__init__.py", "")
    with pytest.raises(package.PackageError, match="sneaky-1.0.*carries idstore_tools"):
        package.check_wheelhouse(house)
    (house / "sneaky-1.0-py3-none-any.whl").unlink()
    with zipfile.ZipFile(house / "idstore_tools-0.1.0-py3-none-any.whl", "w") as archive:
        archive.writestr("x/__init__.py", "")
    with pytest.raises(package.PackageError, match="is the tooling"):
        package.check_wheelhouse(house)


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
    assert target.uv_compile_args() == ["--python-version", "3.9", "--python-platform", "aarch64-manylinux_2_34",
                                        "--only-binary", ":all:"]
    assert package.Target("3.11", "x86_64").uv_platform == "x86_64-manylinux_2_34"


# -- the wheelhouse -----------------------------------------------------------------------------
def test_uv_is_called_for_the_target_and_a_pin_of_the_tooling_is_refused(quick_dist, tmp_path, monkeypatch):
    calls = []

    def fake_run(command, what, env=None):
        calls.append(command)
        out = Path(command[command.index("--output-file") + 1])
        out.write_text("boto3==1.40.0 \\\n    --hash=sha256:00\nidstore-tools==0.1.0 \\\n    --hash=sha256:11\n")

    monkeypatch.setattr(package, "_run", fake_run)
    with pytest.raises(package.PackageError, match="include idstore-tools"):
        package.compile_requirements(quick_dist / WHEEL, package.Target("3.9", "aarch64"), tmp_path)
    command = calls[0]
    assert command[1:3] == ["pip", "compile"]
    assert (tmp_path / "requirements.in").read_text() == f"idstore @ {(quick_dist / WHEEL).resolve().as_uri()}\n"
    for flag, value in [("--python-version", "3.9"), ("--python-platform", "aarch64-manylinux_2_34"),
                        ("--only-binary", ":all:"), ("--no-emit-package", "idstore")]:
        assert command[command.index(flag) + 1] == value
    assert "--generate-hashes" in command
    assert package.pinned_requirements(Path(command[command.index("--output-file") + 1])) == {
        "boto3": "1.40.0", "idstore-tools": "0.1.0"}


def test_uv_evaluates_markers_for_the_target_python_not_this_one(quick_dist, tmp_path, online):
    other_arch = "aarch64" if ARCH == "x86_64" else "x86_64"  # a CPU this machine is not
    pins = {}
    for python in ("3.9", "3.11"):
        target = package.Target(python, other_arch)
        pins[python] = package.pinned_requirements(
            package.compile_requirements(quick_dist / WHEEL, target, tmp_path / target.name))
    assert "tomli" in pins["3.9"] and "tomli" not in pins["3.11"]  # tomllib is 3.11+
    assert tuple(int(p) for p in pins["3.9"]["urllib3"].split(".")[:2]) < (1, 27)  # botocore's pin on 3.9
    assert {"boto3", "botocore", "pyarrow", "pandas", "numpy"} <= set(pins["3.11"])
    for found in pins.values():
        assert "pyspark" not in found and "idstore" not in found and "idstore-tools" not in found


def test_a_constraints_file_pins_what_uv_picks(quick_dist, tmp_path, online):
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("boto3==1.40.0\n")
    target = package.Target("3.11", "aarch64" if ARCH == "x86_64" else "x86_64")
    pins = package.compile_requirements(quick_dist / WHEEL, target, tmp_path / "pins", constraints)
    found = package.pinned_requirements(pins)
    assert found["boto3"] == "1.40.0" and found["botocore"].startswith("1.40.")


def test_the_manifest_lists_the_uv_pinned_wheels_of_each_target(cluster_dist):
    manifest = json.loads((cluster_dist / "manifest.json").read_text())
    assert manifest["wheelhouse"]["complete"] is True
    assert manifest["wheelhouse"]["resolver"]["tool"] == "uv"
    assert manifest["wheelhouse"]["resolver"]["platforms"][f"3.9-{ARCH}"] == f"{ARCH}-manylinux_2_34"
    targets = manifest["wheelhouse"]["targets"]
    assert set(targets) == {f"3.9-{ARCH}", f"3.11-{ARCH}"}
    for name, wheels in targets.items():
        assert {"boto3", "botocore", "pyarrow", "pandas", "numpy"} <= set(wheels)
        assert "pyspark" not in wheels and "idstore" not in wheels
        for wheel in wheels.values():
            assert f"wheelhouse/{wheel}" in manifest["files"]
            assert "-none-any.whl" in wheel or f"cp{name.split('-')[0].replace('.', '')}" in wheel
    assert "tomli" in targets[f"3.9-{ARCH}"] and "tomli" not in targets[f"3.11-{ARCH}"]
    assert targets[f"3.9-{ARCH}"]["urllib3"].startswith("urllib3-1.26.")
    # the wheelhouse is exactly idstore and the pinned wheels of the targets
    on_disk = {p.name for p in (cluster_dist / "wheelhouse").iterdir()}
    assert on_disk == {WHEEL} | {w for wheels in targets.values() for w in wheels.values()}


def test_nothing_in_the_wheelhouse_or_the_serverless_archive_is_tooling(cluster_dist):
    for wheel in sorted((cluster_dist / "wheelhouse").glob("*.whl")):
        assert not wheel.name.lower().startswith(("idstore_tools", "idstore-tools")), wheel.name
        assert "idstore_tools" not in top_levels(wheel), wheel.name
    archive = cluster_dist / layout.serverless_archive("3.9", ARCH)
    with tarfile.open(archive) as tar:
        tops = {name.split("/", 1)[0] for name in tar.getnames()}
    assert "idstore" in tops and "pyarrow" in tops and "tomli" in tops
    assert not [t for t in tops if t.startswith("idstore_tools")]


def test_the_summary_gives_each_target_its_wheels_and_size_and_the_total(cluster_dist):
    manifest = json.loads((cluster_dist / "manifest.json").read_text())
    text = package.summary(cluster_dist, manifest)
    house = list((cluster_dist / "wheelhouse").iterdir())
    for name, wheels in manifest["wheelhouse"]["targets"].items():
        size = sum((cluster_dist / "wheelhouse" / w).stat().st_size for w in [WHEEL, *wheels.values()])
        idstore = package._size((cluster_dist / WHEEL).stat().st_size)
        assert f"CPython {name}: {len(wheels) + 1} wheels, {package._size(size)} (idstore {idstore})" in text
    assert f"wheelhouse: {len(house)} wheels, {package._size(sum(p.stat().st_size for p in house))} in all" in text


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


@pytest.mark.parametrize("python_version", ["3.9", "3.11"])
def test_bootstrap_installs_idstore_from_the_wheelhouse_alone_into_a_fresh_venv(cluster_dist, stub_s3, tmp_path,
                                                                                 python_version):
    base = python39() if python_version == "3.9" else sys.executable
    python = fresh_venv(base, tmp_path / "venv")
    version = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == python_version
    result = run_bootstrap(stub_s3, cluster_dist, python, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"idstore {__version__}" in result.stdout
    probe = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, cwd=str(tmp_path), timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(tmp_path / "venv"))  # the installed wheel, not this checkout
    frozen = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True)
    installed = {p["name"].lower() for p in json.loads(frozen.stdout)}
    assert {"idstore", "boto3", "pyarrow", "pandas"} <= installed
    assert "pyspark" not in installed and "idstore-tools" not in installed and "moto" not in installed
    assert ("tomli" in installed) == (python_version == "3.9")

    # a second run (a node re-bootstrapped) only reads the manifest and changes nothing
    calls = stub_s3[0] / "calls.log"
    calls.write_text("")
    again = run_bootstrap(stub_s3, cluster_dist, python, tmp_path)
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
def test_serverless_archive_holds_idstore_and_its_dependencies_for_pythonpath(cluster_dist, tmp_path):
    """The archive `make package` built for EMR Serverless (CPython 3.9), on a 3.9 without site-packages."""
    archive = cluster_dist / layout.serverless_archive(layout.SERVERLESS_PYTHON, ARCH)
    manifest = json.loads((cluster_dist / "manifest.json").read_text())
    assert archive.relative_to(cluster_dist).as_posix() in manifest["serverless_archives"]
    unpacked = tmp_path / "deps"  # what spark.archives=...#deps unpacks on each container
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked)
    # -S: no site-packages, only PYTHONPATH=./deps as on Serverless
    probe = subprocess.run(
        [python39(), "-S", "-c", PROBE],
        env={"PYTHONPATH": "./deps", "PATH": os.environ["PATH"]}, cwd=str(tmp_path),
        capture_output=True, text=True, timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()).resolve().is_relative_to(unpacked)  # 3.9 keeps ./deps as given
    assert layout.serverless_archive("3.9", "x86_64") == "serverless/deps-cp39-x86_64.tar.gz"
