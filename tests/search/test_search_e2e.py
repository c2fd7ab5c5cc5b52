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
from maskopt.store import records as r
from maskopt.store.locations import ARTIFACTS_MARKER, create_artifact_store
from maskopt.store.storage import load_study

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

# what every COMPLETE trial of the k-fold objective carries (the fold models only in the top K)
TRIAL_ATTRS = {
    r.WORKER,
    r.CONFIG,
    r.FOLD_F1,
    r.FOLD_BEST_EPOCH,
    r.CLASS_F1,
    r.EPOCHS_RUN,
    r.IMAGES_PER_S,
    r.AUGMENT_PLACEMENT,
    r.DURATION_S,
    r.OOF_ARTIFACT,
}


def check_every_attribute_reads_through_the_records(study, store) -> None:
    """Each attribute the search wrote is a records key, and its record carries the value."""
    assert set(study.user_attrs) <= set(r.STUDY_KEYS), set(study.user_attrs) - set(r.STUDY_KEYS)
    for t in study.get_trials():
        assert set(t.user_attrs) <= set(r.TRIAL_KEYS), set(t.user_attrs) - set(r.TRIAL_KEYS)
        rec = r.read_trial(t)
        a = t.user_attrs
        assert (rec.number, rec.state, rec.params) == (t.number, t.state.name, t.params)
        assert rec.config == json.loads(a[r.CONFIG])
        assert rec.worker == r.Worker(**a[r.WORKER]) and rec.worker.pid > 0
        assert list(rec.fold_f1) == a[r.FOLD_F1] and rec.epochs_run == a[r.EPOCHS_RUN]
        assert rec.duration_s == a[r.DURATION_S]
        assert rec.augment_placement == a.get(r.AUGMENT_PLACEMENT)
        if t.state == TrialState.COMPLETE:
            assert rec.value == t.value
            assert list(rec.fold_best_epoch) == a[r.FOLD_BEST_EPOCH]
            assert list(rec.class_f1) == a[r.CLASS_F1] and rec.images_per_s == a[r.IMAGES_PER_S]
            assert rec.oof_artifact == a[r.OOF_ARTIFACT]
        assert list(rec.model_artifacts) == a.get(r.MODEL_ARTIFACTS, [])
        assert r.kept_models(store, rec) in ((), rec.model_artifacts)


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
    assert attrs[r.DATA_FINGERPRINT] == tiny_set.fingerprint()
    assert (attrs[r.N_FOLDS], attrs[r.SPACE], attrs[r.EPOCHS], attrs[r.REPORT]) == (
        2,
        "tiny",
        2,
        "epoch",
    )
    assert attrs[r.N_IMAGES] == len(tiny_set.records) and attrs[r.FOLD_SEED] == 0
    # the study remembers its data (for `best --export`)
    assert attrs[r.DATA_DIR] == str(tiny_data.resolve()) and attrs[r.SKIP_BAD] is False
    trials = study.get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete
    store = create_artifact_store(tmp_path / "maskopt.artifacts")  # the default, beside the file
    labels = tiny_set.labels(60)
    for t in complete:
        assert TRIAL_ATTRS <= set(t.user_attrs)
        rec = r.read_trial(t)
        assert rec.config["backbone"] == "resnet10t"
        assert len(rec.fold_f1) == 2 and len(rec.class_f1) == 18
        assert all(1 <= e <= 2 for e in rec.fold_best_epoch)
        assert rec.epochs_run == 4  # 2 folds x 2 epochs
        # intermediate values: step = epoch, value = mean of the folds' best-so-far F1 (monotone)
        steps = sorted(t.intermediate_values)
        assert steps == [1, 2]
        assert t.intermediate_values[2] >= t.intermediate_values[1]
        # the OOF artifact: every image once, probabilities that give the trial's value
        path = tmp_path / f"oof{t.number}.npz"
        download_artifact(
            artifact_store=store, file_path=str(path), artifact_id=t.user_attrs[r.OOF_ARTIFACT]
        )
        oof = np.load(path)
        assert oof["probs"].shape == (len(labels), 18) and oof["probs"].dtype == np.float32
        np.testing.assert_array_equal(oof["labels"], labels)
        from maskopt.trainer.metrics import macro_f1

        assert macro_f1(labels, oof["probs"].argmax(1)) == pytest.approx(t.value)
    check_every_attribute_reads_through_the_records(study, store)
    # --keep-models 1: only the best complete trial keeps its 2 fold models, loadable checkpoints;
    # the store holds them and the OOF files, nothing else
    best = r.best_trial(study)
    kept = {t.number: r.kept_models(store, r.read_trial(t)) for t in complete}
    assert {n: len(ids) for n, ids in kept.items()} == {
        t.number: 2 if t.number == best.number else 0 for t in complete
    }
    oofs = {t.user_attrs[r.OOF_ARTIFACT] for t in complete}
    assert {p.name for p in (tmp_path / "maskopt.artifacts").iterdir()} == {
        *oofs,
        *kept[best.number],
        ARTIFACTS_MARKER,  # the folder is maskopt's: a later search may add to it
    }
    from maskopt.trainer.checkpoint import load_model

    model_path = tmp_path / "fold0.pt"
    download_artifact(
        artifact_store=store, file_path=str(model_path), artifact_id=kept[best.number][0]
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
    from maskopt.search.options import SearchOptions
    from maskopt.search.runner import run_search

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
    assert study.user_attrs[r.REPORT] == "fold"
    first = study.get_trials()[0]
    assert first.state == TrialState.COMPLETE  # the first trial is the reference, never pruned
    assert sorted(first.intermediate_values) == [0, 1, 2]
    steps = [round(v, 6) for _, v in sorted(first.intermediate_values.items())]
    assert tuple(steps) == r.read_trial(first).fold_f1
    assert r.read_trial(first).model_artifacts == ()  # --keep-models 0
