"""Run figures as CloudWatch metrics, when [cloudwatch] enabled: what the dashboard and the
failed-run alarm of the CloudFormation template read. One data point per figure per run,
dimension Job = sync | filter."""
import logging
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional

from idstore.config import Config

log = logging.getLogger(__name__)

FAILED_OUTCOMES = ("failed", "refused")
WRITER_DETAILS = ("writer", "deleter")  # details holding a writer's summed stats
# The metric names, once: the jobs publish them, the rendered dashboard and alarms read them.
RUN_METRICS = ("DurationSeconds", "RunsSucceeded", "RunsFailed")
JOB_METRICS = {
    "sync": ("ItemsPut", "ItemsDeleted", "ItemsRejected", "ConsumedWCU", "Throttles"),
    "filter": ("EventsRead", "EventsMatched", "EventsQuarantined"),
}


def run_metrics(report) -> List[Dict[str, Any]]:
    """MetricData for put_metric_data from a RunReport (figures the run did not produce are left out)."""
    counts: Mapping[str, Any] = report.counts
    details: Mapping[str, Any] = report.details
    figures: Dict[str, Optional[float]] = {
        "DurationSeconds": report.durations_s.get("total"),
        "RunsSucceeded": 1.0 if report.outcome == "succeeded" else 0.0,
        "RunsFailed": 1.0 if report.outcome in FAILED_OUTCOMES else 0.0,
    }
    if report.job == "sync":
        writers = [details[name] for name in WRITER_DETAILS if isinstance(details.get(name), Mapping)]
        figures.update(
            ItemsPut=counts.get("written"),
            ItemsDeleted=counts.get("deleted"),
            ItemsRejected=_sum(counts, "rejected", "writer_rejected"),
            ConsumedWCU=_sum_of(writers, "consumed_wcu"),
            # throttle errors retried and UnprocessedItems re-sent: both are DynamoDB pushing back
            Throttles=_sum(
                {k: _sum_of(writers, k) for k in ("retries_throttle", "unprocessed_resent")},
                "retries_throttle", "unprocessed_resent",
            ),
        )
    else:
        figures.update(
            EventsRead=counts.get("events_read"),
            EventsMatched=counts.get("matched"),
            EventsQuarantined=_sum(counts, "malformed", "missing_id"),
        )
    now = datetime.now(timezone.utc)
    return [
        {"MetricName": name, "Dimensions": [{"Name": "Job", "Value": report.job}], "Timestamp": now,
         "Value": float(value), "Unit": "Seconds" if name == "DurationSeconds" else "Count"}
        for name, value in figures.items()
        if value is not None
    ]


def publish_run_metrics(config: Config, report, client=None) -> int:
    """Put the run's figures in config.cloudwatch.namespace; returns how many (0 when disabled,
    for a dry run, or when CloudWatch refused them: metrics never change a run's outcome)."""
    if not config.cloudwatch.enabled or report.outcome == "dry_run":
        return 0
    data = run_metrics(report)
    try:
        if client is None:
            import boto3

            client = boto3.client("cloudwatch", region_name=config.aws.region,
                                  endpoint_url=config.aws.endpoint_url or None)
        for start in range(0, len(data), 1000):  # the API's limit per call
            client.put_metric_data(Namespace=config.cloudwatch.namespace, MetricData=data[start:start + 1000])
    except Exception as exc:  # noqa: BLE001 - a metrics outage must not fail a finished run
        log.error("could not publish run metrics to CloudWatch: %s", exc)
        return 0
    log.info("published %d run metrics to CloudWatch namespace %s", len(data), config.cloudwatch.namespace)
    return len(data)


def _sum(counts: Mapping[str, Any], *keys: str) -> Optional[float]:
    present = [float(counts[k]) for k in keys if counts.get(k) is not None]
    return sum(present) if present else None


def _sum_of(stats: List[Mapping[str, Any]], key: str) -> Optional[float]:
    present = [float(s[key]) for s in stats if s.get(key) is not None]
    return sum(present) if present else None
