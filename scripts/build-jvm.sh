#!/usr/bin/env bash
# Build idstore's own jar (jvm/src: the filter's JVM functions) into the package, so the wheel
# carries it to every node: javac against the pyspark of the venv (the Spark it runs on, EMR 7's
# 3.5 line), Java 8 bytecode so any JVM Spark 3.5 runs on loads it.
#   scripts/build-jvm.sh [python]     python: the venv's interpreter (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
OUT=lib/idstore/jars/idstore-jvm.jar
command -v javac >/dev/null || { echo "build-jvm: javac not found (make system-deps installs a JDK)" >&2; exit 1; }
spark_jars=$("$PY" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')
classes=$(mktemp -d)
trap 'rm -rf "$classes"' EXIT
mapfile -t sources < <(find jvm/src -name '*.java' | sort)
javac -nowarn -Xlint:-options --release 8 -cp "$spark_jars/*" -d "$classes" "${sources[@]}"
mkdir -p "$(dirname "$OUT")"
jar --create --file "$OUT.tmp" -C "$classes" .
mv "$OUT.tmp" "$OUT"
echo "build-jvm: $OUT ($(stat -c %s "$OUT") bytes)"
