"""The studies in a storage: trials by state, best value, last activity (`maskopt studies`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna

from maskopt.store.records import (
    StudySettings,
    best_trial,
    count_states,
)
from maskopt.store.storage import create_storage

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class StudyInfo:
    name: str
    counts: dict[str, int]  # trials by state name (COMPLETE, PRUNED, FAIL, RUNNING, WAITING)
    best_value: float | None
    best_trial: int | None
    last_activity: dt.datetime | None  # the latest start or end of any trial
    space: str | None
    n_folds: int | None


def list_studies(url: str) -> list[StudyInfo]:
    """Every study in `url`, with its trials by state, best value and last activity."""

    storage = create_storage(url, heartbeat=False, must_exist=True)
    out = []
    for frozen in storage.get_all_studies():
        study = optuna.load_study(study_name=frozen.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        times = [w for t in trials for w in (t.datetime_start, t.datetime_complete) if w]
        best = best_trial(trials)
        settings = StudySettings.from_attrs(frozen.user_attrs)
        out.append(
            StudyInfo(
                frozen.study_name,
                count_states(trials),
                best.value if best else None,
                best.number if best else None,
                max(times, default=None),
                None if settings is None else settings.space,
                None if settings is None else settings.n_folds,
            )
        )
    storage.remove_session()
    return out
