"""A sync run's report, rendered from its typed stage results, against figures worked out by hand."""
from idstore.config import WriteMode, load_config
from idstore.delta import Strategy
from idstore.dynamodb.bulk import RatePlan, WriteStats
from idstore.pipeline.sync_result import Changes, RunCost, RunTotals, SourceSet, SyncPlan, SyncResult, WriteOutcome

PRICES = load_config(None, ["cost.write_unit_usd_per_million=1.25", "cost.read_unit_usd_per_million=0.25"]).cost


def source() -> SourceSet:
    # 10 rows: 2 rejected, 6 distinct valid ids, so 2 duplicates
    return SourceSet(None, None, None, source_rows=10, distinct_ids=6, id_bytes=60,
                     rejected_by_reason={"empty": 1, "too_long": 1})


def plan(mode: WriteMode) -> SyncPlan:
    changes = Changes(puts=None, deletes=None, new=6, changed=0, refresh=0, unchanged=0, delete_count=3,
                      table_keys=9, record=None, strategy=Strategy(False, "--full on the command line"))
    rate = RatePlan(job_rate=100.0, task_rate=50.0, partitions=2, concurrent_tasks=2, reason="dynamodb.write_rate")
    return SyncPlan(mode, "T", changes, rejected=2, rate=rate, estimated_write_s=0.1,
                    cost=RunCost.at(PRICES, 9, 4), full_run_cost=None)


def finished(mode: WriteMode) -> SyncResult:
    result = SyncResult(mode, dry_run=False, source=source(), plan=plan(mode))
    result.puts = WriteOutcome(WriteStats(written=5, put=5, rejected=1, rejected_key_too_long=1, requests=2,
                                          retries_throttle=1, unprocessed_resent=2, consumed_wcu=5.0, throttled_s=0.4),
                               seconds=2.0)
    result.deletes = WriteOutcome(WriteStats(written=3, deleted=3, requests=1, retries_5xx=1, consumed_wcu=3.0),
                                  seconds=1.0)
    result.totals = RunTotals.of(PRICES, result.plan, result.puts, result.deletes)
    result.snapshot = "/snaps/run_id=r"
    return result


def test_a_finished_mirror_run_reports_every_stage():
    result = finished(WriteMode.MIRROR)
    assert result.counts() == {
        "source_rows": 10, "rejected": 2, "duplicates": 2, "distinct_ids": 6,
        "puts_new": 6, "puts_changed": 0, "puts_refresh": 0, "unchanged": 0, "stale": 3, "table_keys_before": 9,
        "written": 5, "writer_rejected": 1, "deleted": 3,
    }
    details = result.details()
    assert details["retries"] == 1 + 2 + 1 and details["consumed_wcu"] == 8.0 and details["throttled_s"] == 0.4
    assert details["cost"]["consumed"] == {"write_units": 8.0, "read_units": 0.0, "usd": 0.00001}
    assert details["cost"]["planned"] == {"write_units": 9.0, "read_units": 4.0, "usd": 0.000012}
    assert (details["put_items_per_s"], details["delete_items_per_s"]) == (2.5, 3.0)
    assert details["writer"]["written"] == 5 and details["deleter"]["deleted"] == 3
    assert details["snapshot"] == "/snaps/run_id=r" and details["mode"] == "mirror"
    assert "estimated_write_s" not in details and details["planned"]["estimated_write_s"] == 0.1
    assert "write_rate_wcu" not in details["planned"] and details["write_rate_wcu"] == 100.0
    assert result.metrics() == {"ItemsRejected": 3, "ItemsPut": 5, "ItemsUnchanged": 0, "ItemsDeleted": 3,
                                "ConsumedWCU": 8.0, "ConsumedRCU": 0.0, "RunCostUSD": 0.00001, "Throttles": 3}


def test_an_upsert_run_reports_no_deletes():
    result = finished(WriteMode.UPSERT)
    result.deletes = WriteOutcome.nothing()
    assert "deleted" not in result.counts() and "stale" not in result.counts()
    assert "deleter" not in result.details() and "ItemsDeleted" not in result.metrics()


def test_a_run_stopped_after_the_read_reports_the_read_and_its_rejects():
    result = SyncResult(WriteMode.UPSERT, dry_run=False, source=source(), quarantine="/q/sync/run_id=r")
    assert result.counts() == {"source_rows": 10, "rejected": 2, "duplicates": 2, "distinct_ids": 6}
    assert result.details() == {"mode": "upsert", "rejected_by_reason": {"empty": 1, "too_long": 1},
                                "quarantine": "/q/sync/run_id=r"}
    assert result.metrics() == {"ItemsRejected": 2}


def test_the_summary_shows_a_small_cost_as_it_is_not_rounded_to_a_tenth():
    from idstore.pipeline.report import RunReport

    report = RunReport(job="sync", run_id="r", config={}, result=finished(WriteMode.MIRROR))
    report.finish("succeeded")
    lines = report.summary_lines()
    assert "  cost_usd: 0.00001" in lines and "  consumed_wcu: 8.0" in lines
