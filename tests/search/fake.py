"""A fast objective for the worker tests: sleeps, reports 3 steps, returns a value.

It goes through the same runner and worker code as the k-fold objective (import path
"tests.search.fake:create_objective"); only the training is replaced by a sleep.
FAKE_SLEEP (seconds per trial) and FAKE_FAIL_ABOVE (x above it raises) tune it.
"""

from __future__ import annotations

import os
import time

import optuna

from maskopt.store.records import StudySettings


class FakeObjective:
    def __init__(self, opts) -> None:
        self.settings = StudySettings(
            data_fingerprint="fake",
            n_folds=opts.folds,
            space="fake",
            epochs=3,
            crop=opts.crop,
            report=opts.report,
            n_images=0,
        )
        self.sleep = float(os.environ.get("FAKE_SLEEP", "0.3"))
        self.fail_above = float(os.environ.get("FAKE_FAIL_ABOVE", "2"))

    def __call__(self, trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        trial.set_user_attr("pid", os.getpid())
        for step in (1, 2, 3):
            time.sleep(self.sleep / 3)
            trial.report(x * step / 3, step)
            if trial.should_prune():
                trial.set_user_attr("epochs_run", step)
                raise optuna.TrialPruned(f"step {step}")
        if x > self.fail_above:
            raise ValueError(f"x={x:.3f} is too big for this fake")
        trial.set_user_attr("epochs_run", 3)
        return x


def create_objective(opts) -> FakeObjective:
    return FakeObjective(opts)
