"""`maskopt search --track wandb --track mlflow` end to end: the real k-fold objective on the tiny
set writes one TensorBoard run (by default, beside the storage), one offline W&B run and one
MLflow run (a SQLite store beside the storage, by default) per trial, with each fold's epoch
metrics; without the extras it fails in one line; a tracker that fails never fails a trial.

One tiny study (3 trials, 2 folds, 1 epoch) is searched once and read by the first tests.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from maskopt.cli import app
from maskopt.search.options import SearchOptions
from maskopt.search.tracking.base import METRICS
from maskopt.search.tracking.tracker import prepare_search_tracking
from maskopt.store.records import FINISHED, TrialRecord, read_trials
from maskopt.store.storage import load_study
from tests.extras import need
from tests.search.test_tracking import mlflow_server_down, read_wandb_runs, tb_events

TINY_SPACE = """
name: tiny
epochs: 1
params:
  backbone: test_resnet
  image_size: 32
  batch_size: 32
  lr: {low: 1.0e-3, high: 3.0e-2, log: true}
  augment: 0
"""
STUDY = "maskopt"  # the default study name
runner = CliRunner(env={"COLUMNS": "200"})


def search_args(data: Path, folder: Path, *extra: str, storage: str | None = None) -> list[str]:
    """`maskopt search` of the tiny space (written to folder/tiny.yaml), 2 folds, on the CPU;
    the storage a SQLite file in `folder` unless given."""
    space = folder / "tiny.yaml"
    space.write_text(TINY_SPACE)
    return [
        "search",
        "--data",
        str(data),
        "--space",
        str(space),
        "--folds",
        "2",
        "--seed",
        "0",
        "--device",
        "cpu",
        "--storage",
        storage or f"sqlite:///{folder / 'maskopt.db'}",
        *extra,
    ]


@dataclass(frozen=True)
class Searched:
    folder: Path
    output: str
    trials: list[TrialRecord]
    states: dict[int, str]  # trial number -> COMPLETE / PRUNED


@pytest.fixture(scope="module")
def searched(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Searched:
    need("wandb", "wandb")
    need("mlflow", "mlflow")
    folder = tmp_path_factory.mktemp("tracked-search")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
            "WANDB_DIR": str(folder / "wb"),
            "WANDB_CONFIG_DIR": str(folder / "wandb-config"),
            "WANDB_CACHE_DIR": str(folder / "wandb-cache"),
            "WANDB_DATA_DIR": str(folder / "wandb-data"),
        }.items():
            mp.setenv(key, value)
        for key in ("WANDB_PROJECT", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
            mp.delenv(key, raising=False)
        (folder / "wb").mkdir()
        args = search_args(tiny_data, folder, "--trials", "3", "--track", "wandb")
        res = runner.invoke(app, [*args, "--track", "mlflow", "--keep-models", "0"])
    assert res.exit_code == 0, res.output
    assert "tracking: " not in res.output, res.output  # no backend was dropped
    trials = read_trials(load_study(f"sqlite:///{folder / 'maskopt.db'}", STUDY))
    assert [t.state in FINISHED for t in trials] == [True] * 3
    return Searched(folder, res.output, trials, {t.number: t.state for t in trials})


def test_tensorboard_run_per_trial_beside_the_storage(searched: Searched) -> None:
    from tensorboard.plugins.hparams import plugin_data_pb2

    root = searched.folder / "maskopt.tensorboard"
    assert f"TensorBoard: tensorboard --logdir {root}" in searched.output
    assert sorted(p.name for p in (root / STUDY).iterdir()) == [f"trial_000{n}" for n in range(3)]
    for t in searched.trials:
        run = root / STUDY / f"trial_{t.number:04d}"
        for fold, f1 in enumerate(t.fold_f1):
            acc = tb_events(run / f"fold_{fold}")
            assert sorted(acc.Tags()["scalars"]) == sorted(METRICS)
            assert [(e.step, e.value) for e in acc.Scalars("val_f1")] == [
                (1, pytest.approx(f1, abs=1e-6))
            ]
        acc = tb_events(run)
        content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
        assert start.hparams["lr"].number_value == pytest.approx(t.params["lr"])
        assert start.hparams["state"].string_value == t.state
        if t.state == "COMPLETE":
            assert [e.value for e in acc.Scalars("value")] == [pytest.approx(t.value)]


def test_the_dashboard_says_where_the_tensorboard_runs_are(
    searched: Searched, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`maskopt dashboard` (the server itself is tested with the workers) finds the artifacts
    and the TensorBoard folder beside the SQLite file."""
    import maskopt.studies.dashboard

    served = []
    monkeypatch.setattr(maskopt.studies.dashboard, "serve_dashboard", lambda *a: served.append(a))
    url = f"sqlite:///{searched.folder / 'maskopt.db'}"
    res = runner.invoke(app, ["dashboard", "--storage", url])
    assert res.exit_code == 0, res.output
    ((board, host, port),) = served
    assert (host, port) == ("127.0.0.1", 8080)
    assert board.artifacts == searched.folder / "maskopt.artifacts" and board.store is not None
    tensorboard = (searched.folder / "maskopt.tensorboard").resolve()
    assert board.tensorboard == [tensorboard]
    assert f"TensorBoard events of the trials: tensorboard --logdir {tensorboard}" in res.output
    board.storage.remove_session()


def test_offline_wandb_run_per_trial(searched: Searched) -> None:
    runs = read_wandb_runs(searched.folder / "wb")
    assert sorted(runs) == [0, 1, 2]
    for t in searched.trials:
        run, config, history, summary, exit_code = runs[t.number]
        assert run.display_name == f"{STUDY}-{t.number}" and run.run_group == STUDY
        assert run.project == "maskopt" and exit_code == 0
        assert config["lr"] == pytest.approx(t.params["lr"]) and config["backbone"] == "test_resnet"
        logged = [{k: v for k, v in h.items() if not k.startswith("_")} for h in history]
        assert [h["epoch"] for h in logged] == [1, 1]  # one row per fold of the one epoch
        assert sorted(logged[0]) == sorted(["epoch", *(f"fold0/{k}" for k in METRICS)])
        assert [logged[k][f"fold{k}/val_f1"] for k in range(2)] == pytest.approx(
            t.fold_f1, abs=1e-6
        )
        assert summary["state"] == t.state
        if t.state == "COMPLETE":
            assert summary["value"] == pytest.approx(t.value)


def test_mlflow_run_per_trial_in_a_sqlite_store_beside_the_storage(searched: Searched) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{searched.folder / 'maskopt.mlflow.db'}")
    experiment = client.get_experiment_by_name(STUDY)
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["trial-0", "trial-1", "trial-2"]
    for t in searched.trials:
        run = runs[f"trial-{t.number}"]
        assert run.data.tags["state"] == t.state and run.info.status == "FINISHED"
        assert float(run.data.params["lr"]) == pytest.approx(t.params["lr"])
        for fold, f1 in enumerate(t.fold_f1):
            for key in METRICS:
                history = client.get_metric_history(run.info.run_id, f"fold{fold}/{key}")
                assert [m.step for m in history] == [1]
            history = client.get_metric_history(run.info.run_id, f"fold{fold}/val_f1")
            assert history[0].value == pytest.approx(f1, abs=1e-6)
        if t.state == "COMPLETE":
            assert run.data.metrics["value"] == pytest.approx(t.value)


def test_without_the_extras_the_search_fails_in_one_line_naming_them(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in ("wandb", "mlflow"):
        monkeypatch.setitem(sys.modules, module, None)  # `import wandb` raises ImportError
    args = search_args(tiny_data, tmp_path, "--trials", "3", "--track", "wandb")
    res = runner.invoke(app, [*args, "--track", "mlflow"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "error: --track wandb needs wandb, --track mlflow needs mlflow, which is not installed: "
        "pip install maskopt[wandb,mlflow]"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]  # nothing ran


def test_a_tracker_that_fails_is_reported_once_and_the_trials_go_on(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """MLflow pointed at a server that is down: the trial completes, one line says so (the
    Tracker's own tests show that it is once over many trials)."""
    need("mlflow", "mlflow")
    mlflow_server_down(monkeypatch)
    args = search_args(tiny_data, tmp_path, "--trials", "1", "--track", "mlflow")
    with caplog.at_level(logging.WARNING, logger="maskopt.search"):
        res = runner.invoke(app, [*args, "--keep-models", "0"])
    assert res.exit_code == 0, res.output
    reports = [r.getMessage() for r in caplog.records if r.name == "maskopt.search"]
    assert len(reports) == 1 and reports[0].startswith("tracking: mlflow failed at the start")
    study = load_study(f"sqlite:///{tmp_path / 'maskopt.db'}", STUDY)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]
    assert [p.name for p in (tmp_path / "maskopt.tensorboard" / STUDY).iterdir()] == ["trial_0000"]


def test_worker_processes_start_without_a_tracker_that_failed_before_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    """With --workers N the search makes the MLflow experiment before the workers race to;
    when that fails it is reported once, and the workers are not told to try again."""
    need("mlflow", "mlflow")
    mlflow_server_down(monkeypatch)
    opts = SearchOptions(storage=f"sqlite:///{tmp_path / 'maskopt.db'}", track=("mlflow",))
    with caplog.at_level(logging.WARNING, logger="maskopt.search"):
        assert prepare_search_tracking(opts).track == ()
    reports = [r.getMessage() for r in caplog.records if r.name == "maskopt.search"]
    assert len(reports) == 1
    assert reports[0].startswith("tracking: mlflow failed at preparing study 'maskopt'")
    assert list(tmp_path.iterdir()) == []
