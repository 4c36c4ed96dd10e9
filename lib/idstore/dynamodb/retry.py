"""Which DynamoDB errors are worth retrying, and how long to wait before the retry
(full-jitter exponential backoff)."""
import random
from typing import List, Optional

from botocore.exceptions import ClientError, HTTPClientError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotoConnectionError

from idstore.dynamodb.retry_queue import Request

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


def backoff(requests: List[Request], progress: bool, base_s: float, cap_s: float, rng=random) -> float:
    """Full-jitter delay before `requests` go out again. The exponent counts the calls in a
    row that wrote none of them: a call that wrote part of its batch shows the table is
    taking writes, so its leftovers wait only up to the base delay."""
    attempt = 0
    for request in requests:
        request.attempts = 0 if progress else request.attempts + 1
        attempt = max(attempt, request.attempts)
    return full_jitter(attempt, base_s, cap_s, rng)
