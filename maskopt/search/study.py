"""Create a study, or join one after checking it was made for the same data, folds and space.

Creation is atomic: Optuna's storage lets exactly one process create a study of a given
name (DuplicatedStudyError for the others, whatever the machine). Only that process records
the settings, FOLD_SEED last; any other waits (a bounded time) until the settings are all
there, then compares. So two machines starting one study with different --folds cannot both
pass: one creates it, the other refuses in one line.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import optuna

from maskopt.errors import StudyError
from maskopt.search.options import SearchOptions
from maskopt.store.locations import tensorboard_dir_for
from maskopt.store.records import StudySettings, record_settings

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

# Seconds a joining process waits for the creator to record the settings (it takes
# milliseconds; a creator killed in between leaves a study without settings).
SETTINGS_WAIT_S = 20.0
POLL_S = 0.1


def study_settings(
    opts: SearchOptions, settings: StudySettings, artifacts_dir: str | None
) -> StudySettings:
    """Everything the study records at creation: the objective's settings, plus where this
    search keeps artifacts and TensorBoard runs, and the fold seed."""
    return dataclasses.replace(
        settings,
        # a folder, or the s3:// URL as given
        artifacts_dir=None if artifacts_dir is None else str(artifacts_dir),
        # where `maskopt dashboard` on this machine finds the trials' TensorBoard events
        tensorboard_dir=str(tensorboard_dir_for(opts.storage, opts.tensorboard).resolve()),
        # a fixed default (0), not a random one: workers on many machines must agree on folds
        fold_seed=int(opts.seed or 0),
    )


def open_study(
    opts: SearchOptions,
    storage: BaseStorage,
    settings: StudySettings,
    artifacts_dir: str | None = None,
    *,
    wait_s: float = SETTINGS_WAIT_S,
) -> tuple[optuna.Study, bool]:
    """The study `opts.study`, and whether this call created it: created with `settings`
    (plus the artifact folder and the fold seed), or joined and checked; StudyError naming
    every setting that differs."""
    settings = study_settings(opts, settings, artifacts_dir)
    try:
        study = optuna.create_study(study_name=opts.study, storage=storage, direction="maximize")
    except optuna.exceptions.DuplicatedStudyError:
        pass
    else:
        record_settings(study, settings)
        return study, True
    study = optuna.load_study(study_name=opts.study, storage=storage)
    have = _wait_for_settings(study, wait_s)
    differ = have.differ(settings)
    if differ:
        raise StudyError(
            f"study {opts.study!r} was made with other settings, so its trials are not comparable "
            f"with this search ({'; '.join(differ)}). Use the same settings, or another --study."
        )
    return study, False


def _wait_for_settings(study: optuna.Study, wait_s: float) -> StudySettings:
    deadline = time.monotonic() + wait_s
    while True:
        have = StudySettings.from_attrs(study.user_attrs)
        if have is not None:
            return have
        if time.monotonic() > deadline:
            raise StudyError(
                f"study {study.study_name!r} has no maskopt settings after {wait_s:.0f} s: it was "
                "not made by `maskopt search`, or the search creating it stopped before recording "
                "them. Use another --study (or remove this one: optuna delete-study)."
            )
        time.sleep(POLL_S)
