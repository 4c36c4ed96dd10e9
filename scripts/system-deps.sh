#!/usr/bin/env bash
# OS packages idstore's local runs need: Java 17 for Spark (the JDK: javac builds idstore's jar),
# PostgreSQL 15 and pgbouncer in front of it (the Redshift stand-in, which the Redshift JDBC driver
# can log in to), Debian's PostgreSQL JDBC driver jar and Maven (scripts/fetch-jars.sh fetches the
# pinned hadoop-aws, AWS SDK bundle and Redshift driver jars with it). Installs only what is missing.
set -euo pipefail

missing=()
command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless)
command -v shellcheck >/dev/null || missing+=(shellcheck)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
{ [ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null; } || missing+=(pgbouncer)
[ -f /usr/share/java/postgresql.jar ] || missing+=(libpostgresql-jdbc-java)
command -v mvn >/dev/null || missing+=(maven)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
