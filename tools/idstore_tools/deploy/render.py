"""AWS requests rendered from config: EMR steps and RunJobFlow, the Step Functions state
machines (EMR and EMR Serverless), EMR Serverless StartJobRun and the EventBridge schedule.

Every value comes from config and the deployed layout; nothing here calls AWS. A config holds
no secret, so neither does anything rendered from it. template builds the CloudFormation stack
from these; bundle puts them all together for `idstore render`.
"""
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Sequence, Union

from idstore.config import ConfigError
from idstore_tools.deploy import layout
from idstore_tools.deploy.config import ToolingConfig
from idstore_tools.deploy.layout import JOB_ORDER
from idstore_tools.deploy.naming import Names

PYTHON_PATHS = {"python3": "/usr/bin/python3", "python3.9": "/usr/bin/python3.9", "python3.11": "/usr/bin/python3.11"}
CREATE_CLUSTER = "arn:aws:states:::elasticmapreduce:createCluster.sync"
ADD_STEP = "arn:aws:states:::elasticmapreduce:addStep.sync"
TERMINATE_CLUSTER = "arn:aws:states:::elasticmapreduce:terminateCluster.sync"
START_JOB_RUN = "arn:aws:states:::emr-serverless:startJobRun.sync"
DAY_MS = 86_400_000


class JsonPath(str):
    """A state-machine argument read from the execution at run time, not a literal."""


EXECUTION_NAME = JsonPath("$$.Execution.Name")
WINDOW_FROM = JsonPath("$.window.from")
WINDOW_TO = JsonPath("$.window.to")


@dataclass(frozen=True)
class Window:
    """The days a filter run reads: --from and --to."""

    start: date
    end: date

    def args(self) -> List[str]:
        return ["--from", self.start.isoformat(), "--to", self.end.isoformat()]


def filter_window(config: ToolingConfig, start: Optional[date] = None, end: Optional[date] = None,
                  today: Optional[date] = None) -> Optional[Window]:
    """The window of a filter run idstore renders or submits: --from/--to when given, else the
    schedule.filter_days days before `today` (UTC), else None: every day in the archive."""
    if start or end:
        if not (start and end):
            raise ConfigError("--from and --to: give both, or neither (schedule.filter_days sets the window)")
        if start > end:
            raise ConfigError(f"--from {start} is after --to {end}")
        return Window(start, end)
    days = config.schedule.filter_days
    if not days:
        return None
    today = today or datetime.now(timezone.utc).date()
    return Window(today - timedelta(days=days), today - timedelta(days=1))


# -- EMR on EC2 -----------------------------------------------------------------------------
def python_path(config: ToolingConfig) -> str:
    return PYTHON_PATHS[config.emr.python]


def spark_submit_args(config: ToolingConfig, job: str, conf_uri: str, version: Optional[str] = None) -> List[str]:
    """The step's command: cluster deploy mode, the job from S3, the config passed along.

    idstore itself is on every node (the bootstrap action), so no --py-files are needed.
    spark-submit's own settings come before the job, the job's flags after it.
    """
    return [
        "spark-submit", "--deploy-mode", "cluster", "--master", "yarn",
        # a second application attempt would re-run the whole job; the step fails instead
        "--conf", "spark.yarn.maxAppAttempts=1",
        layout.artifact_uri(config, layout.JOBS[job], version),
        "--config", conf_uri,
    ]


def job_args(job: str, window: Optional[Window]) -> List[str]:
    """The flags a rendered or submitted run adds: the filter's window."""
    return window.args() if job == "filter" and window else []


def emr_step(config: ToolingConfig, job: str, conf_uri: str, action_on_failure: str,
             version: Optional[str] = None, window: Optional[Window] = None) -> Dict[str, Any]:
    args = [*spark_submit_args(config, job, conf_uri, version), *job_args(job, window)]
    return {
        "Name": f"{config.deploy.name} {job}",
        "ActionOnFailure": action_on_failure,
        "HadoopJarStep": {"Jar": "command-runner.jar", "Args": args},
    }


def emr_steps(config: ToolingConfig, conf_uri: str, action_on_failure: Optional[str] = None,
              jobs: Sequence[str] = JOB_ORDER, version: Optional[str] = None,
              window: Optional[Window] = None) -> List[Dict[str, Any]]:
    """The steps for AddJobFlowSteps, in order; by default a failed step cancels the ones after it."""
    action = action_on_failure or config.emr.action_on_failure
    return [emr_step(config, job, conf_uri, action, version, window) for job in jobs]


def emr_configurations(config: ToolingConfig) -> List[Dict[str, Any]]:
    python = python_path(config)
    return [
        {
            "Classification": "spark-env",
            "Properties": {},
            "Configurations": [{"Classification": "export", "Properties": {"PYSPARK_PYTHON": python}}],
        },
        {
            "Classification": "spark-defaults",
            "Properties": {
                "spark.pyspark.python": python,
                "spark.pyspark.driver.python": python,
                "spark.yarn.appMasterEnv.PYSPARK_PYTHON": python,
                "spark.executorEnv.PYSPARK_PYTHON": python,
            },
        },
    ]


def run_job_flow_request(config: ToolingConfig, conf_uri: str, with_steps: bool = True,
                         version: Optional[str] = None, window: Optional[Window] = None) -> Dict[str, Any]:
    """RunJobFlow: with steps, a cluster that runs sync then filter and ends; without, one that
    waits for steps (what Step Functions' createCluster.sync needs)."""
    names = Names.of(config)
    emr = config.emr
    instances: Dict[str, Any] = {
        "InstanceGroups": [
            {"Name": "primary", "InstanceRole": "MASTER", "Market": "ON_DEMAND",
             "InstanceType": emr.primary_instance_type, "InstanceCount": 1},
            {"Name": "core", "InstanceRole": "CORE", "Market": "ON_DEMAND",
             "InstanceType": emr.core_instance_type, "InstanceCount": emr.core_instance_count},
        ],
        "KeepJobFlowAliveWhenNoSteps": not with_steps,
        "TerminationProtected": False,
    }
    if emr.subnet_id:
        instances["Ec2SubnetId"] = emr.subnet_id
    request: Dict[str, Any] = {
        "Name": names.cluster,
        "ReleaseLabel": emr.release_label,
        "Applications": [{"Name": "Spark"}],
        "Instances": instances,
        "BootstrapActions": [{
            "Name": "install idstore",
            "ScriptBootstrapAction": {
                "Path": layout.artifact_uri(config, layout.BOOTSTRAP, version),
                "Args": [layout.release_uri(config, version), python_path(config)],
            },
        }],
        "Configurations": emr_configurations(config),
        "ServiceRole": names.emr_service_role,
        "JobFlowRole": names.job_flow_role,
        "VisibleToAllUsers": True,
        "StepConcurrencyLevel": 1,
        "Tags": [{"Key": "app", "Value": config.deploy.name}],
    }
    if emr.log_uri:
        request["LogUri"] = emr.log_uri
    if emr.idle_timeout_s:
        if not 60 <= emr.idle_timeout_s <= 604800:
            raise ConfigError(f"emr.idle_timeout_s: expected 0 (off) or 60 to 604800, got {emr.idle_timeout_s}")
        # the backstop when a run is stopped by hand: a stopped execution runs no Catch
        request["AutoTerminationPolicy"] = {"IdleTimeout": emr.idle_timeout_s}
    if with_steps:
        request["Steps"] = emr_steps(config, conf_uri, "TERMINATE_CLUSTER", version=version, window=window)
    return request


# -- Step Functions ---------------------------------------------------------------------------
def state_machine(config: ToolingConfig, conf_uri: str, version: Optional[str] = None) -> Dict[str, Any]:
    """create cluster -> sync -> filter -> terminate. Once the cluster exists, every failure is
    caught, terminates it and ends in a Fail state. createCluster.sync fails only when RunJobFlow
    was refused or the cluster ended on its own (e.g. a failed bootstrap): nothing to terminate."""
    states: Dict[str, Any] = {}
    start = "CreateCluster"
    if config.schedule.filter_days:
        start = "Window"
        states["Window"] = window_state(config.schedule.filter_days, "CreateCluster")
    cluster = run_job_flow_request(config, conf_uri, with_steps=False, version=version)
    del cluster["Name"]
    cluster["Name.$"] = f"States.Format('{_escape(config.deploy.name)}-{{}}', $$.Execution.Name)"
    states["CreateCluster"] = {
        "Type": "Task",
        "Resource": CREATE_CLUSTER,
        "Parameters": cluster,
        "ResultSelector": {"ClusterId.$": "$.ClusterId"},
        "ResultPath": "$.cluster",
        "Catch": [_catch("ClusterDidNotStart")],
        "Next": "Sync",
    }
    for job, following in zip(JOB_ORDER, ["Filter", "Terminate"]):
        args: List[Union[str, JsonPath]] = [
            *spark_submit_args(config, job, conf_uri, version), "--run-id", EXECUTION_NAME,
        ]
        if job == "filter" and config.schedule.filter_days:
            args += ["--from", WINDOW_FROM, "--to", WINDOW_TO]
        states[job.capitalize()] = {
            "Type": "Task",
            "Resource": ADD_STEP,
            "Parameters": {
                "ClusterId.$": "$.cluster.ClusterId",
                "Step": {
                    "Name": f"{config.deploy.name} {job}",
                    "ActionOnFailure": "CONTINUE",  # the state machine decides what a failure ends
                    "HadoopJarStep": {"Jar": "command-runner.jar", "Args.$": states_array(args)},
                },
            },
            "ResultPath": None,
            "Catch": [_catch("TerminateAfterFailure")],
            "Next": following,
        }
    terminate = {
        "Type": "Task",
        "Resource": TERMINATE_CLUSTER,
        "Parameters": {"ClusterId.$": "$.cluster.ClusterId"},
        "ResultPath": None,
        "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 30, "MaxAttempts": 3, "BackoffRate": 2.0}],
    }
    states["Terminate"] = {**terminate, "Catch": [_catch("TerminateFailed")], "Next": "Done"}
    states["TerminateAfterFailure"] = {
        **terminate, "Catch": [_catch("RunFailed", "$.terminate_error")], "Next": "RunFailed",
    }
    states["Done"] = {"Type": "Succeed"}
    states["RunFailed"] = _fail("idstore.RunFailed")
    states["ClusterDidNotStart"] = _fail("idstore.ClusterDidNotStart")
    states["TerminateFailed"] = _fail("idstore.TerminateFailed")
    return {
        "Comment": f"idstore ({config.deploy.name}): an EMR cluster runs sync, then filter, and is terminated",
        "StartAt": start,
        "States": states,
    }


def serverless_state_machine(config: ToolingConfig, conf_uri: str, version: Optional[str] = None) -> Dict[str, Any]:
    """sync -> filter as EMR Serverless job runs; no cluster, so a failure goes straight to Fail."""
    states: Dict[str, Any] = {}
    start = "Sync"
    if config.schedule.filter_days:
        start = "Window"
        states["Window"] = window_state(config.schedule.filter_days, "Sync")
    for job, following in zip(JOB_ORDER, ["Filter", "Done"]):
        request = start_job_run_request(config, job, conf_uri, version)
        args: List[Union[str, JsonPath]] = [*request["jobDriver"]["sparkSubmit"]["entryPointArguments"],
                                            "--run-id", EXECUTION_NAME]
        if job == "filter" and config.schedule.filter_days:
            args += ["--from", WINDOW_FROM, "--to", WINDOW_TO]
        parameters = _pascal(request)
        del parameters["Name"]
        parameters["Name.$"] = f"States.Format('{_escape(config.deploy.name)}-{job}-{{}}', $$.Execution.Name)"
        parameters["ClientToken.$"] = "States.UUID()"
        submit = parameters["JobDriver"]["SparkSubmit"]
        del submit["EntryPointArguments"]
        submit["EntryPointArguments.$"] = states_array(args)
        states[job.capitalize()] = {
            "Type": "Task",
            "Resource": START_JOB_RUN,
            "Parameters": parameters,
            "ResultPath": None,
            "Catch": [_catch("RunFailed")],
            "Next": following,
        }
    states["Done"] = {"Type": "Succeed"}
    states["RunFailed"] = _fail("idstore.RunFailed")
    return {
        "Comment": f"idstore ({config.deploy.name}): sync, then filter, as EMR Serverless job runs",
        "StartAt": start,
        "States": states,
    }


def window_state(days: int, following: str) -> Dict[str, Any]:
    """$.window = the `days` days before the run's start (UTC), unless the input brings its own."""
    start = "$toMillis($states.context.Execution.StartTime)"
    day = "'[Y0001]-[M01]-[D01]'"
    window = (f"{{'from': $fromMillis({start} - {days * DAY_MS}, {day}), "
              f"'to': $fromMillis({start} - {DAY_MS}, {day})}}")
    return {
        "Type": "Pass",
        "QueryLanguage": "JSONata",
        "Comment": f"the filter step reads the {days} day(s) before the run; input {{\"window\": ...}} overrides",
        "Output": f"{{% $merge([{{'window': {window}}}, $states.input]) %}}",
        "Next": following,
    }


def states_array(args: Sequence[Union[str, JsonPath]]) -> str:
    """States.Array(...) of literals and paths: a JSONPath Args list with run-time values."""
    return "States.Array(" + ", ".join(a if isinstance(a, JsonPath) else f"'{_escape(a)}'" for a in args) + ")"


def _escape(text: str) -> str:
    """Quote a literal for an intrinsic function: ' { } and \\ are escaped with a backslash."""
    for char in ("\\", "'", "{", "}"):
        text = text.replace(char, "\\" + char)
    return text


def _catch(following: str, result_path: str = "$.error") -> Dict[str, Any]:
    return {"ErrorEquals": ["States.ALL"], "ResultPath": result_path, "Next": following}


def _fail(error: str) -> Dict[str, Any]:
    return {"Type": "Fail", "Error": error, "CausePath": "$.error.Cause"}


# -- EMR Serverless ---------------------------------------------------------------------------
def start_job_run_request(config: ToolingConfig, job: str, conf_uri: str,
                          version: Optional[str] = None, window: Optional[Window] = None) -> Dict[str, Any]:
    """StartJobRun for one job (boto3's clientToken is filled in per call)."""
    serverless = config.serverless
    if not serverless.application_id:
        raise ConfigError("serverless.application_id: not set; EMR Serverless needs an application")
    names = Names.of(config)
    archive = layout.artifact_uri(
        config, layout.serverless_archive(layout.SERVERLESS_PYTHON, layout.ARCHITECTURES[serverless.architecture]),
        version,
    )
    spark_conf = {
        # no bootstrap actions on Serverless: idstore and its dependencies come as an archive
        "spark.archives": f"{archive}#deps",
        "spark.emr-serverless.driverEnv.PYTHONPATH": "./deps",
        "spark.executorEnv.PYTHONPATH": "./deps",
    }
    request: Dict[str, Any] = {
        "applicationId": serverless.application_id,
        "executionRoleArn": names.serverless_job_role_arn,
        "name": f"{config.deploy.name}-{job}",
        "jobDriver": {"sparkSubmit": {
            "entryPoint": layout.artifact_uri(config, layout.JOBS[job], version),
            "entryPointArguments": ["--config", conf_uri, *job_args(job, window)],
            "sparkSubmitParameters": " ".join(f"--conf {k}={v}" for k, v in spark_conf.items()),
        }},
        "tags": {"app": config.deploy.name},
    }
    if config.emr.log_uri:
        request["configurationOverrides"] = {
            "monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": config.emr.log_uri}},
        }
    return request


def _pascal(value: Any) -> Any:
    """Step Functions' EMR Serverless parameters are the API's members, capitalised."""
    if isinstance(value, dict):
        # tag keys are the user's, not API members
        return {k[:1].upper() + k[1:]: v if k == "tags" else _pascal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_pascal(v) for v in value]
    return value


# -- EventBridge Scheduler --------------------------------------------------------------------
def schedule_request(config: ToolingConfig) -> Dict[str, Any]:
    names = Names.of(config)
    target = names.serverless_state_machine if config.schedule.target == "serverless" else names.state_machine
    return {
        "Name": names.schedule,
        "Description": f"idstore {config.deploy.name}: starts the {config.schedule.target} state machine",
        "ScheduleExpression": config.schedule.cron,
        "ScheduleExpressionTimezone": config.schedule.timezone,
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "State": "ENABLED" if config.schedule.enabled else "DISABLED",
        "Target": {
            "Arn": names.state_machine_arn(target),
            "RoleArn": names.role_arn(names.scheduler_role),
            "Input": "{}",
            # a failed StartExecution started nothing, so retrying it cannot double a run
            "RetryPolicy": {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600},
        },
    }
