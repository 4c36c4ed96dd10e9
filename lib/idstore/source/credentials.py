"""Source credentials from Secrets Manager or a named env var; never from config or URLs."""
import json
import re
from dataclasses import dataclass, field
from typing import Mapping

from idstore.config import AwsConfig, ConfigError, SourceConfig

_URL_PASSWORD = re.compile(r"(?i)([?;&]password=)|(//[^/@:]+:[^/@]+@)")


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = field(default="", repr=False)


def url_has_password(url: str) -> bool:
    return bool(_URL_PASSWORD.search(url))


def uses_iam(url: str) -> bool:
    return url.startswith("jdbc:redshift:iam://")


def resolve_credentials(source: SourceConfig, aws: AwsConfig, environ: Mapping[str, str]) -> Credentials:
    """The user and password for `source`; the only place a password is looked up."""
    if uses_iam(source.url):
        # the driver fetches temporary credentials from the cluster's IAM role
        return Credentials(user=source.user)
    if source.secret_id:
        return _from_secret(source.secret_id, aws)
    if source.password_env:
        if source.password_env not in environ:
            raise ConfigError(
                f"source.password_env: environment variable {source.password_env} is not set"
            )
        return Credentials(user=source.user, password=environ[source.password_env])
    raise ConfigError(
        "source: no credentials; set source.secret_id, source.password_env, or use a jdbc:redshift:iam:// URL"
    )


def _from_secret(secret_id: str, aws: AwsConfig) -> Credentials:
    import boto3

    client = boto3.client(
        "secretsmanager", region_name=aws.region, endpoint_url=aws.endpoint_url or None
    )
    try:
        payload = json.loads(client.get_secret_value(SecretId=secret_id)["SecretString"])
        return Credentials(user=payload["username"], password=payload["password"])
    except (KeyError, ValueError, TypeError):
        raise ConfigError(
            f"source.secret_id: secret {secret_id!r} is not JSON with 'username' and 'password'"
        ) from None
