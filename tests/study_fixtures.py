"""A finished study in the format `maskopt search` writes, built here with the real trainer.

Real SQLite storage, real artifact store, real tiny models trained on the tiny set: the
OOF `.npz` and fold checkpoints are what the search uploads (docs/ARCHITECTURE.md), so the
export reads exactly what it reads after a real search.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

N_FOLDS = 2


@dataclass(frozen=True)
class FinishedStudy:
    url: str
    name: str
    artifacts: Path
    data: Path
    numbers: list[int]  # trial numbers of the complete trials, in the order they were run


def _configs():
    from maskopt.trainer.config import TrainConfig

    # augment_on auto as the `default` space samples it: the export's retraining resolves it
    base = dict(image_size=32, epochs=2, batch_size=32, augment=0, augment_on="auto", seed=0)
    return [
        TrainConfig(backbone="test_convnext", lr=3e-3, **base),
        TrainConfig(backbone="test_resnet", lr=1e-2, **base),
        TrainConfig(backbone="test_convnext", lr=1e-2, **{**base, "seed": 1}),
    ]


def complementary_oof(trial: int, labels: np.ndarray) -> np.ndarray:
    """OOF probabilities where only a 2:1 mix of trials 0 and 1 gets every image right.

    X rows: trial 0 sure and right, trial 1 unsure and wrong. Y rows: 0 unsure and wrong,
    1 sure and right. Z rows: 0 fairly sure and right, 1 sure and wrong. Trial 2 is sure and
    wrong everywhere: any vote of it only hurts.
    """
    n, c = len(labels), 18
    kind = np.array(["X"] * 8 + ["Y"] * 7 + ["Z"] * 5)[np.arange(n) % 20]
    spec = [
        {"X": {0: 0.9}, "Y": {0: 0.25, 1: 0.35}, "Z": {0: 0.5}},
        {"X": {0: 0.15, 1: 0.4}, "Y": {0: 0.9}, "Z": {2: 0.7}},
        {"X": {3: 0.8}, "Y": {3: 0.8}, "Z": {3: 0.8}},
    ][trial]
    p = np.zeros((n, c))
    rows = np.arange(n)
    for k, probs in spec.items():
        sel = kind == k
        p[sel] = (1 - sum(probs.values())) / (c - len(probs))
        for shift, v in probs.items():  # shift 0: the true class, 1 and 2: two wrong ones
            p[rows[sel], ((labels + shift) % c)[sel]] = v
    return p.astype(np.float32)


def build_study(
    data_dir: Path,
    folder: Path,
    *,
    keep_models: tuple[bool, ...] = (True, True, True),
    oof_fn: Callable[[int, np.ndarray], np.ndarray] | None = None,
) -> FinishedStudy:
    """Three complete trials and one pruned. With `oof_fn` the trials are not trained: their
    OOF probabilities come from `oof_fn(i, labels)` and their fold models are untrained (real
    checkpoints of real tiny models, fast to make)."""
    import optuna
    from optuna.artifacts import upload_artifact
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from maskopt.data.layout import read_train
    from maskopt.store.locations import artifacts_dir_for, create_artifact_store
    from maskopt.store.storage import create_storage
    from maskopt.trainer.checkpoint import save_checkpoint
    from maskopt.trainer.config import config_to_dict
    from maskopt.trainer.folds import create_folds
    from maskopt.trainer.loop import FitResult, fit
    from maskopt.trainer.metrics import compute_metrics
    from maskopt.trainer.models import create_model

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'maskopt.db'}"
    storage = create_storage(url, heartbeat=False)
    art_dir = artifacts_dir_for(url, None)
    store = create_artifact_store(art_dir)
    ds = read_train(data_dir, progress=False)
    study = optuna.create_study(study_name="maskopt", storage=storage, direction="maximize")
    for key, value in {
        "data_fingerprint": ds.fingerprint(),
        "n_folds": N_FOLDS,
        "fold_seed": 0,
        "space": "test",
        "epochs": 2,
        "crop": "center",
        "n_images": len(ds),
        "report": "epoch",
        "artifacts_dir": str(art_dir),
        "data_dir": str(Path(data_dir).resolve()),
        "skip_bad": False,
    }.items():
        study.set_user_attr(key, value)
    folds = create_folds(ds.strata(), ds.groups(), N_FOLDS, 0)
    labels = ds.labels()
    dists = {
        "backbone": CategoricalDistribution(["test_convnext", "test_resnet"]),
        "lr": FloatDistribution(1e-4, 1e-1, log=True),
    }
    numbers = []
    for cfg, keep in zip(_configs(), keep_models, strict=True):
        study.enqueue_trial({"backbone": cfg.backbone, "lr": cfg.lr})
        trial = study.ask(fixed_distributions=dists)
        trial.set_user_attr("config", json.dumps(config_to_dict(cfg)))
        oof = np.zeros((len(ds), 18), np.float32)
        results = []
        for k, fold in enumerate(folds):
            if oof_fn is None:
                r = fit(cfg, ds, fold=fold, device="cpu")
                oof[fold[1]] = r.val_probs
                for h in r.history:
                    trial.report(h["val_f1"], k * cfg.epochs + h["epoch"])
            else:
                r = FitResult(
                    best_f1=0.0,
                    best_epoch=1,
                    epochs_run=1,
                    history=[],
                    val_index=fold[1],
                    val_probs=None,
                    state_dict=create_model(cfg).state_dict(),
                    config=cfg,
                    images_per_s=1.0,
                    seconds=0.0,
                )
            results.append(r)
        if oof_fn is not None:
            oof = oof_fn(len(numbers), labels)
        metrics = compute_metrics(labels, oof)
        npz = folder / f"oof{trial.number}.npz"
        np.savez_compressed(npz, probs=oof, labels=labels)
        trial.set_user_attr(
            "oof_artifact",
            upload_artifact(artifact_store=store, file_path=str(npz), study_or_trial=trial),
        )
        models = []
        if keep:
            for k, r in enumerate(results):
                ck = save_checkpoint(
                    folder / f"m{trial.number}_{k}.pt",
                    r.state_dict,
                    cfg,
                    fold=k,
                    trial=trial.number,
                )
                models.append(
                    upload_artifact(artifact_store=store, file_path=str(ck), study_or_trial=trial)
                )
        trial.set_user_attr("model_artifacts", models)
        trial.set_user_attr("fold_f1", [float(r.best_f1) for r in results])
        trial.set_user_attr("fold_best_epoch", [int(r.best_epoch) for r in results])
        trial.set_user_attr("class_f1", metrics["class_f1"])
        trial.set_user_attr("epochs_run", sum(r.epochs_run for r in results))
        trial.set_user_attr("images_per_s", float(np.mean([r.images_per_s for r in results])))
        trial.set_user_attr("duration_s", 1.0)
        study.tell(trial, metrics["macro_f1"])
        numbers.append(trial.number)
    pruned = study.ask(fixed_distributions=dists)
    pruned.report(0.0, 1)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    return FinishedStudy(url=url, name="maskopt", artifacts=art_dir, data=data_dir, numbers=numbers)


@pytest.fixture(scope="session")
def finished_study(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> FinishedStudy:
    """Three complete trials (2 folds, 2 epochs, tiny models), models kept, and one pruned."""
    return build_study(tiny_data, tmp_path_factory.mktemp("study"))


@pytest.fixture(scope="session")
def complementary_study(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> FinishedStudy:
    """Three trials whose OOF predictions only a 2:1 ensemble of trials 0 and 1 gets right."""
    return build_study(tiny_data, tmp_path_factory.mktemp("comp"), oof_fn=complementary_oof)
