"""Hash predicates per dialect and JDBC options."""
import pytest

from idstore.config import ConfigError, load_config
from idstore.source.credentials import Credentials
from idstore.source.jdbc import hash_predicates, jdbc_properties, unload_options


def test_redshift_predicates_take_the_remainder_before_abs():
    clauses = hash_predicates("jdbc:redshift://h:5439/dev", "product_id", 4)
    assert len(clauses) == 4
    assert clauses[1] == 'ABS(FNV_HASH(CAST("product_id" AS VARCHAR)) % 4) = 1'
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
