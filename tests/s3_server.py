"""A local S3 endpoint for tests: moto's server on 127.0.0.1, started by the test session.

tests/conftest.py registers this module as a plugin, so any test can ask for its fixtures.
`s3_bucket` points the AWS environment variables at the endpoint (so subprocesses, such as
search workers, see it too) and makes a fresh bucket.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.extras import need


@dataclass(frozen=True)
class S3Bucket:
    endpoint: str  # http://127.0.0.1:PORT
    bucket: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}"

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint)

    def keys(self) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=self.bucket)
        return sorted(obj["Key"] for obj in listing.get("Contents", []))


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """The endpoint URL of a moto S3 server on 127.0.0.1 (a free port), for the session."""
    need("boto3", "s3")
    server_module = need("moto.server", "dev")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> S3Bucket:
    """A new empty bucket; AWS_* variables point at the local endpoint with fake credentials."""
    for key, value in {
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)
    bucket = S3Bucket(s3_server, f"maskopt-{uuid.uuid4().hex[:12]}")
    bucket.client().create_bucket(Bucket=bucket.bucket)
    return bucket
