"""Small-file I/O at the edges: configs, reports and pointers on a local path or s3://.

Bulk data goes through Spark; this is for the few files the driver reads or writes itself.
"""
import json
from pathlib import Path
from typing import Any, Optional, Tuple


def split_s3(uri: str) -> Tuple[str, str]:
    """'s3://bucket/a/b' -> ('bucket', 'a/b')."""
    rest = uri.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    return bucket, key


def is_s3(path: str) -> bool:
    return path.startswith(("s3://", "s3a://", "s3n://"))


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def _s3_client(endpoint_url: str = "", region: Optional[str] = None):
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region)


def read_text(path: str, endpoint_url: str = "", region: Optional[str] = None) -> str:
    """The text at a local path or s3:// key; FileNotFoundError when there is none, either way."""
    if is_s3(path):
        bucket, key = split_s3(path)
        client = _s3_client(endpoint_url, region)
        try:
            body = client.get_object(Bucket=bucket, Key=key)["Body"]
        except client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"no such object: {path}") from None
        return body.read().decode("utf-8")
    return Path(path).read_text(encoding="utf-8")


def write_text(path: str, text: str, endpoint_url: str = "", region: Optional[str] = None) -> None:
    if is_s3(path):
        bucket, key = split_s3(path)
        _s3_client(endpoint_url, region).put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"))
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)  # readers never see half a file


def write_json(path: str, data: Any, endpoint_url: str = "", region: Optional[str] = None) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", endpoint_url, region)


def read_json(path: str, endpoint_url: str = "", region: Optional[str] = None) -> Any:
    return json.loads(read_text(path, endpoint_url, region))


def remove(path: str, endpoint_url: str = "", region: Optional[str] = None) -> None:
    """Delete one file or object; nothing to delete is not an error."""
    if is_s3(path):
        bucket, key = split_s3(path)
        _s3_client(endpoint_url, region).delete_object(Bucket=bucket, Key=key)
        return
    Path(path).unlink(missing_ok=True)


def remove_prefix(prefix: str, endpoint_url: str = "", region: Optional[str] = None) -> int:
    """Delete every object whose key starts with `prefix` (an s3:// URI); how many were deleted."""
    bucket, key_prefix = split_s3(prefix)
    client, removed = _s3_client(endpoint_url, region), 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:  # a page holds at most 1,000 keys, DeleteObjects' limit
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            removed += len(keys)
    return removed
