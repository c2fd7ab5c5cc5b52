"""`maskopt best`'s table and a trial's config, read through the records from a real study."""

from __future__ import annotations

import pytest

from maskopt.errors import StudyError
from maskopt.store.locations import create_artifact_store
from maskopt.store.records import trial_config
from maskopt.store.storage import load_study
from maskopt.studies.table import best_trials


def test_best_trials_rows(finished_study) -> None:
    study = load_study(finished_study.url, finished_study.name)
    store = create_artifact_store(finished_study.artifacts)
    best = best_trials(study, top=2, store=store)
    assert best.counts == {"COMPLETE": 3, "PRUNED": 1}
    assert len(best.rows) == 2
    values = [t.value for t in study.trials if t.value is not None and t.state.name == "COMPLETE"]
    assert best.rows[0].value == max(values) and best.rows[0].value >= best.rows[1].value
    assert set(best.keys) == {"backbone", "lr"}
    assert len(best.rows[0].fold_f1) == 2
    assert best.kept == {r.number for r in best.rows}  # every model file is in the store
    assert best_trials(study, top=2).kept == frozenset()  # no store: nothing known to be kept
    with pytest.raises(Exception, match="--top must be >= 1"):
        best_trials(study, top=0)


def test_trial_config_round_trip(finished_study) -> None:
    study = load_study(finished_study.url, finished_study.name)
    cfg = trial_config(study, 1)
    assert cfg.backbone == "test_resnet" and cfg.lr == 1e-2
    with pytest.raises(StudyError, match="has no trial 99; trials: 0..3"):
        trial_config(study, 99)
    with pytest.raises(StudyError, match="trial 3 .* has no config"):
        trial_config(study, 3)
