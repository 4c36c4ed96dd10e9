"""The CloudFormation template: state machine(s), schedule, roles, and with [cloudwatch] a
dashboard and alarms on failed runs. Built from the same functions as the other rendered files.

Roles get fixed names (<deploy.name>-...) because RunJobFlow and the schedule refer to them by
name: deploy with --capabilities CAPABILITY_NAMED_IAM.
"""
import json
from typing import Any, Dict, List, Optional

from idstore.metrics import RUNS_FAILED, RUNS_INPUT_NOT_READY, RUNS_REFUSED
from idstore.pipeline.jobs import JOBS
from idstore_tools.deploy import iam, layout, render
from idstore_tools.deploy.config import ToolingConfig
from idstore_tools.deploy.naming import Names

EMR_SERVICE_POLICY = "arn:{partition}:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2"


def cloudformation_template(config: ToolingConfig, conf_uri: str, version: Optional[str] = None) -> Dict[str, Any]:
    names = Names.of(config)
    resources: Dict[str, Any] = {}
    outputs: Dict[str, Any] = {}
    partition = names.role_arn("x").split(":")[1]
    role_resources = []

    if names.creates_emr_service_role:
        resources["EmrServiceRole"] = _role(
            names.emr_service_role, "elasticmapreduce.amazonaws.com",
            managed=[EMR_SERVICE_POLICY.format(partition=partition)],
        )
        role_resources.append("EmrServiceRole")
    if names.creates_emr_ec2_role:
        resources["EmrEc2Role"] = _role(names.emr_ec2_role, "ec2.amazonaws.com",
                                        policy_name="idstore-jobs", statements=iam.job_statements(config, version))
        resources["EmrInstanceProfile"] = {
            "Type": "AWS::IAM::InstanceProfile",
            "Properties": {"InstanceProfileName": names.job_flow_role, "Roles": [{"Ref": "EmrEc2Role"}]},
        }
        role_resources.append("EmrInstanceProfile")

    states_statements = iam.emr_states_statements(config, names)
    serverless = bool(config.serverless.application_id)
    if serverless:
        states_statements += iam.serverless_states_statements(config, names)
        if names.creates_serverless_job_role:
            resources["ServerlessJobRole"] = _role(
                names.serverless_job_role, "emr-serverless.amazonaws.com",
                policy_name="idstore-jobs", statements=iam.job_statements(config, version),
            )
            role_resources.append("ServerlessJobRole")
    resources["StatesRole"] = _role(names.states_role, "states.amazonaws.com",
                                    policy_name="run-idstore", statements=states_statements)

    resources["StateMachine"] = _with_depends_on({
        "Type": "AWS::StepFunctions::StateMachine",
        "Properties": {
            "StateMachineName": names.state_machine,
            "RoleArn": {"Fn::GetAtt": ["StatesRole", "Arn"]},
            "Definition": render.state_machine(config, conf_uri, version),
        },
    }, [r for r in role_resources if r != "ServerlessJobRole"])  # RunJobFlow names the EMR roles: create them first
    outputs["StateMachineArn"] = {"Value": {"Ref": "StateMachine"}}
    machines = ["StateMachine"]
    if serverless:
        resources["ServerlessStateMachine"] = _with_depends_on({
            "Type": "AWS::StepFunctions::StateMachine",
            "Properties": {
                "StateMachineName": names.serverless_state_machine,
                "RoleArn": {"Fn::GetAtt": ["StatesRole", "Arn"]},
                "Definition": render.serverless_state_machine(config, conf_uri, version),
            },
        }, [r for r in role_resources if r == "ServerlessJobRole"])
        outputs["ServerlessStateMachineArn"] = {"Value": {"Ref": "ServerlessStateMachine"}}
        machines.append("ServerlessStateMachine")

    target = "ServerlessStateMachine" if config.schedule.target == "serverless" and serverless else "StateMachine"
    resources["SchedulerRole"] = _role(names.scheduler_role, "scheduler.amazonaws.com", policy_name="start-idstore",
                                       statements=iam.scheduler_statements(names.state_machine_arn(
                                           resources[target]["Properties"]["StateMachineName"])))
    schedule = render.schedule_request(config)
    resources["Schedule"] = {
        "Type": "AWS::Scheduler::Schedule",
        "Properties": {
            "Name": schedule["Name"],
            "Description": schedule["Description"],
            "ScheduleExpression": schedule["ScheduleExpression"],
            "ScheduleExpressionTimezone": schedule["ScheduleExpressionTimezone"],
            "FlexibleTimeWindow": schedule["FlexibleTimeWindow"],
            "State": schedule["State"],
            "Target": {
                **schedule["Target"], "Arn": {"Ref": target}, "RoleArn": {"Fn::GetAtt": ["SchedulerRole", "Arn"]},
            },
        },
    }
    outputs["ScheduleName"] = {"Value": {"Ref": "Schedule"}}

    if config.run.cloudwatch.enabled:
        resources.update(_monitoring(config, names, machines))
        outputs["Dashboard"] = {"Value": {"Ref": "Dashboard"}}

    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"idstore {config.deploy.name}: state machines, schedule and roles (from idstore render)",
        "Resources": resources,
        "Outputs": outputs,
    }


def _with_depends_on(resource: Dict[str, Any], depends_on: List[str]) -> Dict[str, Any]:
    return {**resource, "DependsOn": depends_on} if depends_on else resource


def _role(name: str, service: str, policy_name: str = "", statements: Optional[List[Dict[str, Any]]] = None,
          managed: Optional[List[str]] = None) -> Dict[str, Any]:
    properties: Dict[str, Any] = {"RoleName": name, "AssumeRolePolicyDocument": iam.trust_policy(service)}
    if statements:
        properties["Policies"] = [{"PolicyName": policy_name, "PolicyDocument": iam.policy(statements)}]
    if managed:
        properties["ManagedPolicyArns"] = managed
    return {"Type": "AWS::IAM::Role", "Properties": properties}


def _monitoring(config: ToolingConfig, names: Names, machines: List[str]) -> Dict[str, Any]:
    namespace, region = config.run.cloudwatch.namespace, config.run.aws.region
    actions = [config.run.cloudwatch.alarm_topic_arn] if config.run.cloudwatch.alarm_topic_arn else []
    resources: Dict[str, Any] = {}
    for machine in machines:
        resources[f"{machine}FailedAlarm"] = {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmDescription": f"an idstore {config.deploy.name} run failed ({machine})",
                "Namespace": "AWS/States",
                "MetricName": "ExecutionsFailed",
                "Dimensions": [{"Name": "StateMachineArn", "Value": {"Ref": machine}}],
                "Statistic": "Sum",
                "Period": 300,
                "EvaluationPeriods": 1,
                "Threshold": 1,
                "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                "TreatMissingData": "notBreaching",
                "AlarmActions": actions,
            },
        }
    # the jobs' own figures also catch runs started by hand (spark-submit, idstore submit --cluster-id),
    # and tell a failure from a refusal (a guard or the lock) and from input that is late
    for alarm, metric, what in (
        ("JobFailedAlarm", RUNS_FAILED, "reported a failed run"),
        ("JobRefusedAlarm", RUNS_REFUSED, "was refused by a safety guard or the run lock (nothing was changed)"),
        ("InputNotReadyAlarm", RUNS_INPUT_NOT_READY, "found its input missing (a late day, or no snapshot yet)"),
    ):
        resources[alarm] = _job_alarm(metric, f"an idstore {config.deploy.name} job {what}", namespace, actions)
    widgets = [
        _widget(f"idstore {job.name}", [[namespace, metric, "Job", job.name] for metric in job.metrics], region, index)
        for index, job in enumerate(JOBS.values())
    ]
    widgets.append(_widget("run time (s)", [[namespace, "DurationSeconds", "Job", job] for job in layout.JOB_ORDER],
                           region, len(widgets)))
    ended = (RUNS_FAILED, RUNS_REFUSED, RUNS_INPUT_NOT_READY)
    widgets.append(_widget("failed, refused and late runs",
                           [[namespace, metric, "Job", job] for metric in ended for job in layout.JOB_ORDER],
                           region, len(widgets)))
    resources["Dashboard"] = {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {"DashboardName": names.name, "DashboardBody": json.dumps({"widgets": widgets})},
    }
    return resources


def _job_alarm(metric: str, description: str, namespace: str, actions: List[str]) -> Dict[str, Any]:
    """An alarm on one run figure, summed over both jobs: any run in 5 minutes trips it."""
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmDescription": description,
            "Metrics": [
                {"Id": f"{job}", "ReturnData": False, "MetricStat": {
                    "Metric": {"Namespace": namespace, "MetricName": metric,
                               "Dimensions": [{"Name": "Job", "Value": job}]},
                    "Period": 300, "Stat": "Sum"}}
                for job in layout.JOB_ORDER
            ] + [{"Id": "runs", "Expression": " + ".join(f"FILL({job}, 0)" for job in layout.JOB_ORDER),
                  "Label": f"{metric} of both jobs", "ReturnData": True}],
            "EvaluationPeriods": 1,
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": actions,
        },
    }


def _widget(title: str, metrics: List[List[str]], region: str, index: int) -> Dict[str, Any]:
    return {
        "type": "metric", "x": (index % 2) * 12, "y": (index // 2) * 6, "width": 12, "height": 6,
        "properties": {"title": title, "metrics": metrics, "region": region, "stat": "Sum", "period": 86400,
                       "view": "timeSeries"},
    }
