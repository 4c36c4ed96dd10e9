"""Config layering, typing and errors that name the key."""
import pytest

from idstore.config import ConfigError, load_config


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
