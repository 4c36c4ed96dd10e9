# idstore developer commands. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pinned JVM artifacts (jvm/pom.xml, checked against jvm/jars.sha256), never committed
JARS_STAMP := .jars/.verified
JDBC_JAR := /usr/share/java/postgresql.jar
# idstore's own jar (jvm/src), built into the package so the wheel carries it; never committed
JVM_JAR := lib/idstore/jars/idstore-jvm.jar
# the oldest boto3 setup.py allows, with its botocore and s3transfer, for tests/test_dependency_floor.py
BOTO3_FLOOR := $(shell sed -n 's/.*"boto3>=\([0-9.]*\)".*/\1/p' setup.py)
FLOOR_STAMP := .floor/.boto3-$(BOTO3_FLOOR)
# Spark's Python workers and driver run the venv's interpreter
export PYSPARK_PYTHON := $(CURDIR)/$(PY)
export PYSPARK_DRIVER_PYTHON := $(CURDIR)/$(PY)
export SPARK_LOCAL_IP := 127.0.0.1

.DEFAULT_GOAL := help
.PHONY: help setup system-deps jars test test-unit demo lint docs bench-write bench-filter bench-filter-runs bench-sync package clean

help: ## list the commands
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

system-deps: ## Java 17, PostgreSQL 15 and Debian's PostgreSQL JDBC driver (apt, as root)
	@bash scripts/system-deps.sh

$(STAMP): setup.py tools/setup.py
	@$(MAKE) --no-print-directory system-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[spark,test,dev]' -e ./tools
	@touch $(STAMP)

$(JARS_STAMP): jvm/pom.xml jvm/jars.sha256 scripts/fetch-jars.sh
	@$(MAKE) --no-print-directory system-deps
	@bash scripts/fetch-jars.sh
	@touch $(JARS_STAMP)

jars: ## fetch the pinned jars into .jars/ (hadoop-aws 3.3.4, aws-java-sdk-bundle 1.12.262, redshift-jdbc42; the bench peers), SHA-256 checked
	@bash scripts/fetch-jars.sh
	@touch $(JARS_STAMP)

$(FLOOR_STAMP): setup.py $(STAMP)
	rm -rf .floor
	$(PY) -m pip install --quiet --no-deps --target .floor boto3==$(BOTO3_FLOOR) botocore==$(BOTO3_FLOOR) 's3transfer>=0.10,<0.11'
	@touch $(FLOOR_STAMP)

$(JVM_JAR): $(STAMP) scripts/build-jvm.sh $(shell find jvm/src -name '*.java')
	@bash scripts/build-jvm.sh $(PY)

setup: $(STAMP) $(JARS_STAMP) $(JVM_JAR) $(FLOOR_STAMP) ## create .venv with idstore, pyspark 3.5 and the test tools; fetch the jars; build idstore's jar

test: setup ## the whole suite: unit, integration (spark-submit, PostgreSQL, moto) and fault tests
	$(PY) -m pytest tests -q -p no:cacheprovider -n auto --dist worksteal --durations=15

test-unit: setup ## unit tests only (no spark-submit)
	$(PY) -m pytest tests -q -m "not integration" -p no:cacheprovider

demo: setup ## local stack, seed 100k ids and 1M events, run sync then filter with spark-submit, check, stop
	$(PY) -m idstore_tools.demo

lint: setup ## ruff (py39 target) and vermin: what runs on EMR must run on Python 3.9
	$(VENV)/bin/ruff check lib tools jobs tests
	$(VENV)/bin/vermin -q --no-tips --eval-annotations --target=3.9- --violations lib jobs

docs: $(STAMP) ## write docs/config.md, the config reference, from conf/base.toml and the tooling's defaults.toml
	$(PY) -m idstore_tools.config_reference

bench-write: setup ## benchmark: 1M ids into the capacity emulator: idstore vs hand-written loop and batch_writer, then the EMR DynamoDB connector and spark-dynamodb (bench_write_peers.py)
	$(PY) benchmarks/bench_write.py
	$(PY) benchmarks/bench_write_peers.py

bench-filter: setup ## benchmark: 4M events, idstore vs the hand-written broadcast join and the read floors, at 3% and 10%
	$(PY) benchmarks/bench_filter.py

bench-filter-runs: setup ## benchmark: whole spark-submit runs of the filter, idstore vs the hand-written job, 300k and 3M events
	$(PY) benchmarks/bench_filter_runs.py

bench-sync: setup ## benchmark: 1M ids with two attributes, 1% churn, a full mirror run vs a delta run (units, time, cost)
	$(PY) benchmarks/bench_sync.py

package: setup ## build dist/: idstore wheel (no tooling), uv-resolved cluster wheelhouse, jobs, conf, bootstrap, manifest; prints sizes
	$(PY) -m idstore_tools.deploy.package --out dist $(PACKAGE_ARGS)

clean: ## remove build output and local state
	rm -rf build dist *.egg-info .idstore bench-results spark-warehouse .jars .jars.staging $(JVM_JAR)
