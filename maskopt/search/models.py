"""Fold models of the study's top K trials: files in the artifact store, listed by their trial.

They are not Optuna artifacts: Optuna has no public way to take an artifact back from a
finished trial, and the models of a trial pushed out of the top K must go. So maskopt
chooses their ids, and a trial lists them (records.MODEL_ARTIFACTS) while it is RUNNING,
before it writes the first file; whether they exist is answered by the store
(records.kept_models). No file is ever without a trial that lists it, whatever the moment a
worker dies: a trial that dies while writing stays RUNNING until it is failed (at once on its
own host, by heartbeat elsewhere), and the files of FAIL trials are swept like those of
pushed-out ones.

A trial writes its models only if its value enters the top K of the study's COMPLETE trials,
and after each trial every worker sweeps. That is safe with many workers racing: a trial
outside the top K stays outside (values never change and the top K only gets better), and
removing a file twice is harmless.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from optuna.artifacts.exceptions import ArtifactNotFound

from maskopt.store.records import MODEL_ARTIFACTS, ModelStore, read_trials, top_k_numbers

if TYPE_CHECKING:
    import optuna


def model_ids(number: int, n_folds: int) -> list[str]:
    """Fresh ids for trial `number`'s fold models: flat names (a file store writes no folders),
    unique over studies sharing one store, readable in a listing."""
    tag = uuid.uuid4().hex[:12]
    return [f"maskopt-model-{tag}-trial{number}-fold{k}.pt" for k in range(n_folds)]


def write_fold_models(
    trial: optuna.Trial, store: ModelStore, checkpoints: Sequence[Path]
) -> list[str]:
    """List the ids on the running trial, then write each checkpoint file under its id."""
    ids = model_ids(trial.number, len(checkpoints))
    trial.set_user_attr(MODEL_ARTIFACTS, ids)  # first: a file is never without its trial
    for artifact_id, path in zip(ids, checkpoints, strict=True):
        with open(path, "rb") as f:
            store.write(artifact_id, f)
    return ids


def remove_models(store: ModelStore, ids: Sequence[str]) -> None:

    for artifact_id in ids:
        try:
            store.remove(artifact_id)
        except ArtifactNotFound:
            pass  # another worker removed it first, or it was never written


class Sweeper:
    """Removes the listed fold models of FAIL trials and of COMPLETE trials outside the top K.
    Each worker keeps one: a trial it has swept is not looked at again."""

    def __init__(self, store: ModelStore, keep: int) -> None:
        self.store = store
        self.keep = keep
        self.swept: set[int] = set()

    def __call__(self, study: optuna.Study) -> list[int]:
        """Sweep now; returns the numbers of the trials swept."""
        trials = study.get_trials(deepcopy=False)
        top = set(top_k_numbers(trials, self.keep))
        done = []
        for r in read_trials(trials):
            if r.number in self.swept or not r.model_artifacts:
                continue
            if r.state == "FAIL" or (r.state == "COMPLETE" and r.number not in top):
                remove_models(self.store, r.model_artifacts)
                self.swept.add(r.number)
                done.append(r.number)
        return done
