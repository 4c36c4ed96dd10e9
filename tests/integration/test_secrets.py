"""The source password, known to the test, appears in no output, log, event log or file.

One run takes it from Secrets Manager (moto), one from an env var; the second also fails
on purpose, since error paths are where secrets leak.
"""
from pathlib import Path

import pytest

from .conftest import create_source_table, run_job

pytestmark = pytest.mark.integration

SPARK_TOKEN = "tok-idstore-test-4f1c9e"


def files_holding(root: Path, secret: str):
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.fixture
def event_log_dir(tmp_path):
    path = tmp_path / "spark-events"
    path.mkdir()
    return path


def _spark_logging(event_log_dir):
    return ["--set", "spark.spark.eventLog.enabled=true", "--set", f"spark.spark.eventLog.dir=file://{event_log_dir}"]


def test_a_password_from_secrets_manager_leaks_nowhere(stack, pg, new_table, job_conf, event_log_dir):
    create_source_table(pg, "src_secret", [(v, None, None, None) for v in ["s-1", "s-2", "", None]])
    code, output, report = run_job(
        "sync", job_conf, "--set", f"dynamodb.table={new_table}",
        "--set", "source.query=select product_id from src_secret",
        "--set", "validation.max_rejected_fraction=0.6",  # the bad ids give quarantine files to search
        *_spark_logging(event_log_dir),
        # a [spark] setting cannot narrow Spark's redaction: this token stays hidden in the event log
        "--set", "spark.spark.redaction.regex=(?i)nothing-matches-this",
        "--set", f"spark.spark.hadoop.fs.s3a.session.token={SPARK_TOKEN}",
    )
    assert code == 0, output
    assert report["counts"]["written"] == 2
    assert list(event_log_dir.iterdir()), "no Spark event log was written: nothing was searched"
    assert "spark.hadoop.fs.s3a.session.token" in "".join(p.read_text() for p in event_log_dir.iterdir())
    assert files_holding(event_log_dir, SPARK_TOKEN) == [] and SPARK_TOKEN not in output
    assert stack.pg_password not in output
    assert files_holding(job_conf.parent, stack.pg_password) == []
    assert files_holding(event_log_dir, stack.pg_password) == []


def test_a_password_from_an_env_var_leaks_nowhere_even_when_the_run_fails(stack, pg, job_conf, event_log_dir):
    create_source_table(pg, "src_secret_env", [("e-1", None, None, None)])
    code, output, report = run_job(
        "sync", job_conf,
        "--set", "source.secret_id=", "--set", "source.password_env=IDSTORE_TEST_PASSWORD",
        "--set", "source.query=select product_id from src_secret_env",
        "--set", "dynamodb.table=no-such-table",
        *_spark_logging(event_log_dir),
        env={"IDSTORE_TEST_PASSWORD": stack.pg_password},
    )
    assert code == 1, output  # a missing table fails the run, naming it (not a config error: exit 2 is for those)
    assert report["outcome"] == "failed" and "no-such-table" in report["error"]
    assert report["counts"]["source_rows"] == 1  # the env var password did open the source
    assert stack.pg_password not in output
    assert files_holding(job_conf.parent, stack.pg_password) == []
    assert files_holding(event_log_dir, stack.pg_password) == []


@pytest.mark.parametrize("setting, key", [
    ('[source]\npassword = "hunter2-in-a-file"\n', "source.password"),
    ('[source]\nurl = "jdbc:postgresql://db:5432/x?user=etl&password=hunter2-in-a-file"\n', "source.url"),
    ('[source]\nurl = "jdbc:redshift://etl:hunter2-in-a-file@db:5439/x"\n', "source.url"),
])
def test_a_password_in_a_config_file_is_refused_without_echoing_it(tmp_path, setting, key):
    conf = tmp_path / "bad.toml"
    conf.write_text(setting)
    code, output, _ = run_job("sync", conf)
    assert code == 2, output
    assert key in output
    assert "hunter2-in-a-file" not in output
