"""The tooling's config: [deploy], [emr], [schedule] and [serverless] typed and checked by the
tooling, their defaults from its own file, the run's sections exactly as the jobs load them."""
import dataclasses

import pytest
import tomllib

from idstore.config import TOOLING_SECTIONS, ConfigError, load_config
from idstore_tools.deploy import cli
from idstore_tools.deploy import config as tooling
from idstore_tools.deploy.config import EmrPython, ScheduleTarget, load_tooling_config


def _conf(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_the_tooling_builds_the_sections_a_run_skips():
    assert tuple(tooling.SECTIONS) == TOOLING_SECTIONS


def test_the_tooling_defaults_come_from_its_own_file():
    defaults = tomllib.loads(tooling.TOOLING_DEFAULTS.read_text())
    assert set(defaults) == set(TOOLING_SECTIONS)
    config = load_tooling_config(None)
    for section, cls in tooling.SECTIONS.items():
        assert set(defaults[section]) == {f.name for f in dataclasses.fields(cls)}, section
        assert dataclasses.asdict(getattr(config, section)) == defaults[section], section


def test_a_changed_defaults_file_changes_the_defaults(tmp_path, monkeypatch):
    text = tooling.TOOLING_DEFAULTS.read_text()
    assert 'python = "python3" ' in text and 'target = "emr" ' in text
    edited = text.replace('python = "python3" ', 'python = "python3.11" ').replace('target = "emr" ',
                                                                                  'target = "serverless" ')
    monkeypatch.setattr(tooling, "TOOLING_DEFAULTS", tmp_path / "defaults.toml")
    tooling.TOOLING_DEFAULTS.write_text(edited)
    config = load_tooling_config(None)
    assert config.emr.python is EmrPython.PYTHON311
    assert config.schedule.target is ScheduleTarget.SERVERLESS


def test_layers_apply_in_order_and_set_reads_the_type_of_the_key(tmp_path):
    path = _conf(tmp_path, '[emr]\ncore_instance_count = 4\nsubnet_id = "subnet-1"\n[schedule]\nenabled = true\n')
    config = load_tooling_config(path, ["emr.core_instance_count=6", "schedule.filter_days=3", "emr.python=python3.11"])
    assert config.emr.core_instance_count == 6 and config.emr.subnet_id == "subnet-1"
    assert config.schedule.enabled is True and config.schedule.filter_days == 3
    assert config.emr.python is EmrPython.PYTHON311
    assert config.emr.release_label == "emr-7.13.0"  # from the tooling defaults


def test_the_run_config_is_what_the_jobs_load_from_the_same_file(tmp_path):
    path = _conf(tmp_path, '[dynamodb]\ntable = "T"\n[deploy]\nbucket = "b"\n[emr]\npython = "python3.11"\n')
    overrides = ["dynamodb.write_rate=10", "deploy.name=other"]
    config = load_tooling_config(path, overrides)
    assert config.run == load_config(path, overrides)
    assert config.deploy.bucket == "b" and config.deploy.name == "other"


@pytest.mark.parametrize("override, message", [
    ("emr.python=python2", "emr.python: expected one of python3, python3.9, python3.11, got 'python2'"),
    ("emr.action_on_failure=RETRY", "emr.action_on_failure: expected one of CONTINUE, CANCEL_AND_WAIT"),
    ("schedule.target=cron", "schedule.target: expected one of emr, serverless"),
    ("serverless.architecture=ppc64", "serverless.architecture: expected one of X86_64, ARM64"),
    ("deploy.table_billing_mode=ON_DEMAND", "deploy.table_billing_mode: expected one of , PAY_PER_REQUEST"),
    ("emr.core_instance_count=many", "emr.core_instance_count: expected int"),
    ("schedule.filter_days=-1", "schedule.filter_days: expected a non-negative number"),
    ("schedule.enabled=maybe", "schedule.enabled: expected bool"),
    ("deploy.no_such_key=1", "deploy.no_such_key: unknown key"),
    ("dynamodb.mode=sideways", "dynamodb.mode: expected one of upsert, mirror"),  # the run's, as the jobs check
])
def test_set_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_tooling_config(None, [override])


@pytest.mark.parametrize("text, message", [
    ('[emr]\npython = "python2"\n', "emr.python: expected one of python3, python3.9, python3.11"),
    ('[schedule]\nfilter_days = "1"\n', "schedule.filter_days: expected int"),
    ('[deploy]\ncolour = "red"\n', "unknown config key.*deploy.colour"),
    ('serverless = "on"\n', r"\[serverless\]: expected a table"),
    ('[deployment]\nbucket = "b"\n', "unknown config section.*deployment"),
])
def test_file_errors_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_tooling_config(_conf(tmp_path, text))


def test_the_commands_report_a_bad_tooling_key_as_a_config_error(tmp_path, capsys):
    path = _conf(tmp_path, '[deploy]\nbucket = "b"\naccount_id = "123456789012"\n[emr]\npython = "python2"\n')
    assert load_config(path).dynamodb.table  # the jobs take the file as it is
    assert cli.main(["render", "--conf", path, "--out", str(tmp_path / "out")]) == 2
    assert "config error: emr.python: expected one of python3" in capsys.readouterr().err


def test_the_tooling_config_is_frozen():
    config = load_tooling_config(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.emr.python = "python3.11"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.run = None
