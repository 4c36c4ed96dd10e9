"""Rendered AWS requests: valid against botocore's service models, state machines sound, the
CloudFormation template clean under cfn-lint, nothing secret in any of it."""
import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from idstore_tools.deploy import bundle, cli, layout, render

RELEASE = "s3://example-idstore-artifacts/idstore/releases/0.1.0"
CONF_URI = f"{RELEASE}/conf/prod.toml"
CLUSTER_ID = "j-2AXXXXXXGAPLF"
SAMPLES = {  # what the paths the state machines read hold at run time
    "$.cluster.ClusterId": CLUSTER_ID,
    "$$.Execution.Name": "run-20240502",
    "$.window.from": "2024-04-30",
    "$.window.to": "2024-05-01",
}
TERMINATE = "arn:aws:states:::elasticmapreduce:terminateCluster.sync"


# -- helpers: evaluate a state's Parameters the way Step Functions would ------------------------
def parse_intrinsic(expression: str):
    """Parse with moto's copy of Step Functions' intrinsic-function grammar; syntax errors fail."""
    from antlr4 import CommonTokenStream, InputStream
    from antlr4.error.ErrorListener import ErrorListener
    from moto.stepfunctions.parser.asl.antlr.runtime.ASLIntrinsicLexer import ASLIntrinsicLexer
    from moto.stepfunctions.parser.asl.antlr.runtime.ASLIntrinsicParser import ASLIntrinsicParser
    from moto.stepfunctions.parser.asl.parse.intrinsic.preprocessor import Preprocessor

    errors = []

    class Collect(ErrorListener):
        def syntaxError(self, recognizer, offending_symbol, line, column, message, exception):  # noqa: N802
            errors.append(f"{line}:{column} {message}")

    lexer = ASLIntrinsicLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(Collect())
    parser = ASLIntrinsicParser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(Collect())
    tree = parser.func_decl()
    assert not errors, f"{expression}: {errors}"
    return Preprocessor().visit(tree)


def argument_values(function):
    values = []
    for argument in function.argument_list.arguments:
        kind = type(argument).__name__
        if kind == "ArgumentLiteral":
            values.append(re.sub(r"\\(.)", r"\1", argument.definition_value))
        elif kind == "ArgumentContextPath":
            values.append(SAMPLES["$" + argument.json_path])
        elif kind == "ArgumentJsonPath":
            values.append(SAMPLES[argument.json_path])
        else:
            raise AssertionError(f"unexpected argument {kind}")
    return values


def evaluate(expression: str):
    if expression in SAMPLES:
        return SAMPLES[expression]
    function = parse_intrinsic(expression)
    kind, values = type(function).__name__, argument_values(function)
    if kind == "Array":
        return values
    if kind == "StringFormat":
        template, *rest = values
        return template.replace("{}", "%s") % tuple(rest)
    if kind == "UUID":
        return str(uuid.uuid4())
    raise AssertionError(f"unexpected intrinsic {kind}")


def resolve(parameters):
    """Parameters with every `key.$` replaced by `key` and its run-time value."""
    if isinstance(parameters, dict):
        resolved = {}
        for key, value in parameters.items():
            if key.endswith(".$"):
                resolved[key[:-2]] = evaluate(value)
            else:
                resolved[key] = resolve(value)
        return resolved
    if isinstance(parameters, list):
        return [resolve(v) for v in parameters]
    return parameters


def camel(value):
    """Step Functions' EMR Serverless parameters back to the API's member names."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: v if k == "Tags" else camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value


def transitions(state):
    targets = [state[k] for k in ("Next", "Default") if k in state]
    targets += [c["Next"] for c in state.get("Catch", [])]
    targets += [c["Next"] for c in state.get("Choices", [])]
    return targets


# -- EMR on EC2 ---------------------------------------------------------------------------------
def test_emr_steps_are_valid_add_job_flow_steps_requests(config, valid_request):
    steps = render.emr_steps(config, CONF_URI)
    valid_request("emr", "AddJobFlowSteps", {"JobFlowId": CLUSTER_ID, "Steps": steps})
    assert [s["Name"] for s in steps] == ["idstore sync", "idstore filter"]
    for step, job in zip(steps, ("sync", "filter")):
        args = step["HadoopJarStep"]["Args"]
        assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
        assert step["ActionOnFailure"] == "CANCEL_AND_WAIT"  # a failed sync cancels the filter
        assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
        entry = args.index(f"{RELEASE}/{layout.JOBS[job]}")
        assert args[entry + 1:] == ["--config", CONF_URI]
        assert sum(len(a) for a in args) < 10240  # EMR's limit for a step's strings


def test_run_job_flow_installs_idstore_for_the_configured_python_and_runs_both_jobs(config, valid_request):
    request = render.run_job_flow_request(config, CONF_URI)
    valid_request("emr", "RunJobFlow", request)
    assert re.fullmatch(r"emr-7\.\d+\.\d+", request["ReleaseLabel"])
    bootstrap = request["BootstrapActions"][0]["ScriptBootstrapAction"]
    assert bootstrap == {"Path": f"{RELEASE}/bootstrap/install-idstore.sh", "Args": [RELEASE, "/usr/bin/python3.11"]}
    classifications = {c["Classification"]: c for c in request["Configurations"]}
    assert classifications["spark-env"]["Configurations"] == [
        {"Classification": "export", "Properties": {"PYSPARK_PYTHON": "/usr/bin/python3.11"}}
    ]
    assert classifications["spark-defaults"]["Properties"]["spark.pyspark.python"] == "/usr/bin/python3.11"
    assert request["Instances"]["KeepJobFlowAliveWhenNoSteps"] is False  # ends after its steps
    assert [s["ActionOnFailure"] for s in request["Steps"]] == ["TERMINATE_CLUSTER"] * 2
    assert request["AutoTerminationPolicy"] == {"IdleTimeout": 3600}
    assert request["LogUri"] == "s3://example-idstore-logs/emr"
    assert (request["ServiceRole"], request["JobFlowRole"]) == ("idstore-emr-service", "idstore-emr-ec2")


def test_emr_python3_is_the_default_interpreter(make_config):
    request = render.run_job_flow_request(make_config(["emr.python=python3"]), CONF_URI)
    assert request["BootstrapActions"][0]["ScriptBootstrapAction"]["Args"][1] == "/usr/bin/python3"


# -- the EMR state machine -------------------------------------------------------------------
@pytest.fixture
def machine(config):
    return render.state_machine(config, CONF_URI)


def test_every_transition_of_the_state_machine_exists_and_every_state_is_reachable(machine):
    states = machine["States"]
    assert machine["StartAt"] in states
    for name, state in states.items():
        for target in transitions(state):
            assert target in states, f"{name} -> {target}: no such state"
    reached, todo = set(), [machine["StartAt"]]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo += transitions(states[name])
    assert reached == set(states), f"unreachable: {set(states) - reached}"
    for name, state in states.items():
        ends = state["Type"] in ("Succeed", "Fail")
        assert ends or "Next" in state, f"{name} neither ends nor moves on"


def test_the_success_path_creates_syncs_filters_then_terminates(machine):
    states, path, name = machine["States"], [], machine["StartAt"]
    while states[name]["Type"] != "Succeed":
        path.append(name)
        name = states[name]["Next"]
    assert path == ["Window", "CreateCluster", "Sync", "Filter", "Terminate"]
    resources = [states[n].get("Resource") for n in path[1:]]
    assert resources == [
        "arn:aws:states:::elasticmapreduce:createCluster.sync",
        "arn:aws:states:::elasticmapreduce:addStep.sync",
        "arn:aws:states:::elasticmapreduce:addStep.sync",
        TERMINATE,
    ]
    assert states["CreateCluster"]["Parameters"]["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    assert "Steps" not in states["CreateCluster"]["Parameters"]


def test_every_failure_once_the_cluster_exists_terminates_it_then_fails(machine):
    states = machine["States"]
    for name, state in states.items():
        if state["Type"] != "Task":
            continue
        assert state.get("Catch"), f"{name} has no Catch"
        for catch in state["Catch"]:
            assert catch["ErrorEquals"] == ["States.ALL"]
            handler = states[catch["Next"]]
            if name == "CreateCluster":
                # createCluster.sync fails when RunJobFlow is refused or the cluster ended on its
                # own: there is no cluster to terminate (AutoTerminationPolicy is the backstop)
                assert handler["Type"] == "Fail"
            elif state["Resource"] == TERMINATE:
                assert handler["Type"] == "Fail"
            else:
                assert handler["Type"] == "Task" and handler["Resource"] == TERMINATE, f"{name} -> {catch['Next']}"
                assert states[handler["Next"]]["Type"] == "Fail"
                assert all(states[c["Next"]]["Type"] == "Fail" for c in handler["Catch"])
                assert handler["Parameters"] == {"ClusterId.$": "$.cluster.ClusterId"}


def test_state_machine_task_parameters_are_valid_emr_requests(machine, valid_request):
    states = machine["States"]
    create = resolve(states["CreateCluster"]["Parameters"])
    valid_request("emr", "RunJobFlow", create)
    assert create["Name"] == "idstore-run-20240502"
    for name in ("Sync", "Filter"):
        parameters = resolve(states[name]["Parameters"])
        valid_request("emr", "AddJobFlowSteps", {"JobFlowId": parameters["ClusterId"], "Steps": [parameters["Step"]]})
        assert parameters["ClusterId"] == CLUSTER_ID
    for name in ("Terminate", "TerminateAfterFailure"):
        parameters = resolve(states[name]["Parameters"])
        valid_request("emr", "TerminateJobFlows", {"JobFlowIds": [parameters["ClusterId"]]})


def test_steps_in_the_state_machine_run_the_same_command_with_run_id_and_window(config, machine):
    states = machine["States"]
    sync = resolve(states["Sync"]["Parameters"])["Step"]["HadoopJarStep"]["Args"]
    filter_ = resolve(states["Filter"]["Parameters"])["Step"]["HadoopJarStep"]["Args"]
    assert sync == [*render.spark_submit_args(config, "sync", CONF_URI), "--run-id", "run-20240502"]
    assert filter_ == [*render.spark_submit_args(config, "filter", CONF_URI), "--run-id", "run-20240502",
                       "--from", "2024-04-30", "--to", "2024-05-01"]


def test_without_a_filter_window_the_filter_reads_every_day(make_config):
    machine = render.state_machine(make_config(["schedule.filter_days=0"]), CONF_URI)
    assert machine["StartAt"] == "CreateCluster" and "Window" not in machine["States"]
    args = resolve(machine["States"]["Filter"]["Parameters"])["Step"]["HadoopJarStep"]["Args"]
    assert "--from" not in args and "--to" not in args


def test_window_is_the_days_before_the_run_unless_the_input_brings_one(machine):
    jsonata = pytest.importorskip("jsonata", reason="jsonata-python evaluates the Window state's JSONata")
    output = machine["States"]["Window"]["Output"]
    assert output.startswith("{%") and output.endswith("%}")
    expression = jsonata.Jsonata(output[2:-2])

    def run(start_time, run_input):
        expression.assign("states", {"input": run_input, "context": {"Execution": {"StartTime": start_time}}})
        return expression.evaluate(None)

    # filter_days = 2: the two whole UTC days before the run, across a month end
    assert run("2024-03-01T00:00:05.123Z", {}) == {"window": {"from": "2024-02-28", "to": "2024-02-29"}}
    given = {"window": {"from": "2024-01-01", "to": "2024-01-07"}, "other": 1}
    assert run("2024-03-01T00:00:05.123Z", given) == given


def test_intrinsic_literals_survive_quotes_and_braces():
    tricky = ["it's", "{json}", "back\\slash", "s3://b/k=v/x y"]
    assert evaluate(render.states_array(tricky)) == tricky


# -- EMR Serverless ---------------------------------------------------------------------------
def test_serverless_start_job_run_requests_are_valid(config, valid_request):
    for job in ("sync", "filter"):
        request = render.start_job_run_request(config, job, CONF_URI)
        # boto3 fills clientToken per call (an idempotency token): a fixed one in a file would
        # make every later submission return the first run
        assert "clientToken" not in request
        valid_request("emr-serverless", "StartJobRun", {**request, "clientToken": str(uuid.uuid4())})
        submit = request["jobDriver"]["sparkSubmit"]
        assert submit["entryPoint"] == f"{RELEASE}/{layout.JOBS[job]}"
        assert submit["entryPointArguments"] == ["--config", CONF_URI]
        assert f"spark.archives={RELEASE}/serverless/deps-cp39-x86_64.tar.gz#deps" in submit["sparkSubmitParameters"]
        assert request["executionRoleArn"] == "arn:aws:iam::123456789012:role/idstore-serverless-job"


def test_serverless_state_machine_runs_sync_then_filter_and_fails_on_any_error(config, valid_request):
    machine = render.serverless_state_machine(config, CONF_URI)
    states = machine["States"]
    path, name = [], machine["StartAt"]
    while states[name]["Type"] != "Succeed":
        path.append(name)
        name = states[name]["Next"]
    assert path == ["Window", "Sync", "Filter"]
    for job in ("Sync", "Filter"):
        state = states[job]
        assert state["Resource"] == "arn:aws:states:::emr-serverless:startJobRun.sync"
        assert [states[c["Next"]]["Type"] for c in state["Catch"]] == ["Fail"]
        request = camel(resolve(state["Parameters"]))
        valid_request("emr-serverless", "StartJobRun", request)
        arguments = request["jobDriver"]["sparkSubmit"]["entryPointArguments"]
        assert arguments[:4] == ["--config", CONF_URI, "--run-id", "run-20240502"]
    assert camel(resolve(states["Filter"]["Parameters"]))["jobDriver"]["sparkSubmit"]["entryPointArguments"][4:] == [
        "--from", "2024-04-30", "--to", "2024-05-01"]


# -- the schedule -----------------------------------------------------------------------------
def test_schedule_is_a_valid_create_schedule_request_starting_the_state_machine(config, valid_request):
    request = render.schedule_request(config)
    valid_request("scheduler", "CreateSchedule", request)
    assert request["ScheduleExpression"] == "cron(0 0 * * ? *)"  # every day at 12 AM
    assert request["State"] == "ENABLED"
    assert request["Target"]["Arn"] == "arn:aws:states:us-east-1:123456789012:stateMachine:idstore"
    assert request["Target"]["RoleArn"] == "arn:aws:iam::123456789012:role/idstore-scheduler"


def test_schedule_can_target_the_serverless_machine_and_stay_disabled(make_config):
    request = render.schedule_request(make_config(["schedule.target=serverless", "schedule.enabled=false"]))
    assert request["Target"]["Arn"].endswith(":stateMachine:idstore-serverless")
    assert request["State"] == "DISABLED"


# -- the CLI, files and secrets ---------------------------------------------------------------
def test_render_writes_every_file_and_no_secret(prod_conf, tmp_path, monkeypatch, capsys):
    password = "pw-" + uuid.uuid4().hex
    monkeypatch.setenv("IDSTORE_SOURCE_PASSWORD", password)
    conf = prod_conf.read_text().replace('secret_id = "idstore/redshift-etl"',
                                         'password_env = "IDSTORE_SOURCE_PASSWORD"\nuser = "etl"')
    prod_conf.write_text(conf)
    out = tmp_path / "rendered"
    assert cli.main(["render", "--conf", str(prod_conf), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([
        "cloudformation.json", "emr-steps.json", "iam-policy.json", "run-job-flow.json", "schedule.json",
        "serverless-start-job-run-filter.json", "serverless-start-job-run-sync.json",
        "state-machine-serverless.json", "state-machine.json",
    ])
    for path in out.iterdir():
        text = path.read_text()
        json.loads(text)
        assert password not in text
        assert "password" not in text.lower().replace("password_env", "")
    printed = capsys.readouterr()
    assert password not in printed.out + printed.err


def test_every_rendered_filter_run_carries_a_window_and_the_config_flag_once(prod_conf, tmp_path):
    out = tmp_path / "rendered"
    assert cli.main(["render", "--config", str(prod_conf), "--out", str(out), "--from", "2024-05-01",
                     "--to", "2024-05-07"]) == 0
    steps = json.loads((out / "emr-steps.json").read_text())
    cluster_steps = json.loads((out / "run-job-flow.json").read_text())["Steps"]
    serverless = json.loads((out / "serverless-start-job-run-filter.json").read_text())
    window = ["--from", "2024-05-01", "--to", "2024-05-07"]
    for filter_args in (steps[1]["HadoopJarStep"]["Args"], cluster_steps[1]["HadoopJarStep"]["Args"],
                        serverless["jobDriver"]["sparkSubmit"]["entryPointArguments"]):
        assert filter_args[-4:] == window
    for step in steps + cluster_steps:
        args = step["HadoopJarStep"]["Args"]
        job_at = next(i for i, a in enumerate(args) if a.endswith(".py"))
        # spark-submit's --conf settings before the job, the job's --config after it: never --conf twice
        assert "--config" not in args[:job_at] and args[job_at + 1:].count("--config") == 1
        assert "--conf" not in args[job_at + 1:]
    assert "--from" not in steps[0]["HadoopJarStep"]["Args"]  # the sync has no window


def test_render_without_serverless_application_writes_no_serverless_files(make_config, tmp_path):
    config = make_config(["serverless.application_id="])
    files = bundle.render_all(config, CONF_URI)
    assert not [name for name in files if "serverless" in name]
    resources = files["cloudformation.json"]["Resources"]
    assert "ServerlessStateMachine" not in resources and "ServerlessJobRole" not in resources


def test_render_refuses_local_paths_and_a_missing_account(prod_conf, tmp_path, capsys):
    def render(*sets):
        return cli.main(["render", "--config", str(prod_conf), *[a for s in sets for a in ("--set", s)],
                         "--out", str(tmp_path / "o")])

    assert render("events.path=.idstore/data/events") == 2
    assert "events.path: expected an s3:// location" in capsys.readouterr().err
    assert render("deploy.account_id=") == 2
    assert "deploy.account_id" in capsys.readouterr().err


@pytest.mark.parametrize("setting, named", [
    ("events.schema=id STRING, detail STRUCT<productId STRING", "events.schema: not a valid Spark DDL schema"),
    ("events.id_field=detail.sku", "events.id_field: 'detail.sku' is not a field of events.schema"),
    ("dynamodb.table=", "dynamodb.table: empty"),
    ("snapshot.path=", "snapshot.path: empty"),
    ("schedule.cron=cron(0 3 * * * *)", "schedule.cron: 'cron(0 3 * * * *)': exactly one of day-of-month"),
    ("schedule.cron=every night", "schedule.cron: 'every night' is not an EventBridge Scheduler expression"),
    ("schedule.timezone=Mars/Olympus", "schedule.timezone: 'Mars/Olympus' is not an IANA time zone"),
])
@pytest.mark.parametrize("command", ["render", "deploy", "submit"])
def test_a_config_the_jobs_or_the_schedule_would_fail_on_is_refused_before_anything_is_rendered_or_sent(
        prod_conf, tmp_path, capsys, command, setting, named):
    extra = {"render": ["--out", str(tmp_path / "o")], "deploy": ["--dist", str(tmp_path / "none")],
             "submit": ["--cluster-id", "j-NONE"]}[command]
    assert cli.main([command, "--config", str(prod_conf), "--set", setting, *extra]) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# -- CloudFormation -----------------------------------------------------------------------------
def cfn_lint(template, tmp_path: Path, name: str) -> subprocess.CompletedProcess:
    path = tmp_path / name
    path.write_text(json.dumps(template, indent=2))
    return subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), str(path)], capture_output=True,
                          text=True, timeout=300)


def test_cloudformation_template_is_cfn_lint_clean_and_complete(config, tmp_path):
    template = bundle.render_all(config, CONF_URI)["cloudformation.json"]
    result = cfn_lint(template, tmp_path, "full.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""
    resources = template["Resources"]
    types = sorted(r["Type"] for r in resources.values())
    assert types.count("AWS::StepFunctions::StateMachine") == 2
    assert types.count("AWS::IAM::Role") == 5  # EMR service, EMR nodes, Serverless jobs, states, scheduler
    assert "AWS::Scheduler::Schedule" in types and "AWS::CloudWatch::Dashboard" in types
    assert resources["StateMachine"]["Properties"]["Definition"] == render.state_machine(config, CONF_URI)
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    failed = [a for a in alarms if a.get("MetricName") == "ExecutionsFailed"]
    assert len(failed) == 2 and all(a["AlarmActions"] == ["arn:aws:sns:us-east-1:123456789012:idstore-alarms"]
                                    for a in alarms)
    assert resources["Schedule"]["Properties"]["Target"]["Arn"] == {"Ref": "StateMachine"}
    # a refusal and a late input are their own alarms, never the failed-run one
    by_metric = {}
    for name in ("JobFailedAlarm", "JobRefusedAlarm", "InputNotReadyAlarm"):
        metrics = resources[name]["Properties"]["Metrics"]
        by_metric[name] = {m["MetricStat"]["Metric"]["MetricName"] for m in metrics if "MetricStat" in m}
    assert by_metric == {"JobFailedAlarm": {"RunsFailed"}, "JobRefusedAlarm": {"RunsRefused"},
                         "InputNotReadyAlarm": {"RunsInputNotReady"}}


def test_minimal_template_with_own_roles_is_cfn_lint_clean(make_config, tmp_path):
    config = make_config([
        "serverless.application_id=", "cloudwatch.enabled=false", "emr.service_role=EMR_DefaultRole_V2",
        "emr.job_flow_role=EMR_EC2_DefaultRole", "deploy.kms_key_arn=", "emr.subnet_id=",
    ])
    template = bundle.render_all(config, CONF_URI)["cloudformation.json"]
    result = cfn_lint(template, tmp_path, "minimal.json")
    assert result.returncode == 0, result.stdout + result.stderr
    types = sorted(r["Type"] for r in template["Resources"].values())
    assert types == sorted(["AWS::IAM::Role", "AWS::IAM::Role", "AWS::StepFunctions::StateMachine",
                            "AWS::Scheduler::Schedule"])
    create = template["Resources"]["StateMachine"]["Properties"]["Definition"]["States"]["CreateCluster"]
    assert (create["Parameters"]["ServiceRole"], create["Parameters"]["JobFlowRole"]) == (
        "EMR_DefaultRole_V2", "EMR_EC2_DefaultRole")


def test_the_production_example_renders(tmp_path):
    example = Path(__file__).resolve().parents[2] / "conf" / "prod.example.toml"
    assert cli.main(["render", "--conf", str(example), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "state-machine.json").is_file()
