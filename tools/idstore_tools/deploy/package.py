"""Build dist/: the idstore wheel, a wheelhouse of its runtime dependencies for EMR's nodes,
the job entry points, the conf files, the bootstrap action and a manifest with checksums.

    python -m idstore_tools.deploy.package --out dist [--no-wheelhouse] [--target 3.11-x86_64 ...]

The wheelhouse is fetched with `pip download --platform ... --only-binary=:all:`, so one
machine builds it for every cluster: manylinux x86_64 and aarch64, CPython 3.9 and 3.11.
PySpark is not in it: EMR has its own.
"""
import argparse
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from idstore_tools.deploy import layout

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
# Amazon Linux 2023 (EMR 7, EMR Serverless 7) has glibc 2.34: any manylinux wheel up to 2_34 runs there.
GLIBC_MINOR = 34
# setup.py lists no package data; without this the wheel lacks base.toml and load_config fails on
# the cluster. A no-op once setup.py ships base.toml itself (setup() arguments win over setup.cfg).
PACKAGE_DATA_CFG = "[options.package_data]\nidstore = base.toml\n"
REQUIRED_IN_WHEEL = ("idstore/__init__.py", "idstore/base.toml", "idstore/config.py")


class PackageError(RuntimeError):
    """dist/ could not be built; the message says which step failed and why."""


@dataclass(frozen=True)
class Target:
    """A Python and CPU the cluster runs: what the wheelhouse must have wheels for."""

    python: str  # "3.9"
    arch: str  # "x86_64" | "aarch64"

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    @property
    def name(self) -> str:
        return f"{self.python}-{self.arch}"

    def platforms(self) -> List[str]:
        # pip does not widen manylinux_2_X tags on its own: list every glibc the nodes can load.
        tags = [f"manylinux_2_{minor}_{self.arch}" for minor in range(GLIBC_MINOR, 16, -1)]
        return tags + [f"manylinux2014_{self.arch}"]

    def pip_args(self) -> List[str]:
        args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", self.python, "--abi", self.abi]
        for tag in self.platforms():
            args += ["--platform", tag]
        return args

    def marker_environment(self) -> Dict[str, str]:
        """PEP 508 marker values on the target (Linux, CPython)."""
        return {
            "python_version": self.python, "python_full_version": f"{self.python}.0",
            "implementation_name": "cpython", "implementation_version": f"{self.python}.0",
            "platform_python_implementation": "CPython", "os_name": "posix", "sys_platform": "linux",
            "platform_system": "Linux", "platform_machine": self.arch, "platform_release": "", "platform_version": "",
        }

    @classmethod
    def parse(cls, text: str) -> "Target":
        python, sep, arch = text.partition("-")
        if not sep or python.count(".") != 1 or arch not in ("x86_64", "aarch64"):
            raise argparse.ArgumentTypeError(f"expected PYTHON-ARCH like 3.9-x86_64 or 3.11-aarch64, got {text!r}")
        return cls(python, arch)


CLUSTER_TARGETS = tuple(Target(python, arch) for python in ("3.9", "3.11") for arch in ("x86_64", "aarch64"))


def local_target() -> Target:
    """This interpreter and machine: for a quick wheelhouse that installs here."""
    return Target(f"{sys.version_info[0]}.{sys.version_info[1]}", platform.machine())


def build(
    out: Path,
    source: Path = REPO,
    targets: Sequence[Target] = CLUSTER_TARGETS,
    wheelhouse: bool = True,
    serverless: bool = True,
    constraints: Optional[Path] = None,
) -> Dict[str, Any]:
    """Build dist/ at `out` (replacing an earlier dist/ there) and return its manifest."""
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()) and not (out / layout.MANIFEST).is_file():
        raise PackageError(f"{out} exists and is not a dist/ folder (no {layout.MANIFEST}); refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private
    try:
        manifest = _build_into(staging, Path(source), targets, wheelhouse, serverless, constraints)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)  # readers never see half a dist/
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _build_into(staging: Path, source: Path, targets: Sequence[Target], wheelhouse: bool, serverless: bool,
                constraints: Optional[Path]) -> Dict[str, Any]:
    wheel = build_wheel(source, staging)
    version = wheel_version(wheel)
    house = staging / layout.WHEELHOUSE
    house.mkdir()
    shutil.copy2(wheel, house / wheel.name)
    packages: Dict[str, Dict[str, str]] = {}
    archives: List[str] = []
    if wheelhouse:
        packages = download_wheelhouse(wheel, house, targets, constraints)
        if serverless:
            for target in targets:
                if target.python == layout.SERVERLESS_PYTHON:
                    archive = staging / layout.serverless_archive(target.python, target.arch)
                    build_serverless_archive(house, [wheel.name, *packages[target.name].values()], target, archive)
                    archives.append(archive.relative_to(staging).as_posix())
    _copy_files(source, staging)
    manifest = {
        "name": "idstore",
        "version": version,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": _git_info(source),
        "wheel": wheel.name,
        "wheelhouse": {"complete": wheelhouse, "targets": {t.name: packages.get(t.name, {}) for t in targets}},
        "serverless_archives": archives,
        "files": file_checksums(staging),
    }
    (staging / layout.MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def build_wheel(source: Path, dest: Path) -> Path:
    """Build the idstore wheel from a clean copy of the source (no build/ or egg-info in the repo)."""
    with tempfile.TemporaryDirectory(prefix="idstore-wheel-") as tmp:
        tree = Path(tmp) / "src"
        tree.mkdir()
        shutil.copy2(source / "setup.py", tree / "setup.py")
        # symlinks (lib/idstore/base.toml -> conf/base.toml) are copied as the files they point at
        shutil.copytree(
            source / "lib", tree / "lib",
            ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "*.pyc"),
        )
        (tree / "setup.cfg").write_text(PACKAGE_DATA_CFG)
        built = Path(tmp) / "wheel"
        run_pip(["wheel", "--no-deps", "--wheel-dir", str(built), str(tree)], "build the idstore wheel")
        wheels = sorted(built.glob("idstore-*.whl"))
        if len(wheels) != 1:
            raise PackageError(f"expected one idstore wheel, pip built {[w.name for w in wheels]}")
        target = dest / wheels[0].name
        shutil.copy2(wheels[0], target)
    with zipfile.ZipFile(target) as archive:
        missing = [name for name in REQUIRED_IN_WHEEL if name not in archive.namelist()]
    if missing:
        raise PackageError(f"{target.name} lacks {', '.join(missing)}")
    return target


def wheel_version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def download_wheelhouse(wheel: Path, house: Path, targets: Sequence[Target],
                        constraints: Optional[Path] = None) -> Dict[str, Dict[str, str]]:
    """Download what `wheel` needs on each target into `house`; {target: {package: wheel file}}."""
    resolved: Dict[str, Dict[str, str]] = {}
    for target in targets:
        with tempfile.TemporaryDirectory(prefix="idstore-wheels-") as tmp:
            wheels = resolve_for_target(wheel, target, Path(tmp), constraints)
            for path in wheels.values():
                if not (house / path.name).exists():
                    shutil.move(str(path), str(house / path.name))
        resolved[target.name] = {name: path.name for name, path in sorted(wheels.items()) if name != "idstore"}
        log.info("wheelhouse for CPython %s: %s", target.name, ", ".join(resolved[target.name].values()))
    return resolved


def resolve_for_target(wheel: Path, target: Target, dest: Path, constraints: Optional[Path] = None,
                       max_rounds: int = 12) -> Dict[str, Path]:
    """The wheels `wheel` needs on `target`, downloaded into `dest`: {package: wheel path}.

    `pip download --python-version` picks wheels for the target but evaluates environment
    markers for the interpreter running pip (3.11 here: no tomli for 3.9, and botocore's
    urllib3<1.27 pin for 3.9 is missed). So dependencies are followed here, markers evaluated
    for the target, and pip downloads each round's requirement set with --no-deps until the set
    stops changing.
    """
    requirements: List[str] = []
    for round_no in range(max_rounds):
        round_dir = dest / f"round{round_no}"
        args = ["download", "--no-deps", "--dest", str(round_dir), *target.pip_args()]
        if constraints:
            args += ["--constraint", str(constraints)]
        log.info("CPython %s: resolving %d requirement(s), round %d", target.name, len(requirements) + 1, round_no + 1)
        run_pip([*args, str(wheel), *requirements], f"download the runtime dependencies for CPython {target.name}")
        wheels = {_project(path.name): path for path in sorted(round_dir.glob("*.whl"))}
        extras = _requested_extras(requirements)
        needed = sorted({
            req for name, path in wheels.items() for req in wheel_requirements(path, target, extras.get(name, ()))
        })
        if needed == requirements:
            return wheels
        requirements = needed
    raise PackageError(f"the dependencies for CPython {target.name} did not settle in {max_rounds} rounds")


def wheel_requirements(wheel: Path, target: Target, extras: Iterable[str] = ()) -> List[str]:
    """Requires-Dist of a wheel that apply on `target`, markers evaluated for the target."""
    markers, requirement_cls = _packaging()
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        text = archive.read(metadata).decode("utf-8")
    environment = target.marker_environment()
    found = []
    for line in text.splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        requirement = requirement_cls(line.split(":", 1)[1].strip())
        applies = requirement.marker is None or any(
            requirement.marker.evaluate({**environment, "extra": extra}) for extra in ("", *extras)
        )
        if applies:
            extras_text = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
            found.append(f"{requirement.name.lower().replace('_', '-')}{extras_text}{requirement.specifier}")
    return found


def _requested_extras(requirements: Sequence[str]) -> Dict[str, Tuple[str, ...]]:
    _, requirement_cls = _packaging()
    wanted: Dict[str, Tuple[str, ...]] = {}
    for text in requirements:
        requirement = requirement_cls(text)
        name = requirement.name.lower().replace("_", "-")
        wanted[name] = tuple(sorted(set(wanted.get(name, ())) | set(requirement.extras)))
    return wanted


def _project(wheel_name: str) -> str:
    return wheel_name.split("-")[0].lower().replace("_", "-")


def _packaging():
    try:
        from packaging import markers, requirements
    except ImportError:  # pip always carries a copy
        from pip._vendor.packaging import markers, requirements
    return markers, requirements.Requirement


def build_serverless_archive(house: Path, wheels: Iterable[str], target: Target, archive: Path) -> Path:
    """The wheels resolved for `target` (idstore's among them), installed into one folder, as a tar.gz.

    EMR Serverless has no bootstrap actions: it unpacks this on every container
    (spark.archives=...#deps) and the jobs find it on PYTHONPATH=./deps. --no-deps with the
    exact files: pip would evaluate markers for this machine's Python, not the target's.
    """
    with tempfile.TemporaryDirectory(prefix="idstore-serverless-") as tmp:
        site = Path(tmp) / "deps"
        run_pip(
            ["install", "--no-index", "--no-deps", "--target", str(site), "--no-compile", *target.pip_args(),
             *(str(house / name) for name in wheels)],
            f"install idstore into the EMR Serverless archive for CPython {target.name}",
            isolated=True,
        )
        shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts of this machine's python
        archive.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
            for child in sorted(site.iterdir()):
                tar.add(str(child), arcname=child.name)
    return archive


def _copy_files(source: Path, staging: Path) -> None:
    for relative in layout.JOBS.values():
        _copy(source / relative, staging / relative)
    for path in sorted((source / layout.CONF_DIR).iterdir()):
        if path.is_file():
            _copy(path, staging / layout.CONF_DIR / path.name)
    _copy(source / layout.BOOTSTRAP, staging / layout.BOOTSTRAP)
    (staging / layout.BOOTSTRAP).chmod(0o755)


def _copy(src: Path, dst: Path) -> None:
    if not src.is_file():
        raise PackageError(f"{src} is missing")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_checksums(root: Path) -> Dict[str, Dict[str, Any]]:
    """{relative path: {sha256, size}} of every file under root except the manifest itself."""
    return {
        path.relative_to(root).as_posix(): {"sha256": sha256_of(path), "size": path.stat().st_size}
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.relative_to(root).as_posix() != layout.MANIFEST
    }


def verify_dist(dist: Path) -> Dict[str, Any]:
    """The manifest of `dist`, after checking every file it lists against its checksum."""
    manifest_path = Path(dist) / layout.MANIFEST
    if not manifest_path.is_file():
        raise PackageError(f"{manifest_path} not found; run `make package` first")
    manifest = json.loads(manifest_path.read_text())
    for relative, expected in manifest["files"].items():
        path = Path(dist) / relative
        if not path.is_file() or sha256_of(path) != expected["sha256"]:
            raise PackageError(f"{path} is missing or does not match its checksum in {layout.MANIFEST}")
    return manifest


def run_pip(args: Iterable[str], what: str, isolated: bool = False) -> None:
    """Run this interpreter's pip; `isolated` ignores pip config and PIP_* variables (no extra indexes)."""
    command = [sys.executable, "-m", "pip", *args]
    env = dict(os.environ)
    if isolated:
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    log.debug("%s: %s", what, " ".join(command))
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise PackageError(f"could not {what} (pip exit {result.returncode}):\n{result.stderr[-3000:]}")


def _git_info(source: Path) -> Dict[str, Any]:
    try:
        commit = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"commit": commit, "dirty": bool(status.strip())}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m idstore_tools.deploy.package",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="dist", type=Path, help="where to build (replaced; default dist)")
    parser.add_argument("--source", default=REPO, type=Path, help="the idstore source tree (default: this one)")
    parser.add_argument("--no-wheelhouse", action="store_true",
                        help="skip the dependency wheelhouse (quick local builds)")
    parser.add_argument("--no-serverless", action="store_true", help="skip the EMR Serverless dependency archives")
    parser.add_argument("--target", dest="targets", action="append", type=Target.parse, metavar="PYTHON-ARCH",
                        help="wheelhouse target (repeatable; default: 3.9 and 3.11 on x86_64 and aarch64)")
    parser.add_argument("--local", action="store_true", help="wheelhouse for this interpreter and machine only")
    parser.add_argument("--constraint", type=Path, help="pip constraints file pinning the dependency versions")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    targets = [local_target()] if args.local else (args.targets or list(CLUSTER_TARGETS))
    try:
        manifest = build(args.out, args.source, targets, wheelhouse=not args.no_wheelhouse,
                         serverless=not args.no_serverless, constraints=args.constraint)
    except PackageError as exc:
        print(f"idstore package: {exc}", file=sys.stderr)
        return 1
    print(f"built {args.out}: idstore {manifest['version']}, {len(manifest['files'])} files")
    for name, packages in manifest["wheelhouse"]["targets"].items():
        listed = ", ".join(f"{k} {v.split('-')[1]}" for k, v in sorted(packages.items())) or "(no wheelhouse)"
        print(f"  CPython {name}: {listed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
