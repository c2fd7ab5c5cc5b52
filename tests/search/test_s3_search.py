"""Many machines in small: two worker processes on PostgreSQL keep every artifact in an S3 bucket
(moto's server on 127.0.0.1, tests/s3_server.py; the workers inherit its AWS_* variables), then
`maskopt best`, `best --export --no-retrain` and the dashboard read them from there, told only
the storage URL and the study (the study records the bucket's URL).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from maskopt.bundle.manifest import read_manifest
from maskopt.cli import app
from maskopt.errors import ConfigError
from maskopt.search.options import SearchOptions
from maskopt.search.runner import run_search
from maskopt.store.records import ARTIFACTS_DIR, read_trials
from maskopt.store.storage import load_study
from maskopt.studies.dashboard import open_dashboard
from tests.s3_server import S3Bucket
from tests.search.conftest import FAKE
from tests.search.test_search_tracking import search_args

runner = CliRunner(env={"COLUMNS": "200"})


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("storage_url", ["postgres"], indirect=True)
def test_two_workers_on_postgres_keep_the_artifacts_on_s3_and_export_reads_them(
    storage_url: str, study_name: str, s3_bucket: S3Bucket, tiny_data: Path, tmp_path: Path
) -> None:
    artifacts = f"{s3_bucket.url}/team/{study_name}"  # a key prefix: PrefixedS3Store
    search = [
        "--study",
        study_name,
        "--artifacts",
        artifacts,
        "--tensorboard",
        str(tmp_path / "tb"),
    ]
    search += ["--workers", "2", "--trials", "3", "--keep-models", "3"]
    res = runner.invoke(app, search_args(tiny_data, tmp_path, *search, storage=storage_url))
    assert res.exit_code == 0, res.output
    assert f"artifacts {artifacts})" in res.output

    study = load_study(storage_url, study_name)
    assert study.user_attrs[ARTIFACTS_DIR] == artifacts  # the URL, // and all
    records = read_trials(study)
    assert [r.state for r in records] == ["COMPLETE"] * 3  # 3 < --startup-trials: none pruned
    assert all(r.worker is not None and r.worker.pid != os.getpid() for r in records)
    # every OOF file and fold model is in the bucket, under the prefix; nothing on the disk
    prefix = f"team/{study_name}/"
    expected = {prefix + r.oof_artifact for r in records if r.oof_artifact}
    expected |= {prefix + m for r in records for m in r.model_artifacts}
    assert len(expected) == 3 + 3 * 2 and set(s3_bucket.keys()) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tb", "tiny.yaml"]
    trial_runs = sorted(p.name for p in (tmp_path / "tb" / study_name).iterdir())
    assert trial_runs == ["trial_0000", "trial_0001", "trial_0002"]

    # `maskopt best` sees the kept models in the bucket the study recorded
    where = ["--storage", storage_url, "--study", study_name]  # and nothing about the bucket
    res = runner.invoke(app, ["best", *where])
    assert res.exit_code == 0, res.output
    assert res.output.count("kept") == 3

    out = tmp_path / "bundle"
    res = runner.invoke(
        app,
        [
            "best",
            *where,
            "--export",
            "--no-retrain",
            "--data",
            str(tiny_data),
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    manifest = read_manifest(out)
    assert manifest.members and all(not m.retrained for m in manifest.members)
    assert all(len(m.checkpoints) == 2 for m in manifest.members)  # the two fold models
    assert (out / "submission.csv").exists()

    # the dashboard reads the same bucket and says where the TensorBoard runs are
    board = open_dashboard(storage_url, artifacts)
    assert board.artifacts == artifacts and board.store is not None
    with board.store.open_reader(records[0].oof_artifact or "") as f:
        assert f.read(2) == b"PK"  # the .npz (a zip) the search uploaded
    assert (tmp_path / "tb").resolve() in board.tensorboard
    board.storage.remove_session()


def test_a_missing_bucket_stops_the_search_before_anything(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    opts = SearchOptions(
        storage=f"sqlite:///{tmp_path / 'maskopt.db'}",
        artifacts="s3://no-such-bucket/runs",
        trials=1,
        objective=FAKE,
    )
    with pytest.raises(ConfigError, match="s3://no-such-bucket at .*: the bucket does not exist"):
        run_search(opts, show_progress=False)
    assert list(tmp_path.iterdir()) == []
