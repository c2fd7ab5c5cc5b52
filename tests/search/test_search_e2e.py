"""`maskopt search` end to end with the real k-fold objective: a tiny model on the tiny data set."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
from optuna.artifacts import download_artifact
from optuna.trial import TrialState
from typer.testing import CliRunner

from maskopt.cli import app
from maskopt.studies.storage import create_artifact_store, load_study

TINY_SPACE = """
name: tiny
epochs: 2
params:
  backbone: resnet10t
  image_size: 32
  batch_size: 16
  lr: {low: 1.0e-4, high: 3.0e-2, log: true}
  loss: [cross_entropy, focal]
  focal_gamma: {low: 1.0, high: 3.0, when: {loss: focal}}
  augment: 0
"""

TRIAL_ATTRS = {
    "config",
    "fold_f1",
    "fold_best_epoch",
    "class_f1",
    "epochs_run",
    "images_per_s",
    "duration_s",
    "oof_artifact",
    "model_artifacts",
}


@pytest.mark.slow
def test_search_runs_kfold_trials_and_writes_the_study_format(tiny_data, tiny_set, tmp_path):
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    url = f"sqlite:///{tmp_path / 'maskopt.db'}"
    args = [
        "search",
        "--data",
        str(tiny_data),
        "--space",
        str(space),
        "--trials",
        "3",
        "--folds",
        "2",
        "--storage",
        url,
        "--keep-models",
        "1",
        "--startup-trials",
        "1",
        "--seed",
        "0",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "best: trial" in result.output

    study = load_study(url, "maskopt")
    attrs = study.user_attrs
    assert attrs["data_fingerprint"] == tiny_set.fingerprint()
    assert (attrs["n_folds"], attrs["space"], attrs["epochs"], attrs["report"]) == (
        2,
        "tiny",
        2,
        "epoch",
    )
    assert attrs["n_images"] == len(tiny_set.records) and attrs["fold_seed"] == 0
    trials = study.get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete
    store = create_artifact_store(tmp_path / "maskopt.artifacts")  # the default, beside the file
    labels = tiny_set.labels(60)
    for t in complete:
        assert TRIAL_ATTRS <= set(t.user_attrs)
        assert json.loads(t.user_attrs["config"])["backbone"] == "resnet10t"
        assert len(t.user_attrs["fold_f1"]) == 2 and len(t.user_attrs["class_f1"]) == 18
        assert all(1 <= e <= 2 for e in t.user_attrs["fold_best_epoch"])
        assert t.user_attrs["epochs_run"] == 4  # 2 folds x 2 epochs
        # intermediate values: step = epoch, value = mean of the folds' best-so-far F1 (monotone)
        steps = sorted(t.intermediate_values)
        assert steps == [1, 2]
        assert t.intermediate_values[2] >= t.intermediate_values[1]
        # the OOF artifact: every image once, probabilities that give the trial's value
        path = tmp_path / f"oof{t.number}.npz"
        download_artifact(
            artifact_store=store, file_path=str(path), artifact_id=t.user_attrs["oof_artifact"]
        )
        oof = np.load(path)
        assert oof["probs"].shape == (len(labels), 18) and oof["probs"].dtype == np.float32
        np.testing.assert_array_equal(oof["labels"], labels)
        from maskopt.trainer.metrics import macro_f1

        assert macro_f1(labels, oof["probs"].argmax(1)) == pytest.approx(t.value)
    # --keep-models 1: only the best complete trial keeps its 2 fold models, loadable checkpoints
    best = max(complete, key=lambda t: t.value)
    for t in complete:
        assert len(t.user_attrs["model_artifacts"]) == (2 if t.number == best.number else 0)
    from maskopt.trainer.checkpoint import load_model

    model_path = tmp_path / "fold0.pt"
    download_artifact(
        artifact_store=store,
        file_path=str(model_path),
        artifact_id=best.user_attrs["model_artifacts"][0],
    )
    model, cfg = load_model(model_path)
    assert cfg.backbone == "resnet10t" and cfg.epochs == 2

    # Resuming with other folds is refused, naming what differs; `maskopt studies` lists it.
    three_folds = list(args)
    three_folds[three_folds.index("--folds") + 1] = "3"
    refused = CliRunner().invoke(app, three_folds)
    assert refused.exit_code == 1 and "--folds: study has 2, this search 3" in refused.output
    listed = CliRunner().invoke(app, ["studies", "--storage", url])
    assert (
        listed.exit_code == 0
        and "maskopt" in listed.output
        and f"{best.value:.4f}" in listed.output
    )
    optuna.delete_study(study_name="maskopt", storage=url)


@pytest.mark.slow
def test_wilcoxon_search_reports_one_step_per_fold(tiny_data, tmp_path):
    from maskopt.search import SearchOptions, run_search

    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE.replace("epochs: 2", "epochs: 1"))
    url = f"sqlite:///{tmp_path / 'w.db'}"
    opts = SearchOptions(
        data=tiny_data,
        space=str(space),
        trials=2,
        folds=3,
        storage=url,
        pruner="wilcoxon",
        seed=0,
        device="cpu",
        keep_models=0,
    )
    summary = run_search(opts, show_progress=False)
    assert summary.finished == 2
    study = load_study(url, "maskopt")
    assert study.user_attrs["report"] == "fold"
    first = study.get_trials()[0]
    assert first.state == TrialState.COMPLETE  # the first trial is the reference, never pruned
    assert sorted(first.intermediate_values) == [0, 1, 2]
    assert [round(v, 6) for _, v in sorted(first.intermediate_values.items())] == first.user_attrs[
        "fold_f1"
    ]
    assert first.user_attrs["model_artifacts"] == []  # --keep-models 0
