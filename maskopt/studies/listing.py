"""Looking at studies: the list of studies in a storage, and optuna-dashboard on it."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from maskopt.errors import ConfigError
from maskopt.studies.records import N_FOLDS, SPACE, best_trial, count_states
from maskopt.studies.storage import artifacts_dir_for, create_artifact_store, create_storage


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
    import optuna

    storage = create_storage(url, heartbeat=False, must_exist=True)
    out = []
    for frozen in storage.get_all_studies():
        study = optuna.load_study(study_name=frozen.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        times = [w for t in trials for w in (t.datetime_start, t.datetime_complete) if w]
        best = best_trial(trials)
        attrs = frozen.user_attrs
        out.append(
            StudyInfo(
                frozen.study_name,
                count_states(trials),
                best.value if best else None,
                best.number if best else None,
                max(times, default=None),
                attrs.get(SPACE),
                attrs.get(N_FOLDS),
            )
        )
    storage.remove_session()
    return out


def dashboard_url(host: str, port: int) -> str:
    return f"http://{'127.0.0.1' if host in ('', '0.0.0.0') else host}:{port}/"


def serve_dashboard(url: str, artifacts: str | os.PathLike | None, host: str, port: int) -> None:
    """Run optuna-dashboard on the storage (and the artifact folder, when there is one); blocks."""
    from optuna_dashboard import run_server

    storage = create_storage(url, heartbeat=False, must_exist=True)
    try:
        directory: Path | None = artifacts_dir_for(url, artifacts)
    except ConfigError:  # a server URL without --artifacts: the dashboard runs without artifacts
        directory = None
    store = create_artifact_store(directory) if directory is not None else None
    run_server(storage, host=host, port=port, artifact_store=store)
