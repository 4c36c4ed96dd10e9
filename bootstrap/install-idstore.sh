#!/usr/bin/env bash
# EMR bootstrap action: install idstore and its dependencies on this node, from the wheelhouse
# that `idstore deploy` uploaded, without the internet (pip --no-index --find-links).
#
#   install-idstore.sh s3://bucket/prefix/<version> [python]
#
# python: the interpreter Spark runs (emr.python: python3 = 3.9, or python3.11), a name on
# PATH or an absolute path. Idempotent: a node that already has this version is left alone.
# Runs on every node (also nodes added later) as hadoop, before Spark is installed; a non-zero
# exit stops the cluster. Spark settings belong in configuration classifications, not here.
set -euo pipefail

usage() {
  echo "usage: $0 s3://bucket/prefix/<version> [python]" >&2
  exit 2
}

[[ $# -ge 1 && $# -le 2 ]] || usage
release_uri="${1%/}"
python_name="${2:-python3}"
[[ "$release_uri" == s3://* ]] || usage

log() { echo "idstore-bootstrap: $*" >&2; }

if [[ "$python_name" == /* ]]; then
  python="$python_name"
else
  python="$(command -v "$python_name" || true)"
fi
if [[ -z "$python" || ! -x "$python" ]]; then
  log "interpreter $python_name not found"
  exit 1
fi

# Run as root where pip installs system-wide; root and test runs need no sudo.
as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

work_dir="${IDSTORE_BOOTSTRAP_DIR:-/tmp/idstore-bootstrap}"
mkdir -p "$work_dir"
aws s3 cp --only-show-errors "$release_uri/manifest.json" "$work_dir/manifest.json"
version="$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' "$work_dir/manifest.json")"

installed="$("$python" -c 'import idstore; print(idstore.__version__)' 2>/dev/null || true)"
if [[ "$installed" == "$version" ]]; then
  log "idstore $version already installed for $python; nothing to do"
  exit 0
fi

wheelhouse="$work_dir/$version/wheelhouse"
mkdir -p "$wheelhouse"
aws s3 cp --only-show-errors --recursive "$release_uri/wheelhouse/" "$wheelhouse/"

# Every wheel must match the manifest: a half-copied or altered wheelhouse stops here.
"$python" - "$work_dir/manifest.json" "$wheelhouse" <<'PY'
import hashlib
import json
import sys
from pathlib import Path

manifest, house = json.load(open(sys.argv[1])), Path(sys.argv[2])
bad = []
for name, entry in manifest["files"].items():
    if not name.startswith("wheelhouse/"):
        continue
    path = house / name.split("/", 1)[1]
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
    if digest != entry["sha256"]:
        bad.append(name)
if bad:
    sys.exit("idstore-bootstrap: checksum mismatch: " + ", ".join(bad))
PY

if ! "$python" -m pip --version >/dev/null 2>&1; then
  log "no pip for $python; trying ensurepip"
  as_root "$python" -m ensurepip >/dev/null 2>&1 || true
fi
if ! "$python" -m pip --version >/dev/null 2>&1; then
  log "no pip for $python and ensurepip is not available; install ${python_name##*/}-pip in a custom AMI"
  exit 1
fi

# No pip.conf (PIP_CONFIG_FILE=/dev/null) and no PIP_* variable (--isolated) can add an index,
# a constraint or another find-links location: the wheelhouse alone.
as_root env PIP_CONFIG_FILE=/dev/null "$python" -m pip install --isolated --no-index --find-links "$wheelhouse" \
  --disable-pip-version-check --no-warn-script-location "idstore==$version"

"$python" -c 'import boto3, pyarrow, idstore.config; idstore.config.load_config(); print("idstore", idstore.__version__)'
log "installed idstore $version for $python"
