"""Source credentials from Secrets Manager or a named env var; never from config or URLs.

Every password looked up here is remembered (idstore.redaction) so that logs, reports and the
summary scrub it, whatever library puts it into a message.
"""
import json
from dataclasses import dataclass, field
from typing import Mapping

from idstore.config import AwsConfig, ConfigError, SourceConfig
from idstore.errors import RunFailed
from idstore.redaction import remember_secret


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = field(default="", repr=False)


NO_CREDENTIALS = "source: no credentials; set source.secret_id, source.password_env, or use a jdbc:redshift:iam:// URL"


def uses_iam(url: str) -> bool:
    return url.startswith("jdbc:redshift:iam://")


def names_credentials(source: SourceConfig) -> bool:
    """Whether `source` says how to log in: the cluster's IAM role, a secret or an env var."""
    return uses_iam(source.url) or bool(source.secret_id or source.password_env)


def resolve_credentials(source: SourceConfig, aws: AwsConfig, environ: Mapping[str, str]) -> Credentials:
    """The user and password for `source`; the only place a password is looked up."""
    if uses_iam(source.url):
        # the driver fetches temporary credentials for DbUser from the cluster's IAM role
        return Credentials(user=source.user)
    if source.secret_id:  # not both: the config's load refuses that
        credentials = _from_secret(source.secret_id, aws)
    elif source.password_env:
        if source.password_env not in environ:
            raise ConfigError(
                f"source.password_env: environment variable {source.password_env} is not set"
            )
        credentials = Credentials(user=source.user, password=environ[source.password_env])
    else:
        raise ConfigError(NO_CREDENTIALS)
    remember_secret(credentials.password)
    return credentials


def _from_secret(secret_id: str, aws: AwsConfig) -> Credentials:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(
        "secretsmanager", region_name=aws.region, endpoint_url=aws.endpoint_url or None
    )
    # AWS refusing the read, or a secret that is missing or not a login, fails the run (exit 1): the
    # config names a secret, the account is what is wrong
    try:
        text = client.get_secret_value(SecretId=secret_id)["SecretString"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise RunFailed(f"Secrets Manager GetSecretValue of {secret_id!r} (source.secret_id): {code}") from None
    except (BotoCoreError, KeyError) as exc:
        raise RunFailed(f"Secrets Manager GetSecretValue of {secret_id!r} (source.secret_id): "
                        f"{type(exc).__name__}") from None
    try:
        payload = json.loads(text)
        user, password = payload["username"], payload["password"]
    except (KeyError, ValueError, TypeError):
        # never echo the payload: it may be the password itself
        raise RunFailed(f"source.secret_id: secret {secret_id!r} is not JSON with 'username' and 'password'") from None
    if not isinstance(user, str) or not isinstance(password, str) or not password:
        raise RunFailed(f"source.secret_id: secret {secret_id!r} needs a string 'username' and a non-empty 'password'")
    return Credentials(user=user, password=password)
