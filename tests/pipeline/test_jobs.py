"""The job records: flags parsed into typed options, usage errors, and what each job publishes."""
from datetime import date

import pytest

from idstore import metrics as M
from idstore.config import IdsFrom
from idstore.pipeline.jobs import FILTER, JOBS, SYNC
from idstore.pipeline.options import FilterOptions, SyncOptions


def test_sync_flags_become_its_options():
    args, options = SYNC.parse(["--conf", "c.toml", "--dry-run", "--full", "--set", "dynamodb.mode=mirror"])
    assert options == SyncOptions(dry_run=True, force=False, full=True, break_lock=False)
    assert (args.conf, args.overrides) == ("c.toml", ["dynamodb.mode=mirror"])


def test_filter_flags_become_its_options():
    _, options = FILTER.parse(["--config", "c.toml", "--from", "2024-05-01", "--to", "2024-05-07", "--ids", "dynamodb"])
    assert options == FilterOptions(dry_run=False, start=date(2024, 5, 1), end=date(2024, 5, 7),
                                    ids_from=IdsFrom.DYNAMODB)
    assert FILTER.parse(["--config", "c.toml"])[1] == FilterOptions(ids_from=IdsFrom.SNAPSHOT)


def test_config_is_the_flag_and_conf_its_old_spelling():
    assert SYNC.parse(["--config", "a.toml"])[0].conf == SYNC.parse(["--conf", "a.toml"])[0].conf == "a.toml"
    assert "--conf is the old spelling, deprecated" in " ".join(SYNC.parser().format_help().split())


@pytest.mark.parametrize("job, argv, named", [
    (FILTER, ["--from", "2024-05-08", "--to", "2024-05-07"], "--from 2024-05-08 is after --to 2024-05-07"),
    (FILTER, ["--force"], "--force"),  # a sync flag
    (SYNC, ["--from", "2024-05-01"], "--from"),  # a filter flag
    (FILTER, ["--ids", "elsewhere"], "elsewhere"),
])
def test_usage_errors_exit_2_naming_the_flag(job, argv, named, capsys):
    with pytest.raises(SystemExit) as exit_:
        job.parse(["--config", "c.toml", *argv])
    assert exit_.value.code == 2 and named in capsys.readouterr().err


def test_a_job_without_its_config_is_a_usage_error_before_anything_starts(capsys):
    with pytest.raises(SystemExit) as exit_:
        SYNC.parse(["--dry-run"], prog="idstore sync")
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "usage: idstore sync" in err and "required: --config" in err


def test_each_job_publishes_its_own_figures_and_the_names_are_cloudwatch_metric_names():
    assert set(JOBS) == {"sync", "filter"}
    assert set(SYNC.metrics) == {"ItemsPut", "ItemsDeleted", "ItemsRejected", "ItemsUnchanged", "ConsumedWCU",
                                 "ConsumedRCU", "Throttles", "RunCostUSD", "ItemsImported", "ImportGB",
                                 "ImportSeconds", "ImportCostUSD", "WritePathCostUSD"}
    assert set(FILTER.metrics) == {"EventsRead", "EventsMatched", "EventsQuarantined"}
    assert not set(SYNC.metrics) & set(FILTER.metrics)  # each figure has one job
    assert not (set(SYNC.metrics) | set(FILTER.metrics)) & set(M.RUN_METRICS)  # and is not a run figure


@pytest.mark.parametrize("job, argv, named", [
    ("sync", [], ["source.url: empty", "source.query: empty", "snapshot.path: empty"]),
    ("sync", ["--set", "dynamodb.table="], ["dynamodb.table: empty"]),
    ("sync", ["--set", "source.url=jdbc:redshift://h:5439/db", "--set", "source.query=select 1"], ["no credentials"]),
    ("filter", [], ["events.path: empty", "output.path: empty", "output.quarantine_path: empty",
                    "snapshot.path: empty"]),
    ("filter", ["--ids", "dynamodb", "--set", "dynamodb.table="], ["dynamodb.table: empty"]),
    ("filter", ["--ids", "source"], ["source.url: empty", "source.query: empty"]),
])
def test_what_a_job_needs_is_checked_before_it_starts_and_every_missing_key_named(tmp_path, capsys, job, argv, named):
    from idstore.pipeline.entry import run_job

    conf = tmp_path / "empty.toml"
    conf.write_text("")
    assert run_job(job, ["--config", str(conf), *argv]) == 2
    err = capsys.readouterr().err
    assert all(problem in err for problem in named), err
