"""Sending BatchWriteItem: signed calls over botocore's HTTP session, and their answers.

The writer's requests are already in DynamoDB's wire format, so `BatchWriteCall` skips
the boto3 client's per-call machinery (model-driven serialisation and parsing, event
hooks, endpoint rules): about half the CPU per call, which is what bounds a task's rate
when executors are busy. Answers are parsed into what the client would return, and
errors into botocore's ClientError and connection exceptions, exactly as the client
would raise them, so `idstore.dynamodb.retry` classifies both the same way.
"""
import json
import socket
import threading
import zlib
from typing import Any, Dict, Mapping, Tuple


def dynamodb_client(region: str, endpoint_url: str, connect_timeout_s: float = 5.0, read_timeout_s: float = 10.0,
                    max_connections: int = 10):
    """A boto3 DynamoDB client without botocore's retries (used for Scan and the control plane)."""
    import boto3
    from botocore.config import Config

    config = Config(
        # retries are ours: botocore's would not know about the budget or the deadline
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=max_connections,
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
    )
    return boto3.client("dynamodb", region_name=region, endpoint_url=endpoint_url or None, config=config)


def control_client(region: str, endpoint_url: str):
    """A boto3 DynamoDB client with botocore's own retries, for single control-plane calls
    (DescribeTable, ImportTable, DescribeImport, the table's settings)."""
    import boto3

    return boto3.client("dynamodb", region_name=region, endpoint_url=endpoint_url or None)


class BatchWriteCall:
    """BatchWriteItem through botocore's credential chain, SigV4 signer and HTTP session.

    `call(payload) -> response`: `payload` is BatchWriteItem's request body as a dict.
    """

    TARGET = "DynamoDB_20120810.BatchWriteItem"

    def __init__(self, region: str, endpoint_url: str, connect_timeout_s: float, read_timeout_s: float,
                 max_connections: int) -> None:
        import botocore.session
        from botocore.config import Config
        from botocore.httpsession import URLLib3Session
        from botocore.utils import get_environ_proxies

        session = botocore.session.get_session()
        # a client only to resolve the endpoint as boto3 would (FIPS, dual-stack, env overrides)
        client = session.create_client("dynamodb", region_name=region, endpoint_url=endpoint_url or None,
                                       config=Config(retries={"total_max_attempts": 1}))
        self.url = client.meta.endpoint_url.rstrip("/") + "/"
        self.region = client.meta.region_name or region
        self.credentials = session.get_credentials()
        if self.credentials is None:
            from botocore.exceptions import NoCredentialsError

            raise NoCredentialsError()
        self.max_connections = max_connections
        self.http = URLLib3Session(
            verify=session.get_config_variable("ca_bundle") or True,
            proxies=get_environ_proxies(self.url),
            timeout=(connect_timeout_s, read_timeout_s),
            max_pool_connections=max_connections,
            # as botocore's clients do: without it, Nagle holds the body back for the
            # server's delayed ACK of the headers (40 ms a call)
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )

    def __call__(self, payload: Dict[str, Any]) -> Dict[str, Any]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        request = AWSRequest(method="POST", url=self.url, data=body, headers={
            "Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": self.TARGET,
        })
        SigV4Auth(self.credentials.get_frozen_credentials(), "dynamodb", self.region).add_auth(request)
        response = self.http.send(request.prepare())
        return parse_response(response.status_code, response.headers, response.content)


def parse_response(status: int, headers: Mapping[str, str], content: bytes) -> Dict[str, Any]:
    """An HTTP answer of DynamoDB as the client would give it: the body, or a botocore error."""
    from botocore.exceptions import ClientError, HTTPClientError

    crc = headers.get("x-amz-crc32")
    if crc is not None and int(crc) != zlib.crc32(content):
        raise HTTPClientError(error="the response's CRC32 does not match its body")  # retried
    try:
        body = json.loads(content) if content else {}
    except ValueError:
        if status == 200:
            raise HTTPClientError(error="the response is not JSON") from None
        body = {}
    if status == 200:
        return body
    code = str(body.get("__type", "")).rsplit("#", 1)[-1] or f"HTTP{status}"
    message = body.get("message") or body.get("Message") or ""
    raise ClientError({
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": headers.get("x-amzn-RequestId", "")},
    }, "BatchWriteItem")


_CALLS: Dict[Tuple, BatchWriteCall] = {}
_CALLS_LOCK = threading.Lock()


def batch_write_call(region: str, endpoint_url: str, connect_timeout_s: float, read_timeout_s: float,
                     connections: int) -> BatchWriteCall:
    """One BatchWriteCall per Python worker and endpoint, with at least `connections` pooled:
    Spark reuses workers across tasks, and building the client costs more CPU than a
    thousand calls."""
    key = (region, endpoint_url, connect_timeout_s, read_timeout_s)
    with _CALLS_LOCK:
        call = _CALLS.get(key)
        if call is None or call.max_connections < connections:
            call = BatchWriteCall(region, endpoint_url, connect_timeout_s, read_timeout_s, max(connections, 16))
            _CALLS[key] = call
        return call
