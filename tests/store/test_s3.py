"""Artifacts on S3 against a local endpoint (moto's server on 127.0.0.1, see tests/s3_server.py)."""

from __future__ import annotations

import builtins
import socket
from pathlib import Path

import numpy as np
import pytest

from maskopt.errors import ConfigError
from maskopt.store.locations import create_artifact_store
from maskopt.store.s3 import PrefixedS3Store, create_s3_artifact_store, is_s3_url, parse_s3_url
from tests.s3_server import S3Bucket


def test_parse_s3_urls() -> None:
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/") == ("bucket", "")
    assert parse_s3_url("s3://bucket/runs//study-1/") == ("bucket", "runs/study-1/")
    assert is_s3_url("s3://b") and not is_s3_url("runs/s3") and not is_s3_url(Path("s3://b"))
    with pytest.raises(ConfigError, match="names no bucket"):
        parse_s3_url("s3:///prefix")
    with pytest.raises(ConfigError, match=r"expected s3://bucket\[/prefix\], but got 'gs://b'"):
        parse_s3_url("gs://b")


def _oof(path: Path) -> Path:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(18), size=40).astype(np.float32)
    np.savez_compressed(path, probs=probs, labels=rng.integers(0, 18, 40))
    return path


@pytest.mark.parametrize("prefix", ["", "team/study-1"])
def test_oof_round_trip_through_optuna(s3_bucket: S3Bucket, tmp_path: Path, prefix: str) -> None:
    import optuna
    from optuna.artifacts import download_artifact, get_all_artifact_meta, upload_artifact
    from optuna.artifacts.exceptions import ArtifactNotFound

    url = f"{s3_bucket.url}/{prefix}" if prefix else s3_bucket.url
    store = create_s3_artifact_store(url)
    assert isinstance(store, PrefixedS3Store) == bool(prefix)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'maskopt.db'}")
    trial = study.ask()
    npz = _oof(tmp_path / "oof_trial0.npz")
    artifact_id = upload_artifact(artifact_store=store, file_path=str(npz), study_or_trial=trial)
    study.tell(trial, 0.5)

    expected = f"{prefix}/{artifact_id}" if prefix else artifact_id
    assert s3_bucket.keys() == [expected]
    # another worker (a new store from the same URL) reads it back, byte for byte
    back = tmp_path / "back.npz"
    download_artifact(
        artifact_store=create_artifact_store(url), file_path=str(back), artifact_id=artifact_id
    )
    assert back.read_bytes() == npz.read_bytes()
    with np.load(back) as f:
        assert f["probs"].shape == (40, 18)
    meta = get_all_artifact_meta(study.trials[0], storage=study._storage)
    assert [m.artifact_id for m in meta] == [artifact_id]

    store.remove(artifact_id)
    assert s3_bucket.keys() == []
    with pytest.raises(ArtifactNotFound):
        store.open_reader(artifact_id)


def test_a_missing_bucket_is_one_line(s3_bucket: S3Bucket) -> None:
    with pytest.raises(ConfigError, match="the bucket does not exist") as err:
        create_s3_artifact_store("s3://no-such-bucket/x")
    assert "\n" not in str(err.value) and s3_bucket.endpoint in str(err.value)


def test_an_endpoint_that_does_not_answer_is_one_line(
    s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(ConfigError, match="the endpoint does not answer") as err:
        create_artifact_store(s3_bucket.url)
    assert "\n" not in str(err.value) and f"127.0.0.1:{port}" in str(err.value)


def test_no_credentials_is_one_line(s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConfigError, match="no AWS credentials found"):
        create_artifact_store(s3_bucket.url)


def test_without_boto3_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def blocked(name, *args, **kwargs):
        if name.split(".")[0] in ("boto3", "botocore"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", blocked)
    with pytest.raises(ConfigError, match=r"needs boto3.*pip install maskopt\[s3\]"):
        create_artifact_store("s3://bucket")


def test_a_folder_is_still_a_folder(tmp_path: Path) -> None:
    from optuna.artifacts import FileSystemArtifactStore

    assert isinstance(create_artifact_store(tmp_path / "artifacts"), FileSystemArtifactStore)
    assert (tmp_path / "artifacts").is_dir()
