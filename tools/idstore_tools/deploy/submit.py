"""`idstore submit`: start a run on AWS, the same requests `idstore render` writes.

Steps on a running cluster, an execution of the state machine, or EMR Serverless job runs.
"""
import json
import logging
from typing import Any, Dict, List, Optional, Sequence

from idstore.config import Config
from idstore_tools.deploy import layout, render
from idstore_tools.deploy.config import ToolingConfig

log = logging.getLogger(__name__)


def aws_client(service: str, config: Config):
    import boto3

    return boto3.client(service, region_name=config.aws.region, endpoint_url=config.aws.endpoint_url or None)


def add_steps(config: ToolingConfig, conf_uri: str, cluster_id: str, jobs: Sequence[str] = layout.JOB_ORDER,
              version: Optional[str] = None, window: Optional[render.Window] = None, client=None) -> List[str]:
    """Add the jobs' steps, in order, to a running cluster; returns the step ids."""
    client = client or aws_client("emr", config.run)
    steps = render.emr_steps(config, conf_uri, jobs=jobs, version=version, window=window)
    response = client.add_job_flow_steps(JobFlowId=cluster_id, Steps=steps)
    log.info("added %d steps to %s", len(steps), cluster_id)
    return list(response["StepIds"])


def start_execution(config: Config, state_machine_arn: str, run_input: Optional[Dict[str, Any]] = None,
                    name: Optional[str] = None, client=None) -> str:
    """Start the state machine; `run_input` may carry {"window": {"from": ..., "to": ...}}."""
    client = client or aws_client("stepfunctions", config)
    kwargs: Dict[str, Any] = {"stateMachineArn": state_machine_arn, "input": json.dumps(run_input or {})}
    if name:
        kwargs["name"] = name
    return client.start_execution(**kwargs)["executionArn"]


def start_job_runs(config: ToolingConfig, conf_uri: str, jobs: Sequence[str], application_id: Optional[str] = None,
                   version: Optional[str] = None, window: Optional[render.Window] = None, client=None) -> List[str]:
    """Start one EMR Serverless job run per job; they run side by side, so pass one job unless
    that is what you want (the Serverless state machine runs sync, then filter)."""
    client = client or aws_client("emr-serverless", config.run)
    run_ids = []
    for job in jobs:
        request = render.start_job_run_request(config, job, conf_uri, version, window)
        if application_id:
            request["applicationId"] = application_id
        run_ids.append(client.start_job_run(**request)["jobRunId"])
    return run_ids
