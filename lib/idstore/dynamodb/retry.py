"""Which DynamoDB errors are worth retrying, and full-jitter exponential backoff."""
import random
from typing import Optional

from botocore.exceptions import ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError, ReadTimeoutError

THROTTLE_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)


def retry_reason(exc: BaseException) -> Optional[str]:
    """'throttle', '5xx' or 'connection' for a transient error; None for one that will not heal."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in THROTTLE_CODES:
            return "throttle"
        if status >= 500 or code in ("InternalServerError", "ServiceUnavailable"):
            return "5xx"
        return None
    if isinstance(exc, (BotoConnectionError, HTTPClientError, ReadTimeoutError, ConnectionError)):
        return "connection"
    return None


def full_jitter(attempt: int, base_s: float = 0.025, cap_s: float = 5.0, rng=random) -> float:
    """sleep = random(0, min(cap, base * 2**attempt)): least total work for the same outcome."""
    return rng.uniform(0.0, min(cap_s, base_s * (2 ** min(attempt, 30))))
