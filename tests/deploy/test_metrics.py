"""Run figures published to CloudWatch (moto), read back through the CloudWatch API."""
from datetime import datetime, timedelta, timezone

import pytest

from idstore.metrics import publish_run_metrics, run_metrics
from idstore.pipeline.report import JobResult, RunReport


class Figures(JobResult):
    """A job's result reduced to the figures it gives CloudWatch: what these tests are about."""

    def __init__(self, **figures):
        self.figures = figures

    def metrics(self):
        return dict(self.figures)


def sync_report(outcome="succeeded", dry_run=False):
    figures = Figures(ItemsPut=998, ItemsDeleted=40, ItemsRejected=9, ConsumedWCU=1040.0, Throttles=17)
    report = RunReport(job="sync", run_id="r1", config={}, result=figures, dry_run=dry_run)
    report.finish(outcome)
    report.durations_s["total"] = 12.5
    return report


def filter_report():
    figures = Figures(EventsRead=50_000, EventsMatched=1_234, EventsQuarantined=10)
    report = RunReport(job="filter", run_id="r2", config={}, result=figures)
    report.finish("succeeded")
    return report


def values(data):
    return {d["MetricName"]: d["Value"] for d in data}


def test_sync_figures_from_the_report_and_its_outcome():
    assert values(run_metrics(sync_report())) == {
        "DurationSeconds": 12.5, "RunsSucceeded": 1.0, "RunsFailed": 0.0, "RunsRefused": 0.0,
        "RunsInputNotReady": 0.0, "ItemsPut": 998.0, "ItemsDeleted": 40.0, "ItemsRejected": 9.0, "ConsumedWCU": 1040.0, "Throttles": 17.0,
    }


def test_filter_figures_and_failed_runs():
    assert values(run_metrics(filter_report())) == pytest.approx({
        "DurationSeconds": filter_report().durations_s["total"], "RunsSucceeded": 1.0, "RunsFailed": 0.0,
        "RunsRefused": 0.0, "RunsInputNotReady": 0.0,
        "EventsRead": 50_000.0, "EventsMatched": 1_234.0, "EventsQuarantined": 10.0,
    }, abs=1.0)
    ended = {"failed": "RunsFailed", "refused": "RunsRefused", "input_not_ready": "RunsInputNotReady"}
    for outcome, metric in ended.items():
        figures = values(run_metrics(sync_report(outcome)))
        assert {name: figures[name] for name in ("RunsSucceeded", *ended.values())} == {
            "RunsSucceeded": 0.0, **{name: 1.0 if name == metric else 0.0 for name in ended.values()}}


def test_a_run_that_did_not_get_far_publishes_only_what_it_has():
    report = RunReport(job="sync", run_id="r3", config={})
    report.finish("failed", "config error")
    assert set(values(run_metrics(report))) == {"DurationSeconds", "RunsSucceeded", "RunsFailed", "RunsRefused",
                                                "RunsInputNotReady"}


def test_metrics_land_in_the_configured_namespace(make_config, moto_overrides, aws):
    namespace = "idstore-test-" + datetime.now().strftime("%H%M%S%f")
    config = make_config([*moto_overrides, f"cloudwatch.namespace={namespace}"]).run
    assert publish_run_metrics(config, sync_report()) == 10
    cloudwatch = aws("cloudwatch")
    listed = cloudwatch.list_metrics(Namespace=namespace)["Metrics"]
    assert {m["MetricName"] for m in listed} == set(values(run_metrics(sync_report())))
    assert all(m["Dimensions"] == [{"Name": "Job", "Value": "sync"}] for m in listed)
    now = datetime.now(timezone.utc)
    stats = cloudwatch.get_metric_statistics(
        Namespace=namespace, MetricName="ItemsPut", Dimensions=[{"Name": "Job", "Value": "sync"}],
        StartTime=now - timedelta(minutes=5), EndTime=now + timedelta(minutes=5), Period=600, Statistics=["Sum"],
    )
    assert [p["Sum"] for p in stats["Datapoints"]] == [998.0]


def test_nothing_is_published_when_disabled_or_for_a_dry_run_whatever_its_outcome(make_config):
    class Record:  # publishing swallows a client's errors, so the calls are counted instead
        calls = []

        def put_metric_data(self, **kwargs):
            self.calls.append(kwargs)

    assert publish_run_metrics(make_config(["cloudwatch.enabled=false"]).run, sync_report(), client=Record()) == 0
    assert publish_run_metrics(make_config().run, sync_report("dry_run", dry_run=True), client=Record()) == 0
    # a rehearsal that a guard refused is still a rehearsal: no alarm
    assert publish_run_metrics(make_config().run, sync_report("refused", dry_run=True), client=Record()) == 0
    assert Record.calls == []
    assert publish_run_metrics(make_config().run, sync_report("refused"), client=Record()) == 10  # a real refusal
    assert values(Record.calls[0]["MetricData"])["RunsRefused"] == 1.0


def test_a_cloudwatch_outage_does_not_fail_the_run(make_config, caplog):
    class Down:
        def put_metric_data(self, **kwargs):
            raise ConnectionError("cloudwatch unreachable")

    assert publish_run_metrics(make_config().run, sync_report(), client=Down()) == 0
    assert "could not publish run metrics" in caplog.text
