"""Every --sampler and --pruner runs a study through the runner (fast fake objective)."""

from __future__ import annotations

import pytest

from maskopt.errors import ConfigError
from maskopt.search.options import SearchOptions
from maskopt.search.runner import run_search
from tests.search.conftest import FAKE


@pytest.mark.parametrize(
    "sampler, pruner",
    [("tpe", "median"), ("random", "hyperband"), ("cmaes", "none"), ("gp", "wilcoxon")],
)
def test_sampler_and_pruner_run(tmp_path, monkeypatch, sampler, pruner):
    monkeypatch.setenv("FAKE_SLEEP", "0")
    opts = SearchOptions(
        storage=f"sqlite:///{tmp_path / 'm.db'}",
        trials=6,
        sampler=sampler,
        pruner=pruner,
        startup_trials=2,
        seed=3,
        objective=FAKE,
    )
    summary = run_search(opts, show_progress=False)
    assert summary.finished == 6 and summary.counts.get("FAIL", 0) == 0
    assert summary.best_value is not None and 0.0 <= summary.best_value <= 1.0


def test_failing_trials_are_recorded_and_the_study_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SLEEP", "0")
    monkeypatch.setenv("FAKE_FAIL_ABOVE", "0.5")  # about half the configs "cannot train"
    opts = SearchOptions(
        storage=f"sqlite:///{tmp_path / 'm.db'}",
        trials=5,
        sampler="random",
        pruner="none",
        seed=0,
        objective=FAKE,
    )
    summary = run_search(opts, show_progress=False)
    assert summary.finished == 5 and summary.counts["FAIL"] >= 1
    failed = [r for r in summary.trials if r.state == "FAIL"]
    assert all(r.note.startswith("ValueError: x=") for r in failed)


def test_a_study_whose_every_trial_fails_stops(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SLEEP", "0")
    monkeypatch.setenv("FAKE_FAIL_ABOVE", "-1")
    opts = SearchOptions(storage=f"sqlite:///{tmp_path / 'm.db'}", trials=5, objective=FAKE)
    summary = run_search(opts, show_progress=False)
    assert summary.counts == {"FAIL": 5}
    assert "5 failed trials in a row" in summary.problems[0] and "ValueError" in summary.problems[0]


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"sampler": "bayes"}, "--sampler"),
        ({"pruner": "asha"}, "--pruner"),
        ({"folds": 1}, "--folds"),
        ({"workers": 3, "gpus": ("0", "1")}, "--workers"),
    ],
)
def test_bad_options_name_the_option(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        SearchOptions(**kwargs)
