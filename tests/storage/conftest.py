"""A real S3-compatible server for the fsspec backend: moto's standalone server on 127.0.0.1."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from cryovault.settings import StorageConfig
from tests.live_server import free_port


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_config(s3_endpoint) -> StorageConfig:
    """A fresh bucket per test, reached with credentials the server accepts."""
    import boto3

    bucket = f"cryovault-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1",
                 ).create_bucket(Bucket=bucket)
    return StorageConfig(url=f"s3://{bucket}/primary", role="primary", endpoint_url=s3_endpoint,
                         key="testing", secret="testing", region="us-east-1")
