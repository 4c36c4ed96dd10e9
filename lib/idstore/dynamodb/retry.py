"""Which DynamoDB errors are worth retrying, and full-jitter exponential backoff."""
import random
from typing import Optional

from botocore.exceptions import ClientError, HTTPClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotoConnectionError

THROTTLE_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)
TRANSIENT_CODES = frozenset({"InternalServerError", "ServiceUnavailable", "RequestTimeout", "RequestTimeoutException"})


def error_code(exc: BaseException) -> str:
    """DynamoDB's error code of a ClientError, else the exception's class name."""
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code", "") or type(exc).__name__
    return type(exc).__name__


def retry_reason(exc: BaseException) -> Optional[str]:
    """'throttle', '5xx' or 'connection' for a transient error; None for one that will not heal."""
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in THROTTLE_CODES:
            return "throttle"
        if status >= 500 or code in TRANSIENT_CODES:
            return "5xx"
        return None
    if isinstance(exc, (BotoConnectionError, HTTPClientError, ReadTimeoutError, ConnectionError)):
        return "connection"
    return None


def full_jitter(attempt: int, base_s: float = 0.025, cap_s: float = 5.0, rng=random) -> float:
    """sleep = random(0, min(cap, base * 2**attempt)): least total work for the same outcome."""
    return rng.uniform(0.0, min(cap_s, base_s * (2 ** min(attempt, 30))))
