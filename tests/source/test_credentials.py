"""Source credentials: Secrets Manager (moto), a named env var, IAM URLs; never echoed."""
import json
import logging

import boto3
import pytest
from moto import mock_aws

from idstore.config import ConfigError, load_config
from idstore.source.credentials import (
    REDACTED,
    Credentials,
    RedactingFilter,
    resolve_credentials,
    scrub,
    url_has_password,
)

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
    with pytest.raises(ConfigError, match="source.secret_id") as info:
        resolve_credentials(cfg.source, cfg.aws, {})
    assert PASSWORD not in str(info.value)


def test_a_missing_secret_is_a_config_error_naming_it(secrets):
    cfg = config("source.secret_id=rs/nope")
    with pytest.raises(ConfigError, match="rs/nope.*ResourceNotFound"):
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


@pytest.mark.parametrize("overrides, message", [
    ([], "no credentials"),
    (["source.secret_id=a", "source.password_env=B"], "both set"),
])
def test_credentials_must_be_named_exactly_once(overrides, message):
    cfg = config(*overrides)
    with pytest.raises(ConfigError, match=message):
        resolve_credentials(cfg.source, cfg.aws, {})


@pytest.mark.parametrize("url", [
    "jdbc:redshift://h:5439/dev?user=etl&password=x",
    "jdbc:redshift://h:5439/dev;Password=x",
    "jdbc:postgresql://etl:x@h:5432/db",
])
def test_urls_with_a_password_are_refused_at_load_without_echoing_it(url):
    assert url_has_password(url)
    with pytest.raises(ConfigError, match="source.url") as info:
        load_config(None, [f"source.url={url}"])
    assert "x@" not in str(info.value) and "=x" not in str(info.value)


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
