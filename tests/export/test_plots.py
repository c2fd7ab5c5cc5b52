"""Study plots from real Optuna studies built with ask/tell."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from maskopt.export.plots import write_plots

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(params=["memory", "sqlite"])
def storage(request, tmp_path: Path):
    return None if request.param == "memory" else f"sqlite:///{tmp_path / 's.db'}"


def run_study(storage, n: int, vary: bool = True) -> optuna.Study:
    study = optuna.create_study(
        storage=storage,
        study_name="plots",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    for i in range(n):
        t = study.ask()
        lr = (
            t.suggest_float("lr", 1e-4, 1e-1, log=True)
            if vary
            else t.suggest_float("lr", 0.01, 0.01)
        )
        bs = t.suggest_categorical("batch_size", [16, 32] if vary else [16])
        for step in range(3):
            t.report(0.1 * step + lr, step)
        study.tell(t, 0.5 + 0.01 * i + (bs == 32) * 0.1)
    return study


def test_all_four_plots_in_one_offline_page(storage, tmp_path: Path) -> None:
    res = write_plots(run_study(storage, 6), tmp_path / "plots.html")
    assert res.made == [
        "Optimisation history",
        "Parameter importances",
        "Parallel coordinates",
        "Intermediate values",
    ]
    assert res.skipped == {}
    text = res.path.read_text()
    # plotly.js is inlined exactly once (self-contained, no CDN)
    assert "<script src=" not in text
    assert text.count("plotly.js v") == 1
    assert text.count("<h2>") == 4


def test_one_trial_skips_importances_with_the_reason(tmp_path: Path) -> None:
    res = write_plots(run_study(None, 1), tmp_path / "plots.html")
    assert "Optimisation history" in res.made
    assert (
        res.skipped["Parameter importances"] == "needs at least 2 complete trials, the study has 1"
    )
    assert "needs at least 2 complete trials" in res.path.read_text()


def test_fixed_params_skip_importances_and_parallel(tmp_path: Path) -> None:
    res = write_plots(run_study(None, 4, vary=False), tmp_path / "plots.html")
    assert "no parameter takes more than one value" in res.skipped["Parameter importances"]
    assert "Parallel coordinates" in res.skipped


def test_empty_study_draws_nothing_and_says_why(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")
    res = write_plots(study, tmp_path / "p.html")
    assert res.made == []
    assert set(res.skipped) == {
        "Optimisation history",
        "Parameter importances",
        "Parallel coordinates",
        "Intermediate values",
    }
