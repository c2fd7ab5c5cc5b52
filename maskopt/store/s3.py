"""Artifacts on S3: `--artifacts s3://bucket[/prefix]` as an Optuna artifact store.

Workers on many machines then share only the storage URL and the bucket. The store is
Optuna's `Boto3ArtifactStore`; it has no key prefix, so a URL with a prefix gets
`PrefixedS3Store`, which implements the same public protocol (open_reader / write /
remove) and puts every key under the prefix. boto3 finds the endpoint, the region and the
credentials the usual AWS way (AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_S3, AWS_DEFAULT_REGION,
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws/...), so a MinIO server or a
local test endpoint is only an environment variable away.

The bucket is checked once when the store is made: a missing bucket, refused credentials or
an endpoint that does not answer is one ConfigError line, before any trial runs.
`store.locations.create_artifact_store` is the one place that turns an --artifacts value
(a folder or an s3:// URL) into a store.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, BinaryIO

from optuna.artifacts import Boto3ArtifactStore

from maskopt.errors import ConfigError

if TYPE_CHECKING:
    from maskopt.store.records import ModelStore as ArtifactStore

SCHEME = "s3://"
EXTRA = "pip install maskopt[s3]"
# Seconds before a silent endpoint is given up on (botocore's default connect timeout is 60).
CONNECT_TIMEOUT_S = 10


def is_s3_url(location: str | os.PathLike | None) -> bool:
    """Whether an --artifacts value names S3 (pass the user's string: Path() eats the //)."""
    return isinstance(location, str) and location.startswith(SCHEME)


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket[/prefix]` -> (bucket, prefix), the prefix '' or ending in one '/'."""
    if not is_s3_url(url):
        raise ConfigError(f"--artifacts: expected s3://bucket[/prefix], but got {url!r}.")
    bucket, _, prefix = url[len(SCHEME) :].partition("/")
    prefix = "/".join(part for part in prefix.split("/") if part)
    if not bucket:
        raise ConfigError(f"--artifacts: {url!r} names no bucket (expected s3://bucket[/prefix]).")
    return bucket, prefix + "/" if prefix else ""


class PrefixedS3Store:
    """Optuna's Boto3ArtifactStore with every artifact id stored under `prefix`."""

    def __init__(self, store: Boto3ArtifactStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self.store.open_reader(self.prefix + artifact_id)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self.store.write(self.prefix + artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        self.store.remove(self.prefix + artifact_id)


def s3_client() -> Any:
    """A boto3 S3 client configured from the environment; ConfigError when boto3 is missing."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise ConfigError(
            f"--artifacts s3://... needs boto3, which is not installed: {EXTRA}"
        ) from None
    # A new session each time: boto3's default session keeps the credentials it found first.
    session = boto3.session.Session()
    return session.client("s3", config=Config(connect_timeout=CONNECT_TIMEOUT_S))


def check_bucket(client: Any, bucket: str) -> None:
    """ConfigError in one line unless `bucket` exists and these credentials may use it."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    where = f"s3://{bucket} at {client.meta.endpoint_url}"
    try:
        client.head_bucket(Bucket=bucket)
    except NoCredentialsError:
        raise ConfigError(
            f"{where}: no AWS credentials found (set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)."
        ) from None
    except ClientError as err:
        code = str(err.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            raise ConfigError(f"{where}: the bucket does not exist (create it first).") from None
        if code in ("403", "AccessDenied"):
            raise ConfigError(f"{where}: access denied (check the AWS credentials).") from None
        raise ConfigError(f"{where}: {code or 'error'}: {err}") from None
    except BotoCoreError as err:  # endpoint refused, timed out, bad URL...
        raise ConfigError(f"{where}: the endpoint does not answer ({err}).") from None


def create_s3_artifact_store(url: str, *, client: Any = None, check: bool = True) -> ArtifactStore:
    """The Optuna artifact store for `s3://bucket[/prefix]` (the bucket checked when `check`)."""
    bucket, prefix = parse_s3_url(url)
    client = client if client is not None else s3_client()
    if check:
        check_bucket(client, bucket)

    store = Boto3ArtifactStore(bucket, client=client)
    return PrefixedS3Store(store, prefix) if prefix else store
