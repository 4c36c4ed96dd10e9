"""Names and ARNs of what a deployment creates, derived from deploy.name once, used everywhere."""
from dataclasses import dataclass

from idstore_tools.deploy.config import ToolingConfig


def partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def arn(service: str, region: str, account: str, resource: str) -> str:
    return f"arn:{partition(region)}:{service}:{region}:{account}:{resource}"


@dataclass(frozen=True)
class Names:
    """Every name is deploy.name plus a suffix, so two deployments in one account do not collide."""

    name: str
    region: str
    account: str
    emr_service_role: str  # the role EMR itself assumes
    emr_ec2_role: str  # the nodes' role; its instance profile has the same name
    job_flow_role: str  # instance profile name passed to RunJobFlow
    serverless_job_role_arn: str
    creates_emr_service_role: bool
    creates_emr_ec2_role: bool
    creates_serverless_job_role: bool

    @classmethod
    def of(cls, config: ToolingConfig) -> "Names":
        name = config.deploy.name
        region, account = config.run.aws.region, config.deploy.account_id
        ec2 = config.emr.job_flow_role or f"{name}-emr-ec2"
        serverless_role = config.serverless.execution_role_arn or (
            f"arn:{partition(region)}:iam::{account}:role/{name}-serverless-job"
        )
        return cls(
            name=name,
            region=region,
            account=account,
            emr_service_role=config.emr.service_role or f"{name}-emr-service",
            emr_ec2_role=ec2,
            job_flow_role=ec2,
            serverless_job_role_arn=serverless_role,
            creates_emr_service_role=not config.emr.service_role,
            creates_emr_ec2_role=not config.emr.job_flow_role,
            creates_serverless_job_role=not config.serverless.execution_role_arn,
        )

    @property
    def cluster(self) -> str:
        return self.name

    @property
    def state_machine(self) -> str:
        return self.name

    @property
    def serverless_state_machine(self) -> str:
        return f"{self.name}-serverless"

    @property
    def schedule(self) -> str:
        return self.name

    @property
    def states_role(self) -> str:
        return f"{self.name}-states"

    @property
    def scheduler_role(self) -> str:
        return f"{self.name}-scheduler"

    @property
    def serverless_job_role(self) -> str:
        return self.serverless_job_role_arn.rsplit("/", 1)[-1]

    def role_arn(self, role: str) -> str:
        return f"arn:{partition(self.region)}:iam::{self.account}:role/{role}"

    def state_machine_arn(self, state_machine: str) -> str:
        return arn("states", self.region, self.account, f"stateMachine:{state_machine}")
