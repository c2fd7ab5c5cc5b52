"""Storage helpers, study checks on resume, the fold-model store and the records, on real SQLite."""

from __future__ import annotations

import dataclasses
import sqlite3
import time

import optuna
import pytest
from optuna.trial import TrialState

from maskopt.errors import ConfigError, StudyError
from maskopt.search.models import Sweeper, model_ids, write_fold_models
from maskopt.search.options import SearchOptions
from maskopt.search.study import open_study
from maskopt.store.locations import ARTIFACTS_MARKER, artifacts_dir_for, create_artifact_store
from maskopt.store.records import (
    FAIL_REASON,
    FOLD_F1,
    FOLD_SEED,
    MODEL_ARTIFACTS,
    N_FOLDS,
    StudySettings,
    best_trial,
    complete_trials,
    count_finished,
    count_states,
    enters_top_k,
    kept_models,
    read_trials,
    top_k_numbers,
    varying_params,
)
from maskopt.store.storage import create_storage, load_study
from maskopt.studies.dashboard import dashboard_artifacts


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
    assert artifacts_dir_for("postgresql://h/db", str(tmp_path / "a")) == tmp_path / "a"
    # an S3 URL stays the str it came as (Path() would make s3:/b of s3://b)
    assert artifacts_dir_for("postgresql://h/db", "s3://b/runs") == "s3://b/runs"
    with pytest.raises(ConfigError, match="--artifacts is required"):
        artifacts_dir_for("postgresql://h/db", None)


def test_the_dashboard_finds_the_artifacts_without_being_told(tmp_path):
    url, server = f"sqlite:///{tmp_path}/m.db", "postgresql://h/db"
    assert dashboard_artifacts(url, "s3://b/p", []) == "s3://b/p"  # as given
    assert dashboard_artifacts(url, None, []) is None  # no folder beside the file yet
    (tmp_path / "m.artifacts").mkdir()
    assert dashboard_artifacts(url, None, ["s3://b/p"]) == tmp_path / "m.artifacts"
    # with a server URL: the one location the studies recorded that is usable here
    assert dashboard_artifacts(server, None, ["s3://b/p", "s3://b/p"]) == "s3://b/p"
    assert dashboard_artifacts(server, None, [str(tmp_path / "m.artifacts")]) == (
        tmp_path / "m.artifacts"
    )
    assert dashboard_artifacts(server, None, ["s3://b/p", "s3://b/q"]) is None  # which one?
    assert dashboard_artifacts(server, None, [str(tmp_path / "elsewhere")]) is None


def test_load_study_names_the_studies_present(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    optuna.create_study(storage=create_storage(url, heartbeat=False), study_name="alpha")
    assert load_study(url, "alpha").study_name == "alpha"
    with pytest.raises(StudyError, match="no study 'beta'.*alpha"):
        load_study(url, "beta")


def test_resume_with_other_folds_or_data_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    storage = create_storage(url, heartbeat=False)
    attrs = StudySettings(
        data_fingerprint="abc", n_folds=5, space="cpu", epochs=4, crop="center", n_images=70
    )
    study, created = open_study(SearchOptions(storage=url, seed=7), storage, attrs)
    assert created and study.user_attrs[FOLD_SEED] == 7 and study.user_attrs[N_FOLDS] == 5
    # the same settings resume; the fold seed stays the study's
    again, created = open_study(SearchOptions(storage=url, seed=99), storage, attrs)
    assert not created and again.user_attrs[FOLD_SEED] == 7
    with pytest.raises(StudyError) as err:
        open_study(
            SearchOptions(storage=url),
            storage,
            dataclasses.replace(attrs, n_folds=3, data_fingerprint="x"),
        )
    assert "--folds: study has 5, this search 3" in str(err.value)
    assert "data (files or labels differ)" in str(err.value)


def test_a_study_without_settings_is_refused_after_the_wait(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    storage = create_storage(url, heartbeat=False)
    optuna.create_study(storage=storage, study_name="foreign", direction="maximize")
    attrs = StudySettings(data_fingerprint="abc", n_folds=5, space="cpu", epochs=4)
    started = time.monotonic()
    with pytest.raises(StudyError, match="has no maskopt settings after 1 s"):
        open_study(SearchOptions(storage=url, study="foreign"), storage, attrs, wait_s=1)
    assert time.monotonic() - started < 10


def _complete(study, value, store, tmp_path, models=True):
    """A COMPLETE trial whose fold models (2 files) are written the way the objective does."""
    trial = study.ask()
    ids = []
    if models:
        paths = []
        for k in range(2):
            paths.append(tmp_path / f"m{trial.number}_{k}.pt")
            paths[-1].write_bytes(b"weights")
        ids = write_fold_models(trial, store, paths)
    study.tell(trial, value)
    return trial.number, ids


def test_fold_models_are_listed_and_the_pushed_out_ones_swept(tmp_path):
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
    # a trial that died while writing its models: RUNNING, its ids listed, one file written
    dying = study.ask()
    half = tmp_path / "half.pt"
    half.write_bytes(b"wei")
    dying_ids = model_ids(dying.number, 2)
    dying.set_user_attr(MODEL_ARTIFACTS, dying_ids)
    with open(half, "rb") as f:
        store.write(dying_ids[0], f)
    assert top_k_numbers(study, 2) == [1, 2]

    sweep = Sweeper(store, keep=2)
    assert sweep(study) == [0]  # the pushed-out trial; the RUNNING one is left alone
    assert sweep(study) == []  # idempotent
    study.tell(dying, state=TrialState.FAIL)  # as a reaper or the heartbeat would
    assert sweep(study) == [dying.number]

    files = {p.name for p in (tmp_path / "art").iterdir()} - {ARTIFACTS_MARKER}
    assert files == {*made[1], *made[2]}  # nothing else: no orphan, nothing pushed out
    records = {r.number: r for r in read_trials(load_study(url, "s"))}
    assert records[0].model_artifacts == tuple(made[0])  # still listed: a finished trial keeps it
    assert kept_models(store, records[0]) == ()  # the store says they are gone
    assert kept_models(store, records[dying.number]) == ()
    for n in (1, 2):
        assert kept_models(store, records[n]) == tuple(made[n])
    # fold models are not Optuna artifacts: the dashboard lists none of them
    for t in load_study(url, "s").get_trials():
        assert optuna.artifacts.get_all_artifact_meta(t, storage=storage) == []


def test_records_read_every_attribute_and_answer_the_queries(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    study = optuna.create_study(
        storage=create_storage(url, heartbeat=False), study_name="s", direction="maximize"
    )
    for value in (0.4, 0.8, 0.8):
        t = study.ask()
        t.suggest_float("lr", 1e-3, 1e-1, log=True)
        t.suggest_categorical("loss", ["focal"])  # the same in every trial
        t.set_user_attr(FOLD_F1, [value, value])
        t.report(value, 1)
        study.tell(t, value)
    pruned = study.ask()
    pruned.report(0.1, 1)
    pruned.report(0.1, 2)
    study.tell(pruned, state=TrialState.PRUNED)
    failed = study.ask()
    failed.set_user_attr(FAIL_REASON, "ValueError: bad")
    study.tell(failed, state=TrialState.FAIL)
    study.ask()  # RUNNING

    trials = study.get_trials()
    assert (
        count_states(study)
        == count_states(trials)
        == {
            "COMPLETE": 3,
            "PRUNED": 1,
            "FAIL": 1,
            "RUNNING": 1,
        }
    )
    assert count_finished(trials) == 4
    assert [t.number for t in complete_trials(trials)] == [1, 2, 0]  # ties: the earlier first
    assert best_trial(study).number == 1 and best_trial([]) is None
    assert varying_params(complete_trials(trials)) == ["lr"]
    records = read_trials(trials)
    assert records[3].note == "pruned at step 2" and records[3].value is None
    assert records[4].note == "ValueError: bad" and not records[4].finished
    assert records[1].fold_f1 == (0.8, 0.8) and records[1].finished
    assert records[5].state == "RUNNING" and records[5].seconds is None
