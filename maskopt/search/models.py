"""Fold models of the study's top K trials, kept as artifacts; others' are deleted.

A trial uploads its fold models only when its value enters the current top K of the
study's COMPLETE trials. After each trial, every worker deletes the models of COMPLETE
trials outside the top K. That decision is safe with many workers racing: a trial that is
outside the top K stays outside (values never change and the top K only gets better), and
deleting twice is harmless (a missing artifact is skipped).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    from optuna.artifacts import FileSystemArtifactStore
    from optuna.storages import RDBStorage

ARTIFACTS_ATTR_PREFIX = "artifacts:"  # optuna.artifacts keeps each artifact's metadata here


def enters_top_k(study: optuna.Study, value: float, k: int) -> bool:
    """Whether `value` would be among the k best COMPLETE values of `study` (maximised)."""
    from optuna.trial import TrialState

    if k <= 0:
        return False
    values = sorted(
        (
            t.value
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None
        ),
        reverse=True,
    )
    return len(values) < k or value > values[k - 1]


def top_k_numbers(study: optuna.Study, k: int) -> list[int]:
    """Trial numbers of the k best COMPLETE trials (ties: the earlier trial first)."""
    from optuna.trial import TrialState

    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None
    ]
    done.sort(key=lambda t: (-(t.value or 0.0), t.number))
    return [t.number for t in done[:k]]


def drop_pushed_out_models(
    study: optuna.Study, storage: RDBStorage, store: FileSystemArtifactStore, k: int
) -> list[int]:
    """Delete fold models of COMPLETE trials outside the top K; returns their trial numbers."""
    from optuna.artifacts.exceptions import ArtifactNotFound
    from optuna.trial import TrialState

    keep = set(top_k_numbers(study, k))
    dropped = []
    # Read through the RDB storage itself, not the study's cache: the cache keeps a finished
    # trial's attributes as they were when it finished, before any worker emptied them.
    for t in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.COMPLETE,)):
        ids = t.user_attrs.get("model_artifacts") or []
        if t.number in keep or not ids:
            continue
        for artifact_id in ids:
            try:
                store.remove(artifact_id)
            except ArtifactNotFound:
                pass  # another worker removed it first
        _overwrite_finished_trial_attrs(storage, t._trial_id, ids)
        dropped.append(t.number)
    return dropped


def _overwrite_finished_trial_attrs(
    storage: RDBStorage, trial_id: int, artifact_ids: list[str]
) -> None:
    """Empty `model_artifacts` and drop the removed artifacts' metadata of a finished trial.

    Optuna's storage API refuses to change a finished trial (UpdateFinishedTrialError), so
    these rows are changed in the RDB schema directly. The metadata rows are deleted rather
    than nulled (as optuna-dashboard's own "delete" does) because
    optuna.artifacts.get_all_artifact_meta cannot read a null one.
    """
    import sqlalchemy as sa

    with storage.engine.begin() as con:
        con.execute(
            sa.text(
                "UPDATE trial_user_attributes SET value_json = :v "
                "WHERE trial_id = :t AND key = 'model_artifacts'"
            ),
            {"v": json.dumps([]), "t": trial_id},
        )
        for artifact_id in artifact_ids:
            con.execute(
                sa.text("DELETE FROM trial_system_attributes WHERE trial_id = :t AND key = :k"),
                {"t": trial_id, "k": ARTIFACTS_ATTR_PREFIX + artifact_id},
            )
