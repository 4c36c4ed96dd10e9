"""output.sse_kms_key_id through S3A, accepted by moto: the filter's output and both jobs'
quarantine written with SSE-KMS and the key asked for.

The AWS SDK refuses to send SSE-KMS requests over plain HTTP, so this moto serves HTTPS with a
certificate made here (openssl) that the JVM (a trust store, keytool) and boto3 (AWS_CA_BUNDLE)
trust; everything else is as in test_jobs_on_s3.py.
"""
import dataclasses
import gzip
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from idstore_tools.local.stack import connect_postgres, free_port, moto_env, store_source_secret, write_local_config
from idstore_tools.local_submit import local_spark_conf, require_jars, spark_submit

pytestmark = pytest.mark.integration

DAY = "2024-04-01"
IDS = [f"KMS{i:04d}" for i in range(200)]


@pytest.fixture(scope="module")
def tls_moto(tmp_path_factory):
    """A moto server on HTTPS; yields (endpoint, CA file, JVM trust store)."""
    work = tmp_path_factory.mktemp("tls-moto")
    cert, key, store = work / "cert.pem", work / "key.pem", work / "trust.jks"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    # the trust store's password guards nothing (a public test certificate); keytool requires one
    subprocess.run(["keytool", "-importcert", "-noprompt", "-alias", "moto", "-file", str(cert), "-keystore", str(store), "-storetype", "JKS",
                    "-storepass", "changeit"], check=True, capture_output=True)
    port = free_port()
    server = Path(sys.executable).parent / "moto_server"
    log = open(work / "moto.log", "wb")
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port), "-c", str(cert), "-k", str(key)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=str(work))
    endpoint = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2, context=context):
                break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, (work / "moto.log").read_text()[-2000:]
            time.sleep(0.2)
    yield endpoint, cert, store
    proc.terminate()
    proc.wait(15)
    log.close()


def test_filter_output_and_quarantine_are_written_with_sse_kms_and_the_key_asked_for(stack, tls_moto, tmp_path):
    import boto3

    require_jars("jobs")
    endpoint, cert, store = tls_moto
    env = {**moto_env(endpoint), "AWS_CA_BUNDLE": str(cert)}
    client = {"endpoint_url": endpoint, "region_name": "us-east-1", "verify": str(cert),
              "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    s3, kms = boto3.client("s3", **client), boto3.client("kms", **client)
    bucket = f"kms-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    key_arn = kms.create_key(Description="idstore sse-kms test")["KeyMetadata"]["Arn"]

    conn = connect_postgres(stack)
    conn.autocommit = True
    conn.cursor().execute("drop table if exists kms_program")
    conn.cursor().execute("create table kms_program (product_id text)")
    conn.cursor().executemany("insert into kms_program values (%s)", [(i,) for i in IDS + [""]])  # "" is rejected
    conn.close()
    tls_stack = dataclasses.replace(stack, moto_endpoint=endpoint)
    os.environ["AWS_CA_BUNDLE"] = str(cert)  # boto3 reads it when a client is made
    try:
        store_source_secret(tls_stack)  # the source login, in this moto's Secrets Manager
    finally:
        del os.environ["AWS_CA_BUNDLE"]
    lines = [json.dumps({"id": f"k{i}", "time": f"{DAY}T00:00:00Z", "detail-type": "F", "source": "fc",
                         "detail": {"productId": IDS[i % 200] if i % 3 == 0 else f"OTHER{i}"}}) for i in range(900)]
    s3.put_object(Bucket=bucket, Key=f"data/failure-events/dt={DAY}/part-00000.json.gz",
                  Body=gzip.compress(("\n".join(lines + ["not json"]) + "\n").encode()))
    root = f"s3://{bucket}"
    write_local_config(tls_stack, tmp_path / "kms.toml", f"{root}/data")
    text = (tmp_path / "kms.toml").read_text().replace("from program_products where program = 'FFA'", "from kms_program")
    s3.put_object(Bucket=bucket, Key="conf/kms.toml", Body=text.encode())

    java_options = f"{local_spark_conf()['spark.driver.extraJavaOptions']} -Djavax.net.ssl.trustStore={store}"
    result = spark_submit("filter", ["--conf", f"{root}/conf/kms.toml", "--from", DAY, "--to", DAY, "--ids", "source",
                                     "--set", f"output.sse_kms_key_id={key_arn}"],
                          env=env, spark_conf={"spark.hadoop.fs.s3a.connection.ssl.enabled": "true",
                                               "spark.driver.extraJavaOptions": java_options})
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    written = []
    for prefix in ("data/filtered/", "data/quarantine/"):
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        written += [o["Key"] for o in listed if not o["Key"].rsplit("/", 1)[-1].startswith(("_", "."))]
    assert any(k.startswith("data/filtered/") for k in written) and any(k.startswith("data/quarantine/") for k in written)
    # the sync's rejected id goes to the quarantine under the same key
    table = f"kms-{uuid.uuid4().hex[:8]}"
    boto3.client("dynamodb", **client).create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "product_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "product_id", "AttributeType": "S"}])
    result = spark_submit("sync", ["--config", f"{root}/conf/kms.toml", "--set", f"dynamodb.table={table}",
                                   "--set", f"output.sse_kms_key_id={key_arn}"],
                          env=env, spark_conf={"spark.hadoop.fs.s3a.connection.ssl.enabled": "true",
                                               "spark.driver.extraJavaOptions": java_options})
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="data/quarantine/sync/").get("Contents", [])
    sync_quarantine = [o["Key"] for o in listed if not o["Key"].rsplit("/", 1)[-1].startswith(("_", "."))]
    assert sync_quarantine
    written += sync_quarantine
    for key in written:
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head.get("ServerSideEncryption") == "aws:kms", key
        assert head.get("SSEKMSKeyId") in (key_arn, key_arn.rsplit("/", 1)[-1]), (key, head.get("SSEKMSKeyId"))
