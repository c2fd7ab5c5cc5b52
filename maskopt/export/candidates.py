"""The export's candidates: a study's top trials with what was saved of them.

For each of the top K complete trials: its config, its out-of-fold (OOF) probabilities
(downloaded from the artifact store) and the ids of its fold models that are still in
the store. The data the export reads must be the data the study was searched on
(the fingerprint), or folds and OOF rows would not line up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from optuna.artifacts import download_artifact

from maskopt.data.labels import NUM_CLASSES
from maskopt.errors import StudyError
from maskopt.store.records import (
    FOLD_BEST_EPOCH,
    ModelStore,
    StudySettings,
    complete_trials,
    kept_models,
    read_trial,
)
from maskopt.trainer.config import config_from_dict
from maskopt.trainer.folds import create_folds
from maskopt.trainer.metrics import macro_f1

if TYPE_CHECKING:
    import optuna

    from maskopt.data.layout import TrainSet
    from maskopt.trainer.config import TrainConfig


@dataclass(frozen=True)
class Candidate:
    """A complete trial with what the export needs from the study."""

    number: int  # trial number
    value: float  # the trial's objective value (OOF macro F1 as the search reported it)
    config: TrainConfig
    oof: np.ndarray  # (N, 18) float32 OOF probabilities in TrainSet order
    oof_f1: float  # macro F1 of `oof`
    fold_models: tuple[str, ...]  # artifact ids, one per fold (empty: pushed out of the top K)
    fold_best_epoch: tuple[int, ...]  # each fold's best epoch (1-based)


def download(store: ModelStore, artifact_id: str, path: Path) -> Path:
    """Copy an artifact to `path` (StudyError in one line when the store cannot give it)."""

    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # optuna refuses to overwrite
    try:
        download_artifact(artifact_store=store, file_path=str(path), artifact_id=artifact_id)
    except Exception as err:  # the store's own errors vary (missing file, permissions)
        raise StudyError(
            f"cannot read artifact {artifact_id} from the artifact store: {err}"
        ) from None
    return path


def check_data(name: str, settings: StudySettings, data: TrainSet, data_dir: Path) -> None:
    """StudyError unless `data` is the data the study `name` was searched on."""
    want = settings.data_fingerprint
    have = data.fingerprint()
    if have != want:
        diffs = [f"fingerprint {have} here, {want} in the study"]
        if settings.n_images is not None and settings.n_images != len(data):
            diffs.append(f"{len(data)} images here, {settings.n_images} in the study")
        raise StudyError(
            f"data {data_dir} is not the data study {name!r} was searched on ("
            + "; ".join(diffs)
            + "): folds and OOF predictions would not line up. Pass the study's --data."
        )


def load_candidates(
    study: optuna.Study,
    store: ModelStore,
    data: TrainSet,
    work: Path,
    *,
    need_models: bool = False,
) -> tuple[list[Candidate], list[str]]:
    """Every complete trial with saved OOF predictions, best first (the export's pool: its OOF
    is all that choosing needs, and retraining needs only its config); with `need_models`
    (--no-retrain) only those whose fold models are kept. Notes on the ones left out."""
    labels = data.labels()
    notes: list[str] = []
    out: list[Candidate] = []
    without_models = []
    for t in complete_trials(study):
        record = read_trial(t)
        if not record.oof_artifact or record.config is None:
            notes.append(f"trial {t.number} left out: no saved OOF predictions or config.")
            continue
        fold_models = kept_models(store, record)
        if need_models and not fold_models:
            without_models.append(t.number)
            continue
        with np.load(download(store, record.oof_artifact, work / f"oof-{t.number}.npz")) as z:
            probs, oof_labels = z["probs"].astype(np.float32), z["labels"]
        if probs.shape != (len(data), NUM_CLASSES) or not np.array_equal(oof_labels, labels):
            raise StudyError(
                f"trial {t.number}'s OOF predictions do not match the data: shape {probs.shape}, "
                f"expected ({len(data)}, {NUM_CLASSES}) with the same labels in TrainSet order."
            )
        out.append(
            Candidate(
                number=t.number,
                value=float(t.value or 0.0),
                config=config_from_dict(record.config),
                oof=probs,
                oof_f1=macro_f1(labels, probs.argmax(1)),
                fold_models=fold_models,
                fold_best_epoch=tuple(int(e) for e in t.user_attrs.get(FOLD_BEST_EPOCH, [])),
            )
        )
    if without_models:
        notes.append(
            f"{len(without_models)} trial(s) without kept fold models left out of the choice "
            "(--no-retrain averages fold models; export with --retrain to consider them)."
        )
    if not out:
        raise StudyError(
            f"study {study.study_name!r} has no complete trial with saved OOF predictions; "
            "run `maskopt search` first (or longer)."
        )
    return out, notes


def study_folds(settings: StudySettings, data: TrainSet) -> list[tuple[np.ndarray, np.ndarray]]:
    """The search's folds: the same fold seed on the same people gives the same folds."""
    return create_folds(data.strata(), data.groups(), settings.n_folds, settings.fold_seed)


def fold_checkpoints(c: Candidate, store: ModelStore, work: Path) -> list[Path]:
    """Download a candidate's fold models, in fold order."""
    return [
        download(store, art, work / f"trial-{c.number}-fold-{k}.pt")
        for k, art in enumerate(c.fold_models)
    ]
