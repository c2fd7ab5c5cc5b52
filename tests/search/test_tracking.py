"""Trial tracking: three trials driven through the Tracker write TensorBoard event files, offline
W&B runs and MLflow runs (a local SQLite store), each read back with the library's own reader.

The three trials, shared by the tests (one set of runs, made once): trial 0 completes
(2 folds x 2 epochs), trial 1 is pruned after its first epoch, trial 2 fails in its second.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from maskopt.errors import ConfigError
from maskopt.search.tracking.base import METRICS
from maskopt.search.tracking.tensorboard_backend import TensorBoardBackend
from maskopt.search.tracking.tracker import Tracker, check_trackers, create_tracker
from maskopt.store.locations import mlflow_uri_for, tensorboard_dir_for
from tests.extras import need

STUDY = "tracked"
FOLDS = 2
PARAMS = [{"lr": 0.01, "backbone": "test_resnet"}, {"lr": 0.1, "backbone": "test_convnext"}]
PARAMS.append({"lr": 0.001, "backbone": "test_resnet"})


def row(trial: int, fold: int, epoch: int) -> dict:
    """A trainer history row whose numbers say which trial, fold and epoch wrote them."""
    base = trial + fold / 10 + epoch / 100
    return {
        "epoch": epoch,
        "train_loss": 1 + base,
        "val_loss": 2 + base,
        "val_f1": base / 10,
        "lr": 0.001 * epoch,
        "images_per_s": 50.0,
        "seconds": 1.0,
    }


@dataclass(frozen=True)
class Tracked:
    root: Path
    tensorboard: Path
    wandb_dir: Path
    mlflow_uri: str
    reports: list[str]


def run_three_trials(tracker: Tracker) -> None:
    """COMPLETE (2 epochs), PRUNED (after epoch 1), FAIL (in epoch 2), as the objective would."""
    import optuna

    for number, params in enumerate(PARAMS):
        config = {**params, "epochs": 2, "head_hidden": (64,), "weights": None}
        try:
            with tracker.trial(STUDY, number, params=params, config=config) as run:
                for epoch in (1, 2):
                    for fold in range(FOLDS):
                        run.log_epoch(fold, epoch, row(number, fold, epoch))
                    if number == 1:
                        raise optuna.TrialPruned("below the median")
                    if number == 2 and epoch == 2:
                        raise RuntimeError("out of memory")
                run.value = 0.5
        except (optuna.TrialPruned, RuntimeError) as err:
            assert number in (1, 2), err  # the exception goes on unchanged


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Tracked:
    need("wandb", "wandb")
    need("mlflow", "mlflow")
    root = tmp_path_factory.mktemp("tracking")
    env = {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_CONFIG_DIR": str(root / "wandb-config"),
        "WANDB_CACHE_DIR": str(root / "wandb-cache"),
        "WANDB_DATA_DIR": str(root / "wandb-data"),
    }
    reports: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("WANDB_PROJECT", raising=False)
        t = Tracked(
            root,
            root / "tb",
            root / "wb",
            f"sqlite:///{root / 'mlflow.db'}",
            reports,
        )
        tracker = create_tracker(
            ["wandb", "mlflow"],
            tensorboard=t.tensorboard,
            wandb_dir=t.wandb_dir,
            mlflow_uri=t.mlflow_uri,
            report=reports.append,
        )
        run_three_trials(tracker)
        tracker.close()
    return t


def test_no_backend_failed(tracked: Tracked) -> None:
    assert tracked.reports == []


# -- TensorBoard ---------------------------------------------------------------------------


def tb_events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


def test_tensorboard_curve_per_fold_and_hparams_per_trial(tracked: Tracked) -> None:
    from tensorboard.plugins.hparams import plugin_data_pb2

    trials = sorted(p.name for p in (tracked.tensorboard / STUDY).iterdir())
    assert trials == ["trial_0000", "trial_0001", "trial_0002"]
    for number, epochs in enumerate([(1, 2), (1,), (1, 2)]):
        run = tracked.tensorboard / STUDY / trials[number]
        for fold in range(FOLDS):
            acc = tb_events(run / f"fold_{fold}")
            assert sorted(acc.Tags()["scalars"]) == sorted(METRICS)
            f1 = acc.Scalars("val_f1")
            assert [e.step for e in f1] == list(epochs)
            assert [e.value for e in f1] == pytest.approx(
                [row(number, fold, e)["val_f1"] for e in epochs]
            )
        acc = tb_events(run)
        content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
        assert start.hparams["lr"].number_value == pytest.approx(PARAMS[number]["lr"])
        assert start.hparams["backbone"].string_value == PARAMS[number]["backbone"]
        assert start.hparams["state"].string_value == ["COMPLETE", "PRUNED", "FAIL"][number]
    value = tb_events(tracked.tensorboard / STUDY / "trial_0000").Scalars("value")
    assert [e.value for e in value] == [0.5]


def test_mlflow_store_beside_the_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    url = f"sqlite:///{tmp_path}/maskopt.db"
    assert mlflow_uri_for(url) == f"sqlite:///{tmp_path}/maskopt.mlflow.db"
    assert mlflow_uri_for("postgresql://u@h/db") is None  # MLflow's own default
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert mlflow_uri_for(url) is None  # MLflow reads its own variable


def test_tensorboard_folder_beside_the_storage(tmp_path: Path) -> None:
    assert tensorboard_dir_for(f"sqlite:///{tmp_path}/maskopt.db", None) == (
        tmp_path / "maskopt.tensorboard"
    )
    assert tensorboard_dir_for("postgresql://u@h/db", None) == Path("maskopt.tensorboard")
    assert tensorboard_dir_for("postgresql://u@h/db", "runs/tb") == Path("runs/tb")


# -- W&B (offline) -------------------------------------------------------------------------


def wandb_records(path: Path) -> list:
    """The records of an offline run's .wandb file (a LevelDB-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    block, pos, parts, out = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += block - pos % block
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        parts = chunk if kind in (1, 2) else parts + chunk  # FULL / FIRST, MIDDLE / LAST
        if kind in (1, 4):
            out.append(wandb_internal_pb2.Record.FromString(parts))
    return out


def read_wandb_runs(wandb_dir: Path) -> dict[int, tuple]:
    """trial number -> (run record, config, history rows, summary value/state, exit code) of
    each offline run under `wandb_dir` (WANDB_DIR)."""
    runs = {}
    for f in sorted((wandb_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        records = wandb_records(f)
        kinds = [r.WhichOneof("record_type") for r in records]
        run = records[kinds.index("run")].run
        config = {c.key: json.loads(c.value_json) for c in run.config.update}
        history = [
            {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            for r in records
            if r.WhichOneof("record_type") == "history"
        ]
        summary = {
            i.key: json.loads(i.value_json)
            for r in records
            if r.WhichOneof("record_type") == "summary"
            for i in r.summary.update
            if i.key in ("value", "state")
        }
        exit_code = records[kinds.index("exit")].exit.exit_code
        assert config["trial"] not in runs, f"two runs for trial {config['trial']}"
        runs[config["trial"]] = (run, config, history, summary, exit_code)
    return runs


def test_wandb_offline_run_per_trial(tracked: Tracked) -> None:
    runs = read_wandb_runs(tracked.wandb_dir)
    assert sorted(runs) == [0, 1, 2]
    for number, (run, config, history, summary, exit_code) in runs.items():
        assert run.display_name == f"{STUDY}-{number}" and run.run_group == STUDY
        assert run.project == "maskopt"
        assert config["lr"] == pytest.approx(PARAMS[number]["lr"]) and config["study"] == STUDY
        epochs = [1, 2] if number != 1 else [1]
        expected = [
            {f"fold{fold}/{k}": row(number, fold, e)[k] for k in METRICS} | {"epoch": e}
            for e in epochs
            for fold in range(FOLDS)
        ]
        logged = [{k: v for k, v in h.items() if not k.startswith("_")} for h in history]
        assert logged == [pytest.approx(e) for e in expected]
        assert summary["state"] == ["COMPLETE", "PRUNED", "FAIL"][number]
        assert exit_code == (1 if number == 2 else 0)
    assert runs[0][3]["value"] == 0.5


# -- MLflow --------------------------------------------------------------------------------


def test_wandb_dir_is_read_at_each_search_not_once_per_process(
    tracked: Tracked, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """wandb fixes its settings at the first run of a process; a later search in the same
    process (the `tracked` runs came first) still writes its runs under its own WANDB_DIR."""
    from maskopt.search.tracking.wandb_backend import WandbBackend

    for key in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(key, str(tmp_path / key))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "later"))
    backend = WandbBackend()
    backend.start(STUDY, 7, {"lr": 0.01}, {})
    backend.end(0.5, "COMPLETE")
    assert sorted(read_wandb_runs(tmp_path / "later")) == [7]
    assert sorted(read_wandb_runs(tracked.wandb_dir)) == [0, 1, 2]


def test_mlflow_run_per_trial(tracked: Tracked) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracked.mlflow_uri)
    experiment = client.get_experiment_by_name(STUDY)
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["trial-0", "trial-1", "trial-2"]
    for number in range(3):
        run = runs[f"trial-{number}"]
        assert run.data.tags["study"] == STUDY
        assert run.data.tags["state"] == ["COMPLETE", "PRUNED", "FAIL"][number]
        assert run.info.status == ("FAILED" if number == 2 else "FINISHED")
        assert float(run.data.params["lr"]) == pytest.approx(PARAMS[number]["lr"])
        assert run.data.params["head_hidden"] == "(64,)"
        epochs = [1, 2] if number != 1 else [1]
        for fold in range(FOLDS):
            for key in METRICS:
                history = client.get_metric_history(run.info.run_id, f"fold{fold}/{key}")
                assert sorted((m.step, m.value) for m in history) == [
                    (e, pytest.approx(row(number, fold, e)[key])) for e in epochs
                ]
    assert runs["trial-0"].data.metrics["value"] == 0.5
    assert "value" not in runs["trial-2"].data.metrics


# -- errors --------------------------------------------------------------------------------


def test_a_missing_extra_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("wandb", "mlflow"):
        monkeypatch.setitem(sys.modules, module, None)  # `import wandb` raises ImportError
    with pytest.raises(ConfigError) as err:
        create_tracker(["wandb", "mlflow"], tensorboard=None)
    message = str(err.value)
    assert "\n" not in message
    assert "--track wandb needs wandb" in message and "--track mlflow needs mlflow" in message
    assert message.endswith("pip install maskopt[wandb,mlflow]")
    with pytest.raises(ConfigError, match=r"pip install maskopt\[mlflow\]$"):
        check_trackers(["mlflow"])


def test_an_unknown_tracker_is_refused() -> None:
    with pytest.raises(ConfigError, match="--track: expected wandb or mlflow, but got 'neptune'"):
        check_trackers(["neptune", "wandb"])
    assert check_trackers([]) == ()


def mlflow_server_down(monkeypatch: pytest.MonkeyPatch) -> str:
    """MLFLOW_TRACKING_URI at a port nobody listens on, given up on at once; the URI."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    return uri


def test_a_failing_backend_is_reported_once_and_the_others_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow pointed at a server that is down: one report, no exception, TensorBoard intact."""
    need("mlflow", "mlflow")
    uri = mlflow_server_down(monkeypatch)
    reports: list[str] = []
    tracker = create_tracker(
        ["mlflow"], tensorboard=tmp_path / "tb", mlflow_uri=uri, report=reports.append
    )
    run_three_trials(tracker)
    tracker.close()
    assert len(reports) == 1, reports
    assert reports[0].startswith("tracking: mlflow failed at the start of trial 0 (")
    assert reports[0].endswith("this worker goes on without mlflow.")
    assert "\n" not in reports[0]
    assert tracker.names == ["tensorboard"] and tracker.failed == ["mlflow"]
    assert len(list((tmp_path / "tb" / STUDY).iterdir())) == 3


def test_a_backend_failing_mid_trial_does_not_touch_the_trial(tmp_path: Path) -> None:
    """A backend whose disk goes away mid-trial: reported once; the trial's own error is kept."""
    reports: list[str] = []
    tb = TensorBoardBackend(tmp_path / "tb")
    tracker = Tracker([tb], report=reports.append)
    tracker.start_trial(STUDY, 0, params={"lr": 0.1}, config={})
    (tmp_path / "tb" / STUDY / "trial_0000").rename(tmp_path / "gone")
    (tmp_path / "tb" / STUDY / "trial_0000").write_text("a file where the run folder was")
    tracker.log_epoch(0, 1, row(0, 0, 1))
    tracker.log_epoch(0, 2, row(0, 0, 2))
    tracker.end_trial(0.5, "COMPLETE")
    assert len(reports) == 1 and "tensorboard failed at fold 0 epoch 1" in reports[0]
    assert tracker.backends == []
    with pytest.raises(ValueError, match="state must be one of"):
        tracker.end_trial(0.5, "WAITING")
