"""The deploy tooling's config: [deploy], [emr], [schedule] and [serverless], typed and checked
here, beside the run's Config (idstore.config), both from one set of layered TOML files.

Layers: conf/base.toml (the jobs' keys) and defaults.toml next to this module (the tooling's) ->
the --conf file -> --set section.key=value. The jobs read the same file and ignore these sections.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from idstore.config import (
    BASE_CONF,
    RUN_SECTIONS,
    Choice,
    Config,
    build_config,
    build_section,
    load_layers,
)

# shipped with idstore_tools (tools/setup.py package_data), never to the cluster
TOOLING_DEFAULTS = Path(__file__).resolve().parent / "defaults.toml"


class BillingMode(Choice):
    ANY = ""
    PAY_PER_REQUEST = "PAY_PER_REQUEST"
    PROVISIONED = "PROVISIONED"


class EmrPython(Choice):
    PYTHON3 = "python3"
    PYTHON39 = "python3.9"
    PYTHON311 = "python3.11"


class ActionOnFailure(Choice):
    CONTINUE = "CONTINUE"
    CANCEL_AND_WAIT = "CANCEL_AND_WAIT"
    TERMINATE_CLUSTER = "TERMINATE_CLUSTER"


class ScheduleTarget(Choice):
    EMR = "emr"
    SERVERLESS = "serverless"


class Architecture(Choice):
    X86_64 = "X86_64"
    ARM64 = "ARM64"


@dataclass(frozen=True)
class DeployConfig:
    bucket: str  # artifacts bucket: dist/ goes to s3://bucket/prefix/<version>/
    prefix: str
    version: str  # deployed version the rendered files run; empty = this package's version
    name: str  # name of the cluster, state machines, schedule, roles and stack
    account_id: str  # for the ARNs of the IAM policy and the schedule target
    kms_key_arn: str  # key of the secret and the S3 data (SSE-KMS); empty = AWS-managed keys
    table_billing_mode: BillingMode  # what `idstore validate` expects; empty = either


@dataclass(frozen=True)
class EmrConfig:
    release_label: str
    python: EmrPython  # PYSPARK_PYTHON and the bootstrap's interpreter (python3 is 3.9)
    log_uri: str
    service_role: str  # empty = the role the CloudFormation template creates
    job_flow_role: str  # instance profile; empty = the one the template creates
    subnet_id: str
    primary_instance_type: str
    core_instance_type: str
    core_instance_count: int
    idle_timeout_s: int  # the cluster terminates itself when idle this long
    action_on_failure: ActionOnFailure  # steps added to a running cluster


@dataclass(frozen=True)
class ScheduleConfig:
    enabled: bool
    cron: str  # EventBridge Scheduler expression
    timezone: str
    target: ScheduleTarget
    filter_days: int  # the filter step reads the N days before the run; 0 = every day


@dataclass(frozen=True)
class ServerlessConfig:
    application_id: str
    execution_role_arn: str  # empty = the role the CloudFormation template creates
    architecture: Architecture


@dataclass(frozen=True)
class ToolingConfig:
    """What the deploy tooling reads: the run's Config, exactly as the jobs will load it from the
    same file, and the four sections only the tooling reads."""

    run: Config
    deploy: DeployConfig
    emr: EmrConfig
    schedule: ScheduleConfig
    serverless: ServerlessConfig


# the sections a run skips (idstore.config.TOOLING_SECTIONS), each with its dataclass
SECTIONS: Mapping[str, type] = {"deploy": DeployConfig, "emr": EmrConfig, "schedule": ScheduleConfig,
                                "serverless": ServerlessConfig}


def load_tooling_config(conf: Optional[str] = None, overrides: Sequence[str] = (), read_text=None) -> ToolingConfig:
    """Load conf/base.toml and defaults.toml, then the file `conf` (local path or s3://), then
    `overrides`; the run's sections are checked as the jobs check them, and these as their own."""
    data = load_layers(conf, overrides, read_text, defaults=(BASE_CONF, TOOLING_DEFAULTS),
                       sections={**RUN_SECTIONS, **SECTIONS})
    return build_tooling_config(data)


def build_tooling_config(data: Mapping[str, Any]) -> ToolingConfig:
    run = build_config(data)
    sections = {name: build_section(name, cls, data.get(name, {})) for name, cls in SECTIONS.items()}
    return ToolingConfig(run=run, **sections)

