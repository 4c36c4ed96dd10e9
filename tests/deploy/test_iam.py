"""The IAM policies name only what the config names; a wildcard only where AWS leaves no choice."""
import pytest

from idstore_tools.deploy import bundle, iam
from idstore_tools.deploy.naming import Names

ACCOUNT = "123456789012"
CONF_URI = "s3://example-idstore-artifacts/idstore/releases/0.1.0/conf/prod.toml"


def statements_of(document):
    return document["Statement"]


def as_list(value):
    return value if isinstance(value, list) else [value]


def allowed_job_resources(config):
    """Written from the config by hand: the ARNs the jobs may touch, and nothing else."""
    s3 = {
        "example-idstore-artifacts": ["idstore/releases/0.1.0"],
        "example-failure-events": ["events"],
        "example-idstore": ["snapshots", "filtered", "quarantine", "reports"],
        "example-idstore-logs": ["emr"],
    }
    resources = {f"arn:aws:s3:::{bucket}" for bucket in s3}
    for bucket, prefixes in s3.items():
        for prefix in prefixes:
            resources |= {f"arn:aws:s3:::{bucket}/{prefix}/*", f"arn:aws:s3:::{bucket}/{prefix}_$folder$"}
    return resources | {
        f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/IdentifierStore",
        f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:idstore/redshift-etl-??????",
        config.deploy.kms_key_arn,
        "*",  # only for cloudwatch:PutMetricData under a namespace condition, checked below
    }


def test_job_policy_names_only_the_configured_table_prefixes_secret_and_key(config):
    policy = iam.job_policy(config)
    allowed = allowed_job_resources(config)
    for statement in statements_of(policy):
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            assert "*" not in action, action
        for resource in as_list(statement["Resource"]):
            assert resource in allowed, resource
            if resource == "*":
                assert statement["Action"] == ["cloudwatch:PutMetricData"]
                assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": "idstore"}}


def test_job_policy_grants_what_the_jobs_do(config):
    granted = {}
    for statement in statements_of(iam.job_policy(config)):
        for resource in as_list(statement["Resource"]):
            granted.setdefault(resource, set()).update(as_list(statement["Action"]))
    table = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/IdentifierStore"
    assert granted[table] == {"dynamodb:DescribeTable", "dynamodb:BatchWriteItem", "dynamodb:Scan"}
    assert granted["arn:aws:s3:::example-failure-events/events/*"] == {"s3:GetObject"}  # read only
    assert "s3:PutObject" in granted["arn:aws:s3:::example-idstore/filtered/*"]
    assert granted["arn:aws:s3:::example-idstore-artifacts/idstore/releases/0.1.0/*"] == {"s3:GetObject"}
    assert granted[f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:idstore/redshift-etl-??????"] == {
        "secretsmanager:GetSecretValue"}
    assert granted[config.deploy.kms_key_arn] == {"kms:Decrypt", "kms:GenerateDataKey"}


def test_listing_is_held_to_the_configured_prefixes(config):
    listing = [s for s in statements_of(iam.job_policy(config)) if s["Action"] == ["s3:ListBucket"]]
    by_bucket = {s["Resource"]: s["Condition"]["StringLike"]["s3:prefix"] for s in listing}
    assert by_bucket["arn:aws:s3:::example-idstore"] == sorted(
        ["snapshots", "snapshots/*", "filtered", "filtered/*", "quarantine", "quarantine/*", "reports", "reports/*"])
    assert by_bucket["arn:aws:s3:::example-failure-events"] == ["events", "events/*"]


def test_what_the_config_leaves_out_is_not_granted(make_config):
    config = make_config(["cloudwatch.enabled=false", "deploy.kms_key_arn=", "source.secret_id=",
                          "source.password_env=IDSTORE_SOURCE_PASSWORD", "emr.log_uri="])
    policy = iam.job_policy(config)
    actions = {a for s in statements_of(policy) for a in as_list(s["Action"])}
    assert not actions & {"cloudwatch:PutMetricData", "kms:Decrypt", "secretsmanager:GetSecretValue"}
    assert "*" not in {r for s in statements_of(policy) for r in as_list(s["Resource"])}


def test_output_key_is_granted_by_id_and_an_alias_only_through_its_condition(make_config):
    config = make_config(["output.sse_kms_key_id=1111aaaa-22bb-33cc-44dd-555555eeeeee"])
    [keys] = [s for s in statements_of(iam.job_policy(config)) if s["Sid"] == "Keys"]
    assert keys["Resource"] == sorted([config.deploy.kms_key_arn,
                                       f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1111aaaa-22bb-33cc-44dd-555555eeeeee"])
    config = make_config(["output.sse_kms_key_id=alias/idstore-output", "deploy.kms_key_arn="])
    [by_alias] = [s for s in statements_of(iam.job_policy(config)) if s["Sid"] == "KeysByAlias"]
    assert by_alias["Resource"] == f"arn:aws:kms:us-east-1:{ACCOUNT}:key/*"
    assert by_alias["Condition"] == {"ForAnyValue:StringEquals": {"kms:ResourceAliases": ["alias/idstore-output"]}}


def test_redshift_iam_authentication_gets_credentials_for_its_user_only(make_config):
    config = make_config([
        "source.url=jdbc:redshift:iam://analytics.abc123.us-east-1.redshift.amazonaws.com:5439/dev",
        "source.user=etl", "source.secret_id=",
    ])
    [statement] = [s for s in statements_of(iam.job_policy(config)) if s["Sid"] == "RedshiftCredentials"]
    assert statement["Resource"] == [f"arn:aws:redshift:us-east-1:{ACCOUNT}:dbuser:analytics/etl",
                                     f"arn:aws:redshift:us-east-1:{ACCOUNT}:dbname:analytics/dev"]


@pytest.mark.parametrize("machine", ["StatesRole", "SchedulerRole"])
def test_orchestration_roles_use_wildcards_only_for_clusters_and_runs_made_per_run(config, machine):
    template = bundle.render_all(config, CONF_URI)["cloudformation.json"]
    names = Names.of(config)
    for policy in template["Resources"][machine]["Properties"]["Policies"]:
        for statement in statements_of(policy["PolicyDocument"]):
            for action in as_list(statement["Action"]):
                assert "*" not in action
            for resource in as_list(statement["Resource"]):
                if resource == "*":
                    assert statement["Action"] == ["elasticmapreduce:RunJobFlow"]
                elif "*" in resource:
                    assert resource in (f"arn:aws:elasticmapreduce:us-east-1:{ACCOUNT}:cluster/*",
                                        f"arn:aws:emr-serverless:us-east-1:{ACCOUNT}:/applications/"
                                        f"{config.serverless.application_id}/jobruns/*"), resource
    if machine == "SchedulerRole":
        [policy] = template["Resources"][machine]["Properties"]["Policies"]
        assert statements_of(policy["PolicyDocument"])[0]["Resource"] == names.state_machine_arn("idstore")


def test_a_first_load_by_import_is_granted_what_the_import_needs_and_no_more(make_config):
    """AWS's guide to the import lists its caller's permissions: ImportTable and DescribeImport, the
    source objects (GetObject, ListBucket) and the /aws-dynamodb/ log group; written out by hand here."""
    without = {a for s in statements_of(iam.job_policy(make_config())) for a in as_list(s["Action"])}
    assert not {a for a in without if "Import" in a or a.startswith("logs:")}

    config = make_config(["dynamodb.create=import", "dynamodb.import_path=s3://example-staging/imports",
                          "dynamodb.ttl_attribute=expires_at", "dynamodb.ttl_days=30",
                          "dynamodb.create_kms_key_id=1111aaaa-22bb-33cc-44dd-555555eeeeee"])
    granted = {}
    for statement in statements_of(iam.job_policy(config)):
        for resource in as_list(statement["Resource"]):
            granted.setdefault(resource, set()).update(as_list(statement["Action"]))
    table = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/IdentifierStore"
    assert granted[table] == {"dynamodb:DescribeTable", "dynamodb:BatchWriteItem", "dynamodb:Scan",
                              "dynamodb:ImportTable", "dynamodb:DescribeImport",
                              "dynamodb:DescribeTimeToLive", "dynamodb:UpdateTimeToLive"}
    assert granted[f"{table}/import/*"] == {"dynamodb:ImportTable", "dynamodb:DescribeImport"}
    assert granted[f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws-dynamodb/*"] == {
        "logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogGroups", "logs:DescribeLogStreams",
        "logs:PutLogEvents", "logs:PutRetentionPolicy"}
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"} <= granted["arn:aws:s3:::example-staging/imports/*"]
    assert granted["arn:aws:s3:::example-staging"] == {"s3:ListBucket"}
    assert granted[f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1111aaaa-22bb-33cc-44dd-555555eeeeee"] == {
        "kms:DescribeKey", "kms:CreateGrant"}
    # settings the config does not turn on are not granted
    assert not {"dynamodb:UpdateContinuousBackups", "dynamodb:UpdateTable"} & set().union(*granted.values())
