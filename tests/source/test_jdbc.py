"""Hash predicates per dialect and JDBC options."""
import pytest

from idstore.config import ConfigError, load_config
from idstore.source.credentials import Credentials
from idstore.source.jdbc import hash_predicates, jdbc_properties, subquery, unload_options


def test_redshift_predicates_take_the_remainder_before_abs():
    clauses = hash_predicates("jdbc:redshift://h:5439/dev", "product_id", 4)
    assert len(clauses) == 4
    assert clauses[1] == 'ABS(FNV_HASH(CAST("product_id" AS VARCHAR(65535))) % 4) = 1'
    assert "IS NULL" in clauses[0] and all("IS NULL" not in c for c in clauses[1:])


def test_postgresql_predicates_use_hashtext():
    clauses = hash_predicates("jdbc:postgresql://h:5432/db", "id", 3)
    assert clauses[2] == 'ABS(hashtext(CAST("id" AS TEXT)) % 3) = 2'


def test_unknown_dialect_is_refused():
    with pytest.raises(ConfigError, match="source.url"):
        hash_predicates("jdbc:mysql://h/db", "id", 2)


def test_redshift_properties_turn_off_the_ring_buffer_and_keep_ssl():
    config = load_config(None, ["source.url=jdbc:redshift://h:5439/dev", "source.fetchsize=5000"])
    props = jdbc_properties(config.source, Credentials("etl", "pw"))
    assert props["enableFetchRingBuffer"] == "false"
    assert props["ssl"] == "true"
    assert props["fetchsize"] == "5000"
    assert props["driver"] == "com.amazon.redshift.jdbc.Driver"


def test_unload_options_use_the_emr_connector_settings():
    config = load_config(None, [
        "source.url=jdbc:redshift://h:5439/dev", "source.mode=unload", "source.query=select 1",
        "source.unload_tempdir=s3://b/tmp", "source.unload_iam_role=arn:aws:iam::1:role/r",
        "source.secret_id=rs/etl",
    ])
    options = unload_options(config.source, Credentials("etl", "pw"))
    assert options["unload_s3_format"] == "PARQUET"
    assert options["secret.id"] == "rs/etl"
    assert "password" not in options


def test_credentials_never_show_the_password_in_repr():
    assert "hunter2" not in repr(Credentials("etl", "hunter2"))


REDSHIFT = "source.url=jdbc:redshift://h:5439/dev"


def test_ssl_is_on_by_default_for_redshift_urls_and_can_be_turned_off():
    on = load_config(None, [REDSHIFT])
    assert jdbc_properties(on.source, Credentials("etl", "pw"))["ssl"] == "true"
    off = load_config(None, [REDSHIFT, "source.ssl=false"])
    assert jdbc_properties(off.source, Credentials("etl", "pw"))["ssl"] == "false"


def test_the_ring_buffer_setting_comes_from_config():
    config = load_config(None, [REDSHIFT, "source.fetch_ring_buffer=true"])
    assert jdbc_properties(config.source, Credentials("etl", "pw"))["enableFetchRingBuffer"] == "true"


def test_iam_urls_send_the_db_user_and_no_password():
    config = load_config(None, ["source.url=jdbc:redshift:iam://c.abc.us-east-1.redshift.amazonaws.com:5439/dev"])
    props = jdbc_properties(config.source, Credentials("etl"))
    assert props["DbUser"] == "etl" and props["ssl"] == "true"
    assert "password" not in props


def test_postgresql_properties_carry_no_redshift_settings():
    config = load_config(None, ["source.url=jdbc:postgresql://h:5432/db", "source.fetchsize=77"])
    props = jdbc_properties(config.source, Credentials("u", "pw"))
    assert props == {"driver": "org.postgresql.Driver", "fetchsize": "77", "user": "u", "password": "pw"}


UNLOAD = [
    REDSHIFT, "source.mode=unload", "source.query=select product_id from p",
    "source.unload_tempdir=s3://b/tmp", "source.unload_iam_role=arn:aws:iam::1:role/r",
]


def test_unload_options_are_exactly_the_connector_settings():
    config = load_config(None, [*UNLOAD, "source.secret_id=rs/etl"])
    assert unload_options(config.source, Credentials("etl", "pw")) == {
        "url": "jdbc:redshift://h:5439/dev",
        "query": "select product_id from p",
        "tempdir": "s3://b/tmp",
        "aws_iam_role": "arn:aws:iam::1:role/r",
        "unload_s3_format": "PARQUET",
        "secret.id": "rs/etl",
    }


# The read options spark-redshift 6.6.1 documents (its README's parameter table; EMR's own
# Redshift integration is built on it): unload is not run here, so its names are checked by hand.
CONNECTOR_READ_OPTIONS = {
    "url", "user", "password", "dbtable", "query", "secret.id", "secret.region", "secret.vpcEndpointUrl",
    "secret.vpcEndpointRegion", "aws_iam_role", "forward_spark_s3_credentials", "temporary_aws_access_key_id",
    "temporary_aws_secret_access_key", "temporary_aws_session_token", "tempdir", "tempdir_region", "jdbcdriver",
    "unload_s3_format", "sse_kms_key", "autopushdown", "extraunloadoptions", "label",
}


@pytest.mark.parametrize("login", ["source.secret_id=rs/etl", "source.password_env=PW"])
def test_unload_options_are_ones_the_connector_documents(login):
    options = unload_options(load_config(None, [*UNLOAD, login]).source, Credentials("etl", "pw"))
    assert set(options) <= CONNECTOR_READ_OPTIONS
    assert options["unload_s3_format"] in {"PARQUET", "TEXT"}


def test_unload_without_a_secret_passes_the_resolved_login():
    config = load_config(None, [*UNLOAD, "source.password_env=PW"])
    options = unload_options(config.source, Credentials("etl", "pw"))
    assert options["user"] == "etl" and options["password"] == "pw" and "secret.id" not in options


@pytest.mark.parametrize("overrides, key", [
    (["source.url=jdbc:postgresql://h/db", "source.mode=unload"], "jdbc:redshift"),
    ([*UNLOAD, "source.unload_tempdir="], "unload_tempdir"),
    ([*UNLOAD, "source.unload_iam_role="], "unload_iam_role"),
])
def test_unload_refuses_at_load_what_the_connector_cannot_do(overrides, key):
    with pytest.raises(ConfigError, match=key):
        load_config(None, overrides)


def test_the_query_becomes_a_derived_table_without_its_trailing_semicolon():
    assert subquery("select a from t ;\n") == "(select a from t) AS idstore_source"


@pytest.mark.parametrize("partitions", [1, 2, 7, 64])
def test_there_is_one_predicate_per_partition_and_exactly_one_takes_nulls(partitions):
    clauses = hash_predicates("jdbc:postgresql://h/db", "product_id", partitions)
    assert len(clauses) == partitions
    assert len(set(clauses)) == partitions
    assert sum("IS NULL" in c for c in clauses) == (0 if partitions == 1 else 1)
