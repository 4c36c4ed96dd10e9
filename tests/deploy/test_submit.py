"""`idstore submit` against moto: steps on a cluster, a state-machine execution, Serverless job
runs; and the rendered state machines and schedule accepted by the services' APIs."""
import json

import pytest

from idstore_tools.deploy import cli, layout, render, submit


@pytest.fixture
def conf_uri(moto_config):
    return layout.conf_uri(moto_config, "prod.toml")


@pytest.fixture
def cluster_id(moto_config, aws, conf_uri):
    request = render.run_job_flow_request(moto_config, conf_uri, with_steps=False)
    return aws("emr").run_job_flow(**request)["JobFlowId"]


def test_steps_are_added_to_a_running_cluster_in_order(moto_config, aws, conf_uri, cluster_id):
    step_ids = submit.add_steps(moto_config, conf_uri, cluster_id)
    assert len(step_ids) == 2
    emr = aws("emr")
    described = [emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"] for step_id in step_ids]
    assert [s["Name"] for s in described] == ["idstore sync", "idstore filter"]
    for step, job in zip(described, ("sync", "filter")):
        assert step["Config"]["Args"] == render.spark_submit_args(moto_config, job, conf_uri)
        assert step["Config"]["Jar"] == "command-runner.jar"
        assert step["ActionOnFailure"] == "CANCEL_AND_WAIT"


def test_submit_cli_prints_the_step_ids(moto_overrides, prod_conf, cluster_id, aws, capsys):
    sets = [arg for override in moto_overrides for arg in ("--set", override)]
    code = cli.main(["submit", "--conf", str(prod_conf), *sets, "--cluster-id", cluster_id, "--jobs", "filter"])
    printed = capsys.readouterr().out.split()
    assert code == 0
    steps = aws("emr").list_steps(ClusterId=cluster_id)["Steps"]
    assert printed == [s["Id"] for s in steps if s["Name"] == "idstore filter"]


def test_a_filter_step_on_a_running_cluster_carries_its_window(moto_overrides, prod_conf, cluster_id, aws, capsys):
    from datetime import datetime, timedelta, timezone

    sets = [arg for override in moto_overrides for arg in ("--set", override)]
    emr = aws("emr")

    def filter_args():
        # the latest step: ListSteps gives the newest first
        [step] = [s for s in emr.list_steps(ClusterId=cluster_id)["Steps"] if s["Name"] == "idstore filter"][:1]
        return emr.describe_step(ClusterId=cluster_id, StepId=step["Id"])["Step"]["Config"]["Args"]

    # schedule.filter_days = 2 (the test config): the two days before today, UTC
    assert cli.main(["submit", "--config", str(prod_conf), *sets, "--cluster-id", cluster_id, "--jobs", "filter"]) == 0
    today = datetime.now(timezone.utc).date()
    window = ["--from", (today - timedelta(days=2)).isoformat(), "--to", (today - timedelta(days=1)).isoformat()]
    assert filter_args()[-4:] == window
    # --from/--to on the command line win; with filter_days = 0 and no flags, submit says it reads every day
    assert cli.main(["submit", "--config", str(prod_conf), *sets, "--cluster-id", cluster_id, "--jobs", "filter",
                     "--from", "2024-05-01", "--to", "2024-05-03"]) == 0
    assert filter_args()[-4:] == ["--from", "2024-05-01", "--to", "2024-05-03"]
    capsys.readouterr()
    assert cli.main(["submit", "--config", str(prod_conf), *sets, "--set", "schedule.filter_days=0",
                     "--cluster-id", cluster_id, "--jobs", "filter"]) == 0
    assert "read every day" in capsys.readouterr().err
    assert "--from" not in filter_args()


def test_the_rendered_state_machine_is_accepted_and_an_execution_starts(moto_config, aws, conf_uri):
    states = aws("stepfunctions")
    arn = states.create_state_machine(
        name="idstore", definition=json.dumps(render.state_machine(moto_config, conf_uri)),
        roleArn="arn:aws:iam::123456789012:role/idstore-states",
    )["stateMachineArn"]
    window = {"window": {"from": "2024-05-01", "to": "2024-05-07"}}
    execution = submit.start_execution(moto_config.run, arn, window, name="backfill-may")
    described = states.describe_execution(executionArn=execution)
    assert described["stateMachineArn"] == arn and described["name"] == "backfill-may"
    assert json.loads(described["input"]) == window


def test_the_rendered_schedule_is_accepted_by_scheduler(moto_config, aws):
    scheduler = aws("scheduler")
    request = render.schedule_request(moto_config)
    scheduler.create_schedule(**request)
    schedule = scheduler.get_schedule(Name=request["Name"])
    assert schedule["ScheduleExpression"] == "cron(0 0 * * ? *)"
    assert schedule["Target"]["Arn"] == request["Target"]["Arn"]
    assert schedule["State"] == "ENABLED"
    scheduler.delete_schedule(Name=request["Name"])


def test_serverless_job_runs_start_with_the_rendered_request(moto_config, aws, conf_uri):
    serverless = aws("emr-serverless")
    application = serverless.create_application(name="idstore", releaseLabel="emr-7.13.0", type="SPARK")
    run_ids = submit.start_job_runs(moto_config, conf_uri, ["sync"], application["applicationId"])
    [run] = [serverless.get_job_run(applicationId=application["applicationId"], jobRunId=i)["jobRun"] for i in run_ids]
    driver = run["jobDriver"]["sparkSubmit"]
    expected = render.start_job_run_request(moto_config, "sync", conf_uri)["jobDriver"]["sparkSubmit"]
    assert driver["entryPoint"] == expected["entryPoint"]
    assert driver["entryPointArguments"] == ["--config", conf_uri]
    assert run["executionRole"] == "arn:aws:iam::123456789012:role/idstore-serverless-job"


def test_submit_cli_needs_an_application_for_serverless(moto_overrides, prod_conf, capsys):
    sets = [arg for override in moto_overrides for arg in ("--set", override)]
    code = cli.main(["submit", "--conf", str(prod_conf), *sets, "--set", "serverless.application_id=",
                     "--application-id"])
    assert code == 2
    assert "no application" in capsys.readouterr().err
