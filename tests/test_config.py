"""Config layering, typing and errors that name the key."""
import pytest
import tomllib

from idstore.config import BASE_CONF, RUN_SECTIONS, TOOLING_SECTIONS, ConfigError, load_config


def _conf(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return str(path)


def test_layers_apply_in_order_base_then_file_then_set(tmp_path):
    path = _conf(tmp_path, '[dynamodb]\ntable = "FromFile"\nwrite_rate = 50\n')
    config = load_config(path, ["dynamodb.write_rate=75"])
    assert config.dynamodb.table == "FromFile"
    assert config.dynamodb.write_rate == 75.0
    assert config.dynamodb.capacity_fraction == 0.5  # from base.toml


def test_set_value_keeps_equals_signs_and_spaces():
    config = load_config(None, ["source.query=select id from t where program = 'A B'"])
    assert config.source.query == "select id from t where program = 'A B'"


@pytest.mark.parametrize("override, value", [
    ("source.partitions=12", 12),
    ("validation.trim=true", True),
    ("dynamodb.capacity_fraction=0.25", 0.25),
    ("source.attribute_columns=title, price", ("title", "price")),
])
def test_set_converts_to_the_type_of_the_key(override, value):
    section, key = override.split("=")[0].split(".")
    assert getattr(getattr(load_config(None, [override]), section), key) == value


@pytest.mark.parametrize("override, message", [
    ("dynamodb.mode=sideways", "dynamodb.mode: expected one of upsert, mirror"),
    ("source.partitions=many", "source.partitions: expected int"),
    ("source.partitions=0", "source.partitions"),
    ("dynamodb.capacity_fraction=1.5", "dynamodb.capacity_fraction: expected a fraction"),
    ("nosuch.key=1", "unknown section 'nosuch'"),
    ("source.nosuch=1", "source.nosuch: unknown key"),
    ("novalue", "expected section.key=value"),
    ("source.url=jdbc:postgresql://etl:hunter2@db:5432/x", "source.url: carries a credential"),
    ("source.url=jdbc:redshift://h:5439/dev;Password=hunter2", "source.url: carries a credential"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(None, [override])


def test_file_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="dynamodb.write_rate: expected float"):
        load_config(_conf(tmp_path, '[dynamodb]\nwrite_rate = "fast"\n'))
    with pytest.raises(ConfigError, match="unknown config key.*events.colour"):
        load_config(_conf(tmp_path, '[events]\ncolour = "red"\n'))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_conf(tmp_path, "[dynamodb\n"))


def test_config_is_frozen():
    config = load_config(None)
    with pytest.raises(AttributeError):
        config.dynamodb.table = "x"


# -- the deploy tooling's sections: in the same file, skipped by a run ----------------------------
TOOLING_TOML = """
[dynamodb]
table = "FromFile"

[deploy]
bucket = "artifacts"
not_a_key_the_tooling_knows = 1

[emr]
python = "python2"

[schedule]
filter_days = "yesterday"

[serverless]
application_id = "00fexample"
"""


def test_a_run_accepts_the_tooling_sections_in_its_file_and_ignores_them(tmp_path):
    config = load_config(_conf(tmp_path, TOOLING_TOML))  # not checked here: the tooling checks them
    assert config.dynamodb.table == "FromFile"
    for section in TOOLING_SECTIONS:
        assert not hasattr(config, section)


def test_set_on_a_tooling_section_is_no_error_for_a_run():
    config = load_config(None, ["emr.python=python2", "deploy.no_such_key=x", "schedule.filter_days=many"])
    assert not hasattr(config, "emr")


def test_the_report_holds_only_what_a_run_reads(tmp_path):
    redacted = load_config(_conf(tmp_path, TOOLING_TOML)).redacted()
    assert set(redacted) == {*RUN_SECTIONS, "spark"}
    assert not set(redacted) & set(TOOLING_SECTIONS)


def test_other_unknown_sections_are_still_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown config section.*deployment"):
        load_config(_conf(tmp_path, '[deployment]\nbucket = "b"\n'))
    with pytest.raises(ConfigError, match="unknown section 'deployment'"):
        load_config(None, ["deployment.bucket=b"])


def test_the_jobs_defaults_hold_no_tooling_section():
    base = tomllib.loads(BASE_CONF.read_text())
    assert set(base) == {*RUN_SECTIONS, "spark"}
    assert not set(RUN_SECTIONS) & set(TOOLING_SECTIONS)


def test_one_endpoint_reaches_dynamodb_unless_it_names_its_own():
    config = load_config(None, ["aws.endpoint_url=http://127.0.0.1:5000"])
    assert config.dynamodb.endpoint_url == "http://127.0.0.1:5000"
    emulator = load_config(None, ["aws.endpoint_url=http://127.0.0.1:5000", "dynamodb.endpoint_url=http://127.0.0.1:7"])
    assert emulator.dynamodb.endpoint_url == "http://127.0.0.1:7"
    assert load_config(None, []).dynamodb.endpoint_url == ""  # AWS itself


@pytest.mark.parametrize("overrides", [
    ["aws.endpoint_url=http://127.0.0.1:5000", "spark.spark.hadoop.fs.s3a.endpoint=https://s3.us-east-1.amazonaws.com"],
    ["spark.spark.hadoop.fs.s3a.endpoint=http://127.0.0.1:5000"],  # boto3 on AWS, s3:// on an emulator
])
def test_a_boto3_endpoint_and_an_s3a_endpoint_that_disagree_are_refused_at_load(overrides):
    with pytest.raises(ConfigError, match="aws.endpoint_url .* and \\[spark\\] spark.hadoop.fs.s3a.endpoint"):
        load_config(None, overrides)


@pytest.mark.parametrize("overrides", [
    ["aws.endpoint_url=http://127.0.0.1:5000", "spark.spark.hadoop.fs.s3a.endpoint=http://127.0.0.1:5001"],
    ["spark.spark.hadoop.fs.s3a.endpoint=https://bucket.vpce-0a1b.s3.us-east-1.vpce.amazonaws.com"],
])
def test_endpoints_of_the_same_kind_are_accepted(overrides):
    load_config(None, overrides)


def test_the_readme_exit_code_table_is_the_one_the_jobs_use():
    from pathlib import Path

    from idstore.errors import EXIT_CODES

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for code, meaning, detail in EXIT_CODES:
        assert f"| {code} | {meaning} | {detail} |" in readme


def test_every_config_shipped_in_conf_loads_for_the_jobs_and_the_tooling():
    from pathlib import Path

    from idstore_tools.deploy.config import load_tooling_config

    shipped = sorted((Path(__file__).resolve().parents[1] / "conf").glob("*.toml"))
    assert [p.name for p in shipped] == ["base.toml", "prod.example.toml"]
    for path in shipped:
        load_config(str(path))
        load_tooling_config(str(path))


def test_a_config_file_that_is_not_there_is_a_usage_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="--config .*nope.toml: no such file"):
        load_config(str(tmp_path / "nope.toml"))


@pytest.mark.parametrize("overrides, message", [
    (["dynamodb.create=import", "snapshot.path=/s"], "dynamodb.import_path: create = import stages"),
    (["dynamodb.create=import", "snapshot.path=/s", "dynamodb.import_path=/local/stage"], "expected an s3:// prefix"),
    (["dynamodb.create=import", "dynamodb.import_path=s3://b/imports"], "snapshot.path: create = import keeps"),
    (["dynamodb.create=copy"], "dynamodb.create: expected one of never, import"),
    (["dynamodb.create_billing_mode=PROVISIONED"], "expected at least 1 each"),
    (["dynamodb.create_write_capacity=5"], "set only with create_billing_mode = PROVISIONED"),
])
def test_a_first_load_by_import_is_checked_at_load(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_a_first_load_by_import_loads_with_its_staging_and_snapshot():
    cfg = load_config(None, ["dynamodb.create=import", "dynamodb.import_path=s3://b/imports", "snapshot.path=/s",
                             "dynamodb.create_billing_mode=PROVISIONED", "dynamodb.create_read_capacity=1",
                             "dynamodb.create_write_capacity=2"]).dynamodb
    assert cfg.imports and (cfg.create_read_capacity, cfg.create_write_capacity) == (1, 2)
    assert not load_config(None, []).dynamodb.imports  # the default: the table must exist
