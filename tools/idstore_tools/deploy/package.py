"""Build dist/: the idstore wheel, a wheelhouse of its runtime dependencies for EMR's nodes,
the job entry points, the conf files, the bootstrap action and a manifest with checksums.

    python -m idstore_tools.deploy.package --out dist [--no-wheelhouse] [--target 3.11-x86_64 ...]

Only the `idstore` distribution (lib/idstore, what runs on the cluster) and its runtime
dependencies go into dist/; idstore-tools (tools/, this module among it) never does.
The wheelhouse is resolved by uv for each target interpreter and platform
(`uv pip compile --python-version 3.9 --python-platform x86_64-manylinux_2_34`: markers are
evaluated for the target, not for the Python running this) and then fetched, exactly the
pinned set, with `pip download --no-deps --only-binary=:all: --platform ...`, so one machine
builds it for every cluster: manylinux x86_64 and aarch64, CPython 3.9 and 3.11.
PySpark is not in it: EMR has its own.
"""
import argparse
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

from idstore_tools.deploy import layout

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
# Amazon Linux 2023 (EMR 7, EMR Serverless 7) has glibc 2.34: any manylinux wheel up to 2_34 runs there.
GLIBC_MINOR = 34
# the jar is built by make setup (scripts/build-jvm.sh); without it the filter runs its slower built-in test
REQUIRED_IN_WHEEL = ("idstore/__init__.py", "idstore/base.toml", "idstore/config.py", "idstore/jars/idstore-jvm.jar")
# what the cluster wheel and wheelhouse must never hold: the tooling, its own distribution
TOOLS_PACKAGE = "idstore_tools"
TOOLS_DISTRIBUTION = "idstore-tools"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


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

    @property
    def uv_platform(self) -> str:
        """uv's --python-platform: manylinux wheels up to this glibc, markers for Linux on this CPU."""
        return f"{self.arch}-manylinux_2_{GLIBC_MINOR}"

    def platforms(self) -> List[str]:
        # pip does not widen manylinux_2_X tags on its own: list every glibc the nodes can load.
        tags = [f"manylinux_2_{minor}_{self.arch}" for minor in range(GLIBC_MINOR, 16, -1)]
        return tags + [f"manylinux2014_{self.arch}"]

    def pip_args(self) -> List[str]:
        args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", self.python, "--abi", self.abi]
        for tag in self.platforms():
            args += ["--platform", tag]
        return args

    def uv_compile_args(self) -> List[str]:
        return ["--python-version", self.python, "--python-platform", self.uv_platform, "--only-binary", ":all:"]

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
    resolver: Dict[str, Any] = {}
    if wheelhouse:
        packages = download_wheelhouse(wheel, house, targets, constraints)
        check_wheelhouse(house)
        resolver = {"tool": "uv", "version": uv_version(),
                    "platforms": {t.name: t.uv_platform for t in targets}}
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
        "wheelhouse": {"complete": wheelhouse, "resolver": resolver,
                       "targets": {t.name: packages.get(t.name, {}) for t in targets}},
        "serverless_archives": archives,
        "files": file_checksums(staging),
    }
    (staging / layout.MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def build_wheel(source: Path, dest: Path) -> Path:
    """Build the idstore wheel from a clean copy of the source: setup.py and lib/ only (no tools/,
    no build/ or egg-info), so nothing of idstore-tools can end up in it."""
    with tempfile.TemporaryDirectory(prefix="idstore-wheel-") as tmp:
        tree = Path(tmp) / "src"
        tree.mkdir()
        shutil.copy2(source / "setup.py", tree / "setup.py")
        # symlinks (lib/idstore/base.toml -> conf/base.toml) are copied as the files they point at
        shutil.copytree(
            source / "lib", tree / "lib",
            ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "*.pyc"),
        )
        built = Path(tmp) / "wheel"
        run_pip(["wheel", "--no-deps", "--wheel-dir", str(built), str(tree)], "build the idstore wheel")
        wheels = sorted(built.glob("*.whl"))
        if len(wheels) != 1 or not wheels[0].name.startswith("idstore-"):
            raise PackageError(f"expected one idstore wheel, pip built {[w.name for w in wheels]}")
        target = dest / wheels[0].name
        shutil.copy2(wheels[0], target)
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
    missing = [name for name in REQUIRED_IN_WHEEL if name not in names]
    if missing:
        raise PackageError(f"{target.name} lacks {', '.join(missing)} (make setup builds idstore's jar)")
    version = wheel_version(target)
    stray = sorted({n.split("/", 1)[0] for n in names} - {"idstore", f"idstore-{version}.dist-info"})
    if stray:
        raise PackageError(f"{target.name} holds more than the idstore package: {', '.join(stray)}; "
                           "the cluster wheel is lib/idstore only (the tooling is idstore-tools, in tools/)")
    return target


def wheel_version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def download_wheelhouse(wheel: Path, house: Path, targets: Sequence[Target],
                        constraints: Optional[Path] = None) -> Dict[str, Dict[str, str]]:
    """Download what `wheel` needs on each target into `house`; {target: {package: wheel file}}."""
    resolved: Dict[str, Dict[str, str]] = {}
    for target in targets:
        with tempfile.TemporaryDirectory(prefix="idstore-wheels-") as tmp:
            pins = compile_requirements(wheel, target, Path(tmp), constraints)
            wheels = download_pinned(pins, target, Path(tmp) / "wheels")
            for path in wheels.values():
                if not (house / path.name).exists():
                    shutil.move(str(path), str(house / path.name))
        resolved[target.name] = {name: path.name for name, path in sorted(wheels.items())}
        log.info("wheelhouse for CPython %s: %s", target.name, ", ".join(resolved[target.name].values()))
    return resolved


def compile_requirements(wheel: Path, target: Target, dest: Path, constraints: Optional[Path] = None) -> Path:
    """`uv pip compile` of the idstore wheel for `target`: a requirements file of every runtime
    dependency pinned (==) with its hashes, idstore itself left out; its path.

    uv evaluates the markers for the target (tomli and botocore's urllib3<1.27 on 3.9, not on
    3.11) and, with --only-binary, picks only versions that have a wheel for its platform.
    """
    dest.mkdir(parents=True, exist_ok=True)
    source = dest / "requirements.in"
    source.write_text(f"idstore @ {wheel.resolve().as_uri()}\n")
    pins = dest / f"requirements-{target.name}.txt"
    command = [uv_binary(), "pip", "compile", str(source), "--output-file", str(pins), *target.uv_compile_args(),
               "--generate-hashes", "--no-emit-package", "idstore", "--no-header", "--no-annotate",
               "--no-python-downloads", "--quiet", *_uv_index_args()]
    if constraints:
        command += ["--constraint", str(Path(constraints).resolve())]
    log.info("CPython %s: uv pip compile --python-version %s --python-platform %s", target.name, target.python,
             target.uv_platform)
    _run(command, f"resolve the runtime dependencies for CPython {target.name} with uv")
    pinned = pinned_requirements(pins)
    if TOOLS_DISTRIBUTION in pinned:
        raise PackageError(f"the cluster's dependencies for CPython {target.name} include {TOOLS_DISTRIBUTION}; "
                           "the tooling never ships to the cluster (check install_requires in setup.py)")
    return pins


def pinned_requirements(pins: Path) -> Dict[str, str]:
    """{normalised project: version} of a requirements file of `name==version` lines."""
    found: Dict[str, str] = {}
    for line in pins.read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            found[_normalise(match.group(1))] = match.group(2)
    return found


def download_pinned(pins: Path, target: Target, dest: Path) -> Dict[str, Path]:
    """`pip download --no-deps` of exactly the pinned set (hashes checked) as wheels for `target`;
    {package: wheel path}. Nothing is resolved here: uv did that for the target."""
    pinned = pinned_requirements(pins)
    run_pip(["download", "--no-deps", "--require-hashes", "--requirement", str(pins), "--dest", str(dest),
             *target.pip_args()], f"download the runtime dependencies for CPython {target.name}")
    wheels = {_project(path.name): path for path in sorted(dest.glob("*.whl"))}
    versions = {name: path.name.split("-")[1] for name, path in wheels.items()}
    if versions != pinned:
        raise PackageError(f"pip downloaded {sorted(versions.items())} for CPython {target.name}, "
                           f"uv pinned {sorted(pinned.items())}")
    return wheels


def check_wheelhouse(house: Path) -> None:
    """No wheel in the wheelhouse is idstore-tools or carries a module of it."""
    for wheel in sorted(house.glob("*.whl")):
        if _project(wheel.name) == TOOLS_DISTRIBUTION:
            raise PackageError(f"{wheel.name} is the tooling; it never ships to the cluster")
        with zipfile.ZipFile(wheel) as archive:
            if any(n.split("/", 1)[0] == TOOLS_PACKAGE for n in archive.namelist()):
                raise PackageError(f"{wheel.name} carries {TOOLS_PACKAGE}; the tooling never ships to the cluster")


def uv_binary() -> str:
    """uv, from the `uv` package in this environment (the dev extra) or from PATH."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found
    raise PackageError("uv not found: it resolves the wheelhouse (pip install -e '.[dev]', or put uv on PATH); "
                       "--no-wheelhouse builds without it")


def uv_version() -> str:
    result = subprocess.run([uv_binary(), "--version"], capture_output=True, text=True)
    return result.stdout.split()[1] if result.returncode == 0 and result.stdout.split()[1:] else "unknown"


def _uv_index_args() -> List[str]:
    """pip downloads from PIP_INDEX_URL when it is set; uv must resolve against the same index."""
    if os.environ.get("UV_DEFAULT_INDEX") or os.environ.get("UV_INDEX_URL"):
        return []
    index = os.environ.get("PIP_INDEX_URL")
    return ["--default-index", index] if index else []


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project(wheel_name: str) -> str:
    return _normalise(wheel_name.split("-")[0])


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
    env = dict(os.environ)
    if isolated:
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    _run([sys.executable, "-m", "pip", *args], what, env)


def _run(command: List[str], what: str, env: Optional[Dict[str, str]] = None) -> None:
    log.debug("%s: %s", what, " ".join(command))
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tool = Path(command[0]).name if "pip" not in command[:3] else "pip"
        raise PackageError(f"could not {what} ({tool} exit {result.returncode}):\n{result.stderr[-3000:]}")


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
    parser.add_argument("--constraint", type=Path,
                        help="constraints file pinning the dependency versions (passed to uv pip compile)")
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
    print(summary(Path(args.out), manifest))
    tools_wheel = measure_tools_wheel(Path(args.source))
    if tools_wheel:
        print(f"  not shipped: {tools_wheel[0]} ({_size(tools_wheel[1])}): the local stack, the emulator, "
              "the demo, the deploy tooling")
    return 0


def summary(dist: Path, manifest: Dict[str, Any]) -> str:
    """What `make package` prints: per target, its wheels and their size; the wheelhouse in all."""
    files = manifest["files"]
    wheel = manifest["wheel"]
    wheel_size = files[wheel]["size"]
    lines = [f"  {wheel}: {_size(wheel_size)}"]
    if not manifest["wheelhouse"]["complete"]:
        lines.append("  wheelhouse: idstore only (--no-wheelhouse); the bootstrap action cannot install it")
        return "\n".join(lines)
    for name, packages in manifest["wheelhouse"]["targets"].items():
        names = [wheel, *packages.values()]
        size = sum(files[f"{layout.WHEELHOUSE}/{n}"]["size"] for n in names)
        listed = ", ".join(f"{k} {v.split('-')[1]}" for k, v in sorted(packages.items()))
        lines.append(f"  CPython {name}: {len(names)} wheels, {_size(size)} (idstore {_size(wheel_size)}): {listed}")
    house = [(k, v["size"]) for k, v in files.items() if k.startswith(f"{layout.WHEELHOUSE}/")]
    lines.append(f"  wheelhouse: {len(house)} wheels, {_size(sum(s for _, s in house))} in all")
    for archive in manifest.get("serverless_archives", []):
        lines.append(f"  {archive}: {_size(files[archive]['size'])}")
    return "\n".join(lines)


def measure_tools_wheel(source: Path) -> Optional[Sequence[Any]]:
    """(name, size) of the idstore-tools wheel built from source/tools: what the split keeps off
    the cluster. None when there is no tools/ or it does not build."""
    if not (source / "tools" / "setup.py").is_file():
        return None
    with tempfile.TemporaryDirectory(prefix="idstore-tools-wheel-") as tmp:
        tree = Path(tmp) / "src" / "tools"
        shutil.copytree(source / "tools", tree,
                        ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "*.pyc", "build"))
        version_file = Path("lib") / "idstore" / "__init__.py"  # where tools/setup.py reads the version
        (Path(tmp) / "src" / version_file).parent.mkdir(parents=True)
        shutil.copy2(source / version_file, Path(tmp) / "src" / version_file)
        try:
            run_pip(["wheel", "--no-deps", "--wheel-dir", str(Path(tmp) / "wheel"), str(tree)],
                    "build the idstore-tools wheel")
        except PackageError as exc:
            log.warning("%s", exc)
            return None
        built = sorted((Path(tmp) / "wheel").glob("*.whl"))
        return (built[0].name, built[0].stat().st_size) if built else None


def _size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"

if __name__ == "__main__":
    sys.exit(main())
