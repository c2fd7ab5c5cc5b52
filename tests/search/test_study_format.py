"""Storage helpers, study checks on resume and top-K fold-model bookkeeping, on real SQLite."""

from __future__ import annotations

import sqlite3

import optuna
import pytest
from optuna.artifacts import upload_artifact
from optuna.trial import TrialState

from maskopt.errors import ConfigError, StudyError
from maskopt.search.models import drop_pushed_out_models, enters_top_k, top_k_numbers
from maskopt.search.options import SearchOptions
from maskopt.search.study import open_study
from maskopt.studies.storage import (
    artifacts_dir_for,
    create_artifact_store,
    create_storage,
    load_study,
)


def test_sqlite_storage_is_wal_with_a_busy_timeout(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    storage = create_storage(url, heartbeat=True, interval=2)
    assert storage.get_heartbeat_interval() == 2
    optuna.create_study(storage=storage, study_name="s")
    con = sqlite3.connect(tmp_path / "m.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with storage.engine.connect() as c:  # the engine's own connections wait for the lock
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 30_000


@pytest.mark.parametrize(
    "url, match",
    [
        ("not a url", "not a SQLAlchemy URL"),
        ("redis://localhost", "unknown database 'redis'"),
        ("sqlite:////no/such/folder/m.db", "does not exist"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/test", "cannot open storage"),
    ],
)
def test_bad_storage_url_is_one_clear_line(url, match):
    with pytest.raises(StudyError, match=match) as err:
        create_storage(url)
    assert "\n" not in str(err.value)


def test_artifacts_dir_beside_sqlite_and_required_for_servers(tmp_path):
    assert (
        artifacts_dir_for(f"sqlite:///{tmp_path}/maskopt.db", None)
        == tmp_path / "maskopt.artifacts"
    )
    assert artifacts_dir_for("postgresql://h/db", tmp_path / "a") == tmp_path / "a"
    with pytest.raises(ConfigError, match="--artifacts is required"):
        artifacts_dir_for("postgresql://h/db", None)


def test_load_study_names_the_studies_present(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    optuna.create_study(storage=create_storage(url, heartbeat=False), study_name="alpha")
    assert load_study(url, "alpha").study_name == "alpha"
    with pytest.raises(StudyError, match="no study 'beta'.*alpha"):
        load_study(url, "beta")


def test_resume_with_other_folds_or_data_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    storage = create_storage(url, heartbeat=False)
    attrs = {
        "data_fingerprint": "abc",
        "n_folds": 5,
        "space": "cpu",
        "epochs": 4,
        "crop": "center",
        "report": "epoch",
        "n_images": 70,
    }
    study = open_study(SearchOptions(storage=url, seed=7), storage, attrs)
    assert study.user_attrs["fold_seed"] == 7 and study.user_attrs["n_folds"] == 5
    # the same settings resume; the fold seed stays the study's
    assert (
        open_study(SearchOptions(storage=url, seed=99), storage, attrs).user_attrs["fold_seed"] == 7
    )
    with pytest.raises(StudyError) as err:
        open_study(
            SearchOptions(storage=url), storage, dict(attrs, n_folds=3, data_fingerprint="xyz")
        )
    assert "--folds: study has 5, this search 3" in str(err.value)
    assert "data (files or labels differ)" in str(err.value)


def _complete(study, value, store, tmp_path, models=True):
    trial = study.ask()
    ids = []
    if models:
        for k in range(2):
            path = tmp_path / f"m{trial.number}_{k}.pt"
            path.write_bytes(b"weights")
            ids.append(
                upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)
            )
    trial.set_user_attr("model_artifacts", ids)
    study.tell(trial, value)
    return trial.number, ids


def test_top_k_keeps_the_best_models_and_empties_the_rest(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    storage = create_storage(url, heartbeat=False)
    store = create_artifact_store(tmp_path / "art")
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    assert enters_top_k(study, 0.1, 2) and not enters_top_k(study, 0.9, 0)
    made = {}
    for value in (0.5, 0.7):
        n, ids = _complete(study, value, store, tmp_path)
        made[n] = ids
    assert not enters_top_k(study, 0.4, 2) and enters_top_k(study, 0.6, 2)
    n, ids = _complete(study, 0.6, store, tmp_path)
    made[n] = ids
    assert top_k_numbers(study, 2) == [1, 2]
    assert drop_pushed_out_models(study, storage, store, 2) == [0]
    assert drop_pushed_out_models(study, storage, store, 2) == []  # idempotent

    fresh = load_study(url, "s")
    by_number = {t.number: t for t in fresh.get_trials(states=(TrialState.COMPLETE,))}
    assert by_number[0].user_attrs["model_artifacts"] == []
    for artifact_id in made[0]:
        assert not (tmp_path / "art" / artifact_id).exists()
    assert optuna.artifacts.get_all_artifact_meta(by_number[0], storage=storage) == []
    for n in (1, 2):
        assert by_number[n].user_attrs["model_artifacts"] == made[n]
        assert all((tmp_path / "art" / a).exists() for a in made[n])
        assert len(optuna.artifacts.get_all_artifact_meta(by_number[n], storage=storage)) == 2
