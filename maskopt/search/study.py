"""Create a study, or join one after checking it was made for the same data, folds and space.

Creation is atomic: Optuna's storage lets exactly one process create a study of a given
name (DuplicatedStudyError for the others, whatever the machine). Only that process records
the settings, FOLD_SEED last; any other waits (a bounded time) until the settings are all
there, then compares. So two machines starting one study with different --folds cannot both
pass: one creates it, the other refuses in one line.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from maskopt.errors import StudyError
from maskopt.search.options import SearchOptions
from maskopt.store.locations import tensorboard_dir_for
from maskopt.store.records import ARTIFACTS_DIR, FOLD_SEED, TENSORBOARD_DIR, settings_differ

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

# Seconds a joining process waits for the creator to record the settings (it takes
# milliseconds; a creator killed in between leaves a study without settings).
SETTINGS_WAIT_S = 20.0
POLL_S = 0.1


def study_settings(
    opts: SearchOptions, study_attrs: dict[str, Any], artifacts_dir: str | None
) -> dict[str, Any]:
    """Everything the study records at creation, FOLD_SEED last."""
    settings = dict(study_attrs)
    if artifacts_dir is not None:
        settings[ARTIFACTS_DIR] = str(artifacts_dir)  # a folder, or the s3:// URL as given
    # where `maskopt dashboard` on this machine finds the trials' TensorBoard events
    settings[TENSORBOARD_DIR] = str(tensorboard_dir_for(opts.storage, opts.tensorboard).resolve())
    # A fixed default (0), not a random one: workers on many machines must agree on the folds.
    settings[FOLD_SEED] = int(opts.seed or 0)
    return settings


def record_settings(study: optuna.Study, settings: dict[str, Any]) -> None:
    """Write the settings in their order (the creator only)."""
    for key, value in settings.items():
        study.set_user_attr(key, value)


def open_study(
    opts: SearchOptions,
    storage: BaseStorage,
    study_attrs: dict[str, Any],
    artifacts_dir: str | None = None,
    *,
    wait_s: float = SETTINGS_WAIT_S,
) -> tuple[optuna.Study, bool]:
    """The study `opts.study`, and whether this call created it: created with `study_attrs`
    (plus the artifact folder and the fold seed), or joined and checked; StudyError naming
    every setting that differs."""
    import optuna

    settings = study_settings(opts, study_attrs, artifacts_dir)
    try:
        study = optuna.create_study(study_name=opts.study, storage=storage, direction="maximize")
    except optuna.exceptions.DuplicatedStudyError:
        pass
    else:
        record_settings(study, settings)
        return study, True
    study = optuna.load_study(study_name=opts.study, storage=storage)
    have = _wait_for_settings(study, wait_s)
    differ = settings_differ(have, settings)
    if differ:
        raise StudyError(
            f"study {opts.study!r} was made with other settings, so its trials are not comparable "
            f"with this search ({'; '.join(differ)}). Use the same settings, or another --study."
        )
    return study, False


def _wait_for_settings(study: optuna.Study, wait_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + wait_s
    while True:
        attrs = study.user_attrs
        if FOLD_SEED in attrs:
            return attrs
        if time.monotonic() > deadline:
            raise StudyError(
                f"study {study.study_name!r} has no maskopt settings after {wait_s:.0f} s: it was "
                "not made by `maskopt search`, or the search creating it stopped before recording "
                "them. Use another --study (or remove this one: optuna delete-study)."
            )
        time.sleep(POLL_S)
