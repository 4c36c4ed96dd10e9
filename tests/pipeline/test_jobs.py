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
    _, options = FILTER.parse(["--from", "2024-05-01", "--to", "2024-05-07", "--ids", "dynamodb"])
    assert options == FilterOptions(dry_run=False, start=date(2024, 5, 1), end=date(2024, 5, 7),
                                    ids_from=IdsFrom.DYNAMODB)
    assert FILTER.parse([])[1] == FilterOptions(ids_from=IdsFrom.SNAPSHOT)


@pytest.mark.parametrize("job, argv, named", [
    (FILTER, ["--from", "2024-05-08", "--to", "2024-05-07"], "--from 2024-05-08 is after --to 2024-05-07"),
    (FILTER, ["--force"], "--force"),  # a sync flag
    (SYNC, ["--from", "2024-05-01"], "--from"),  # a filter flag
    (FILTER, ["--ids", "elsewhere"], "elsewhere"),
])
def test_usage_errors_exit_2_naming_the_flag(job, argv, named, capsys):
    with pytest.raises(SystemExit) as exit_:
        job.parse(argv)
    assert exit_.value.code == 2 and named in capsys.readouterr().err


def test_each_job_publishes_its_own_figures_and_the_names_are_cloudwatch_metric_names():
    assert set(JOBS) == {"sync", "filter"}
    assert set(SYNC.metrics) == {"ItemsPut", "ItemsDeleted", "ItemsRejected", "ItemsUnchanged", "ConsumedWCU",
                                 "ConsumedRCU", "Throttles", "RunCostUSD"}
    assert set(FILTER.metrics) == {"EventsRead", "EventsMatched", "EventsQuarantined"}
    assert not set(SYNC.metrics) & set(FILTER.metrics) & set(M.RUN_METRICS)
