"""Run figures as CloudWatch metrics, when [cloudwatch] enabled: what the dashboard and the
failed-run alarm of the CloudFormation template read. One data point per figure per run,
dimension Job = sync | filter."""
import logging
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional

from idstore.config import Config
from idstore.pipeline.report import Outcome

log = logging.getLogger(__name__)

# The metric names, once: the jobs' results give them (RunReport.metrics), the rendered
# dashboard and alarms read them; which job publishes which is in pipeline/jobs.py.
DURATION_SECONDS, RUNS_SUCCEEDED, RUNS_FAILED = "DurationSeconds", "RunsSucceeded", "RunsFailed"
# a refusal (a guard, the lock) and a late input are not failures: each has its own figure and alarm
RUNS_REFUSED, RUNS_INPUT_NOT_READY = "RunsRefused", "RunsInputNotReady"
ITEMS_PUT, ITEMS_DELETED, ITEMS_REJECTED = "ItemsPut", "ItemsDeleted", "ItemsRejected"
CONSUMED_WCU, CONSUMED_RCU, THROTTLES = "ConsumedWCU", "ConsumedRCU", "Throttles"
ITEMS_UNCHANGED, RUN_COST_USD = "ItemsUnchanged", "RunCostUSD"
# a first load by import: its size, time and price, and what the write path would have cost
ITEMS_IMPORTED, IMPORT_GB, IMPORT_SECONDS = "ItemsImported", "ImportGB", "ImportSeconds"
IMPORT_COST_USD, WRITE_PATH_COST_USD = "ImportCostUSD", "WritePathCostUSD"
EVENTS_READ, EVENTS_MATCHED, EVENTS_QUARANTINED = "EventsRead", "EventsMatched", "EventsQuarantined"
RUN_METRICS = (DURATION_SECONDS, RUNS_SUCCEEDED, RUNS_FAILED, RUNS_REFUSED, RUNS_INPUT_NOT_READY)
_OUTCOME_METRICS = {
    RUNS_SUCCEEDED: Outcome.SUCCEEDED, RUNS_FAILED: Outcome.FAILED, RUNS_REFUSED: Outcome.REFUSED,
    RUNS_INPUT_NOT_READY: Outcome.INPUT_NOT_READY,
}


def run_metrics(report) -> List[Dict[str, Any]]:
    """MetricData for put_metric_data from a RunReport: the run's outcome and what the job recorded."""
    figures: Dict[str, Optional[float]] = {
        DURATION_SECONDS: report.durations_s.get("total"),
        **{name: 1.0 if report.outcome == outcome else 0.0 for name, outcome in _OUTCOME_METRICS.items()},
        **report.metrics,
    }
    now = datetime.now(timezone.utc)
    return [
        {"MetricName": name, "Dimensions": [{"Name": "Job", "Value": report.job}], "Timestamp": now,
         "Value": float(value), "Unit": "Seconds" if name.endswith("Seconds") else "Count"}
        for name, value in figures.items()
        if value is not None
    ]


def publish_run_metrics(config: Config, report, client=None) -> int:
    """Put the run's figures in config.cloudwatch.namespace; returns how many (0 when disabled,
    for a dry run whatever its outcome (a rehearsal raises no alarm), or when CloudWatch refused
    them: metrics never change a run's outcome)."""
    if not config.cloudwatch.enabled or report.dry_run:
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
