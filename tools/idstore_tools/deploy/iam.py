"""Least-privilege IAM policies from config: only the table, S3 prefixes, secret and key it names.

Wildcards appear only where AWS leaves no choice, each said where it is made: objects under a
configured prefix, the random suffix of a secret's ARN, EMR clusters and Serverless job runs
whose ids do not exist yet, and CloudWatch PutMetricData (no resource type; held to one
namespace by a condition).
"""
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlparse

from idstore import io
from idstore.config import ConfigError
from idstore_tools.deploy import layout
from idstore_tools.deploy.config import ToolingConfig
from idstore_tools.deploy.naming import Names, arn, partition

READ = ("s3:GetObject",)
WRITE = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")
DYNAMODB_ACTIONS = ("dynamodb:DescribeTable", "dynamodb:BatchWriteItem", "dynamodb:Scan")
KMS_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")
# DynamoDB's import from S3 (dynamodb.create = import): the call, its status, and the log group it
# writes its errors to (the caller's permissions, as AWS's guide for the import lists them)
IMPORT_ACTIONS = ("dynamodb:ImportTable", "dynamodb:DescribeImport")
IMPORT_LOG_ACTIONS = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogGroups",
                      "logs:DescribeLogStreams", "logs:PutLogEvents", "logs:PutRetentionPolicy")
# a customer managed key for the new table: DynamoDB checks it and takes a grant on it as the caller
TABLE_KEY_ACTIONS = ("kms:DescribeKey", "kms:CreateGrant")
# .sync integrations watch their job through an EventBridge rule Step Functions manages
SYNC_RULE_ACTIONS = ("events:PutTargets", "events:PutRule", "events:DescribeRule")


def policy(statements: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statements}


def trust_policy(service: str) -> Dict[str, Any]:
    return policy([{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}])


def s3_locations(config: ToolingConfig, version: Optional[str] = None) -> List[Tuple[str, str, Tuple[str, ...]]]:
    """(config key, s3 uri, actions) of every S3 location the jobs touch on AWS."""
    log_only = ("s3:PutObject",)  # EMR writes its logs and never reads them back
    wanted = [("deploy.bucket", layout.release_uri(config, version), READ)] + [
        (key, uri, READ if read_only else log_only if key == "emr.log_uri" else WRITE)
        for key, uri, read_only in layout.data_locations(config)
    ]
    found = []
    for key, uri, actions in wanted:
        if not uri:
            continue
        if not io.is_s3(uri):
            raise ConfigError(f"{key}: expected an s3:// location for the jobs on AWS, got {uri!r}")
        found.append((key, uri, actions))
    return found


def job_policy(config: ToolingConfig, version: Optional[str] = None) -> Dict[str, Any]:
    """What the jobs need at run time: the EMR nodes' instance profile, the Serverless job role."""
    return policy(job_statements(config, version))


def job_statements(config: ToolingConfig, version: Optional[str] = None) -> List[Dict[str, Any]]:
    region, account = config.run.aws.region, _account(config)
    statements: List[Dict[str, Any]] = []
    by_actions: Dict[Tuple[str, ...], List[str]] = {}
    prefixes: Dict[str, List[str]] = {}
    for _key, uri, actions in s3_locations(config, version):
        bucket, key = io.split_s3(uri)
        key = key.strip("/")
        objects = by_actions.setdefault(actions, [])
        # objects under the prefix: their keys are not known in advance
        objects.append(_s3_arn(region, f"{bucket}/{key}/*" if key else f"{bucket}/*"))
        if key and actions != READ and actions != ("s3:PutObject",):
            objects.append(_s3_arn(region, f"{bucket}/{key}_$folder$"))  # EMRFS folder markers
        prefixes.setdefault(bucket, []).extend([key, f"{key}/*"] if key else ["*"])
    for index, (actions, resources) in enumerate(sorted(by_actions.items())):
        statements.append({"Sid": f"S3Objects{index}", "Effect": "Allow", "Action": list(actions),
                           "Resource": sorted(set(resources))})
    for index, (bucket, keys) in enumerate(sorted(prefixes.items())):
        statement: Dict[str, Any] = {"Sid": f"S3List{index}", "Effect": "Allow", "Action": ["s3:ListBucket"],
                                     "Resource": _s3_arn(region, bucket)}
        if "*" not in keys:
            statement["Condition"] = {"StringLike": {"s3:prefix": sorted(set(keys))}}
        statements.append(statement)
    statements.append({
        "Sid": "IdTable", "Effect": "Allow", "Action": list(DYNAMODB_ACTIONS),
        "Resource": arn("dynamodb", config.run.dynamodb.region, account, f"table/{config.run.dynamodb.table}"),
    })
    statements += _import_statements(config)
    if config.run.source.secret_id:
        statements.append({"Sid": "SourceSecret", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
                           "Resource": secret_arn(config)})
    statements += _redshift_iam_statements(config)
    statements += _kms_statements(config)
    if config.run.cloudwatch.enabled:
        statements.append({
            "Sid": "RunMetrics", "Effect": "Allow", "Action": ["cloudwatch:PutMetricData"],
            "Resource": "*",  # PutMetricData has no resource type; the condition holds it to one namespace
            "Condition": {"StringEquals": {"cloudwatch:namespace": config.run.cloudwatch.namespace}},
        })
    return statements


def _import_statements(config: ToolingConfig) -> List[Dict[str, Any]]:
    """A first load by import: ImportTable and DescribeImport on the table and its imports, the
    settings applied after it (only those the config turns on), and the import's log group."""
    cfg = config.run.dynamodb
    if not cfg.imports:
        return []
    region, account = config.run.aws.region, _account(config)
    table = arn("dynamodb", region, account, f"table/{cfg.table}")
    settings = [*(("dynamodb:DescribeTimeToLive", "dynamodb:UpdateTimeToLive") if cfg.ttl_attribute else ()),
                *(("dynamodb:UpdateContinuousBackups",) if cfg.create_point_in_time_recovery else ()),
                *(("dynamodb:UpdateTable",) if cfg.create_deletion_protection else ())]
    statements: List[Dict[str, Any]] = [
        # an import's id is made by DynamoDB: its ARN is table/<name>/import/<id>
        {"Sid": "ImportTable", "Effect": "Allow", "Action": list(IMPORT_ACTIONS),
         "Resource": [table, f"{table}/import/*"]},
        {"Sid": "ImportLogs", "Effect": "Allow", "Action": list(IMPORT_LOG_ACTIONS),
         "Resource": arn("logs", region, account, "log-group:/aws-dynamodb/*")},  # DynamoDB names its streams
    ]
    if settings:
        statements.append({"Sid": "ImportedTableSettings", "Effect": "Allow", "Action": settings, "Resource": table})
    return statements + _key_statements(config, "ImportedTableKey", TABLE_KEY_ACTIONS, (cfg.create_kms_key_id,))


def _kms_statements(config: ToolingConfig) -> List[Dict[str, Any]]:
    """The keys of the secret, the artifacts and the output (deploy.kms_key_arn, output.sse_kms_key_id)."""
    return _key_statements(config, "Keys", KMS_ACTIONS, (config.deploy.kms_key_arn, config.run.output.sse_kms_key_id))


def _key_statements(config: ToolingConfig, sid: str, actions: Tuple[str, ...],
                    named: Tuple[str, ...]) -> List[Dict[str, Any]]:
    """`actions` on the KMS keys `named` (ids, ARNs or aliases; empty ones skipped)."""
    region, account = config.run.aws.region, _account(config)
    keys, aliases = [], []
    for key in named:
        if not key:
            continue
        if key.startswith("alias/"):
            aliases.append(key)
        elif key.startswith("arn:") and ":alias/" in key:
            aliases.append("alias/" + key.split(":alias/", 1)[1])
        else:
            keys.append(key if key.startswith("arn:") else arn("kms", region, account, f"key/{key}"))
    statements: List[Dict[str, Any]] = []
    if keys:
        statements.append({"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": sorted(set(keys))})
    if aliases:
        # a key named by alias: any key of the account, held to that alias by the condition
        statements.append({"Sid": f"{sid}ByAlias", "Effect": "Allow", "Action": list(actions),
                           "Resource": arn("kms", region, account, "key/*"),
                           "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": sorted(set(aliases))}}})
    return statements


def secret_arn(config: ToolingConfig) -> str:
    secret = config.run.source.secret_id
    if secret.startswith("arn:"):
        return secret
    # Secrets Manager appends six random characters to the name in the ARN
    return arn("secretsmanager", config.run.aws.region, _account(config), f"secret:{secret}-??????")


def _redshift_iam_statements(config: ToolingConfig) -> List[Dict[str, Any]]:
    url = config.run.source.url
    prefix = "jdbc:redshift:iam:"
    if not url.startswith(prefix + "//"):
        return []
    parsed = urlparse("https:" + url[len(prefix):])
    host, database = parsed.hostname or "", parsed.path.strip("/").split(";")[0].split("?")[0]
    parts = host.split(".")
    if not host.endswith(".redshift.amazonaws.com") or len(parts) < 4 or not config.run.source.user:
        raise ConfigError(
            "source.url: IAM authentication needs a provisioned cluster host "
            "(cluster.id.region.redshift.amazonaws.com) and source.user to name the database user"
        )
    cluster, region, account = parts[0], parts[2], _account(config)
    return [{
        "Sid": "RedshiftCredentials", "Effect": "Allow", "Action": ["redshift:GetClusterCredentials"],
        "Resource": [arn("redshift", region, account, f"dbuser:{cluster}/{config.run.source.user}"),
                     arn("redshift", region, account, f"dbname:{cluster}/{database}")],
    }]


def emr_states_statements(config: ToolingConfig, names: Names) -> List[Dict[str, Any]]:
    """What the EMR state machine needs: run, watch and end its cluster; pass the two EMR roles."""
    region, account = config.run.aws.region, _account(config)
    return [
        # RunJobFlow has no resource type: the cluster does not exist yet
        {"Sid": "CreateCluster", "Effect": "Allow", "Action": ["elasticmapreduce:RunJobFlow"], "Resource": "*"},
        {
            "Sid": "OwnClusters", "Effect": "Allow",
            "Action": ["elasticmapreduce:DescribeCluster", "elasticmapreduce:TerminateJobFlows",
                       "elasticmapreduce:AddJobFlowSteps", "elasticmapreduce:DescribeStep",
                       "elasticmapreduce:CancelSteps", "elasticmapreduce:AddTags"],
            # cluster ids are made per run
            "Resource": arn("elasticmapreduce", region, account, "cluster/*"),
        },
        {
            "Sid": "PassEmrRoles", "Effect": "Allow", "Action": ["iam:PassRole"],
            "Resource": [names.role_arn(names.emr_service_role), names.role_arn(names.emr_ec2_role)],
        },
        {
            "Sid": "SyncRules", "Effect": "Allow", "Action": list(SYNC_RULE_ACTIONS),
            "Resource": [arn("events", region, account, f"rule/{rule}") for rule in (
                "StepFunctionsGetEventForEMRRunJobFlowRule",
                "StepFunctionsGetEventForEMRAddJobFlowStepsRule",
                "StepFunctionsGetEventForEMRTerminateJobFlowsRule",
            )],
        },
    ]


def serverless_states_statements(config: ToolingConfig, names: Names) -> List[Dict[str, Any]]:
    region, account = config.run.aws.region, _account(config)
    application = arn("emr-serverless", region, account, f"/applications/{config.serverless.application_id}")
    return [
        {"Sid": "StartJobRuns", "Effect": "Allow", "Action": ["emr-serverless:StartJobRun"], "Resource": application},
        {
            "Sid": "OwnJobRuns", "Effect": "Allow",
            "Action": ["emr-serverless:GetJobRun", "emr-serverless:CancelJobRun"],
            "Resource": f"{application}/jobruns/*",  # job run ids are made per run
        },
        {"Sid": "PassJobRole", "Effect": "Allow", "Action": ["iam:PassRole"],
         "Resource": names.serverless_job_role_arn},
        {
            "Sid": "SyncRule", "Effect": "Allow", "Action": list(SYNC_RULE_ACTIONS),
            "Resource": arn("events", region, account, "rule/StepFunctionsGetEventsForEMRServerlessJobRule"),
        },
    ]


def scheduler_statements(state_machine_arn: str) -> List[Dict[str, Any]]:
    return [{"Sid": "StartRun", "Effect": "Allow", "Action": ["states:StartExecution"], "Resource": state_machine_arn}]


def _s3_arn(region: str, resource: str) -> str:
    return f"arn:{partition(region)}:s3:::{resource}"


def _account(config: ToolingConfig) -> str:
    account = config.deploy.account_id
    if not (len(account) == 12 and account.isdigit()):
        raise ConfigError(f"deploy.account_id: expected the 12-digit AWS account id, got {account!r}")
    return account
