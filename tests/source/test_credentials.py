"""Source credentials: Secrets Manager (moto), a named env var, IAM URLs; never echoed."""
import json
import logging
import re

import boto3
import pytest
from moto import mock_aws

from idstore.config import ConfigError, load_config
from idstore.errors import RunFailed
from idstore.redaction import REDACTED, RedactingFilter, scrub, url_credential_options
from idstore.source.credentials import Credentials, resolve_credentials

PASSWORD = "s3cr3t-Pa55-for-tests"


@pytest.fixture
def secrets():
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def config(*overrides):
    return load_config(None, ["source.url=jdbc:redshift://h:5439/dev", *overrides])


def test_a_redshift_style_secret_gives_its_username_and_password(secrets):
    secrets.create_secret(Name="rs/etl", SecretString=json.dumps(
        {"username": "etl", "password": PASSWORD, "engine": "redshift", "host": "h", "port": 5439}))
    cfg = config("source.secret_id=rs/etl", "source.user=ignored")
    assert resolve_credentials(cfg.source, cfg.aws, {}) == Credentials("etl", PASSWORD)


def test_a_secret_that_is_not_a_login_is_refused_without_echoing_it(secrets):
    secrets.create_secret(Name="rs/raw", SecretString=PASSWORD)
    cfg = config("source.secret_id=rs/raw")
    with pytest.raises(RunFailed, match="source.secret_id") as info:
        resolve_credentials(cfg.source, cfg.aws, {})
    assert PASSWORD not in str(info.value)


def test_a_missing_secret_fails_the_run_naming_it_and_the_action(secrets):
    cfg = config("source.secret_id=rs/nope")
    with pytest.raises(RunFailed, match="GetSecretValue of 'rs/nope'.*ResourceNotFound"):
        resolve_credentials(cfg.source, cfg.aws, {})


def test_the_password_env_var_is_read_from_the_given_environment():
    cfg = config("source.password_env=RS_PW", "source.user=etl")
    assert resolve_credentials(cfg.source, cfg.aws, {"RS_PW": PASSWORD}) == Credentials("etl", PASSWORD)
    with pytest.raises(ConfigError, match="RS_PW is not set"):
        resolve_credentials(cfg.source, cfg.aws, {})


def test_iam_urls_need_no_password():
    cfg = load_config(None, ["source.url=jdbc:redshift:iam://c:5439/dev", "source.user=etl",
                             "source.password_env=RS_PW"])
    assert resolve_credentials(cfg.source, cfg.aws, {}) == Credentials("etl")


def test_credentials_must_be_named():
    cfg = config()
    with pytest.raises(ConfigError, match="no credentials"):
        resolve_credentials(cfg.source, cfg.aws, {})


def test_credentials_named_twice_are_refused_when_the_config_loads():
    with pytest.raises(ConfigError, match="both set"):
        config("source.secret_id=a", "source.password_env=B")


@pytest.mark.parametrize("url, option", [
    ("jdbc:redshift://h:5439/dev?user=etl&password=x", "password"),
    ("jdbc:redshift://h:5439/dev;Password=x", "Password"),
    ("jdbc:postgresql://etl:x@h:5432/db", "password"),
    ("jdbc:redshift://h:5439/dev?AccessKeyID=AKIAX&SecretAccessKey=x", "SecretAccessKey"),
    ("jdbc:redshift:iam://h:5439/dev?DbUser=etl&SessionToken=x", "SessionToken"),
    ("jdbc:redshift://h:5439/dev;UID=etl;PWD=x", "PWD"),
    ("jdbc:redshift://h:5439/dev?ssl=true&client_secret=x", "client_secret"),
])
def test_urls_carrying_a_credential_are_refused_at_load_naming_the_option_not_its_value(url, option):
    assert option in url_credential_options(url)
    with pytest.raises(ConfigError, match="source.url") as info:
        load_config(None, [f"source.url={url}"])
    assert option in str(info.value)
    assert "x@" not in str(info.value) and "=x" not in str(info.value) and "AKIAX" not in str(info.value)


@pytest.mark.parametrize("url", [
    "jdbc:redshift://h:5439/dev",
    "jdbc:redshift://h:5439/dev?ssl=true&DbUser=etl&AutoCreate=true",
    "jdbc:redshift:iam://cluster:us-east-1/dev?DbUser=etl&DbGroups=g",
    "jdbc:postgresql://h:5432/db?user=etl&sslmode=require",
])
def test_urls_without_a_credential_are_accepted(url):
    assert url_credential_options(url) == []
    assert load_config(None, [f"source.url={url}"]).source.url == url


def test_looked_up_passwords_are_scrubbed_from_log_records_and_tracebacks():
    resolve_credentials(config("source.password_env=PW").source, config().aws, {"PW": PASSWORD})
    assert scrub(f"login with {PASSWORD}!") == f"login with {REDACTED}!"
    logger = logging.getLogger("test.redaction")
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(handler.format(record))
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        logger.warning("connecting with %s", PASSWORD)
        try:
            raise RuntimeError(f"driver said: bad password {PASSWORD}")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    assert records and not any(PASSWORD in text for text in records)
    assert REDACTED in records[0] and "driver said" in records[1]


@pytest.mark.parametrize("theirs", ["", "(?i)nothing", "(?i)secret|password|token|credential|access[._]?key"])
def test_spark_redaction_can_be_widened_by_config_never_narrowed(theirs):
    from idstore.redaction import SECRET_SETTING_REGEX, with_redaction_kept

    conf = with_redaction_kept({"spark.redaction.regex": theirs} if theirs else {})
    # Java takes (?i) anywhere; Python only at the start, so read it as one flag here
    pattern = re.compile(conf["spark.redaction.regex"].replace("(?i)", ""), re.IGNORECASE)
    for name in ("spark.hadoop.fs.s3a.secret.key", "spark.my.password", "spark.session.token"):
        assert pattern.search(name)
    assert conf["spark.redaction.regex"].startswith(SECRET_SETTING_REGEX)
    assert re.search(conf["spark.sql.redaction.options.regex"], "password")


def test_java_regex_literals_escape_every_character():
    from idstore.redaction import java_regex_literal

    assert java_regex_literal("a}$") == "\\u0061\\u007D\\u0024"
    assert java_regex_literal("\U0001F600") == "\\uD83D\\uDE00"  # UTF-16 surrogates, as Java strings hold it
