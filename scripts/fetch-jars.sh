#!/usr/bin/env bash
# Fetch the pinned JVM artifacts of jvm/pom.xml from Maven Central into .jars/<profile>/
# (jobs: hadoop-aws + aws-java-sdk-bundle + the Redshift JDBC driver; peers: the benchmark's
# EMR DynamoDB connector and spark-dynamodb), with Maven's strict checksum policy (-C) and
# then each file's SHA-256 checked against jvm/jars.sha256. A file that is missing, extra
# or different stops the script; nothing lands in .jars/ unless every file matched.
#   scripts/fetch-jars.sh            fetch and verify (a no-op when .jars/ already matches)
#   scripts/fetch-jars.sh --update   rewrite jvm/jars.sha256 from what Maven resolved (after a
#                                    version change in jvm/pom.xml; review the diff)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${IDSTORE_JARS_DIR:-.jars}
SUMS=jvm/jars.sha256
SUMS_ABS="$PWD/$SUMS"
PROFILES=(jobs peers)

if [ "${1:-}" != "--update" ] && [ -d "$DEST" ] && (cd "$DEST" && sha256sum --quiet --strict -c "$SUMS_ABS" >/dev/null 2>&1); then
  listed=$(awk '{print $2}' "$SUMS" | sort)
  present=$(cd "$DEST" && find . -name '*.jar' -printf '%P\n' | sort)
  if [ "$listed" = "$present" ]; then
    exit 0
  fi
fi

command -v mvn >/dev/null || { echo "fetch-jars: mvn not found (make system-deps installs maven)" >&2; exit 1; }
staging="$DEST.staging"
rm -rf "$staging"
mkdir -p "$staging"
for profile in "${PROFILES[@]}"; do
  echo "fetch-jars: resolving the $profile jars (jvm/pom.xml) from Maven Central"
  mvn -B -q -C -Dstyle.color=never -f jvm/pom.xml -P "$profile" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$PWD/$staging/$profile" >&2
done

if [ "${1:-}" = "--update" ]; then
  (cd "$staging" && find . -name '*.jar' -printf '%P\n' | sort | xargs sha256sum) > "$SUMS"
  echo "fetch-jars: wrote $SUMS; review it with git diff"
else
  listed=$(awk '{print $2}' "$SUMS" | sort)
  present=$(cd "$staging" && find . -name '*.jar' -printf '%P\n' | sort)
  if [ "$listed" != "$present" ]; then
    echo "fetch-jars: Maven resolved other files than $SUMS lists:" >&2
    diff <(echo "$listed") <(echo "$present") >&2 || true
    exit 1
  fi
  if ! (cd "$staging" && sha256sum --quiet --strict -c "$SUMS_ABS"); then
    echo "fetch-jars: checksum mismatch against $SUMS; nothing installed" >&2
    exit 1
  fi
fi
rm -rf "$DEST"
mv "$staging" "$DEST"
echo "fetch-jars: $(find "$DEST" -name '*.jar' | wc -l) jars in $DEST, SHA-256 verified"
