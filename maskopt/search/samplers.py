"""Optuna samplers and pruners by name, with the options `maskopt search` exposes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import optuna

from maskopt.errors import ConfigError

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial, TrialState

    from maskopt.spaces import Space


class GridSearch(optuna.samplers.GridSampler):
    """Optuna's GridSampler, whose end the worker loop sees (`grid_left`) instead of the
    sampler calling `study.stop()` when the last point is told: that works only inside
    `study.optimize` and raises RuntimeError under maskopt's ask/tell loop."""

    def __init__(self, grid: Mapping[str, Sequence], seed: int | None = None) -> None:
        super().__init__(grid, seed=seed)
        self.size = math.prod(len(v) for v in grid.values())

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        pass  # no study.stop(): see the class docstring

    def left(self, trials: Sequence[FrozenTrial]) -> GridLeft:
        """The points no trial has started, and those not finished. A trial's point is the
        `grid_id` GridSampler gives it when it is asked (a retry queued with fixed parameters
        has none: its point is the failed trial's)."""
        started: set[int] = set()
        finished: set[int] = set()
        for t in trials:
            point = t.system_attrs.get("grid_id")
            if point is None or t.state.name not in (*GRID_FINISHED, "RUNNING"):
                continue
            started.add(point)
            if t.state.name in GRID_FINISHED:
                finished.add(point)
        return GridLeft(self.size - len(started), self.size - len(finished))


# A grid point is done for good once a trial of it has ended, failed included: Optuna's
# GridSampler does not give a failed point again (a killed trial's retry is queued instead).
GRID_FINISHED = ("COMPLETE", "PRUNED", "FAIL")


class GridLeft(NamedTuple):
    unstarted: int  # points no trial has started: one more trial may be asked
    unfinished: int  # points not yet ended: 0 means the grid is done


def grid_left(
    sampler: optuna.samplers.BaseSampler, trials: Sequence[FrozenTrial]
) -> GridLeft | None:
    """With --sampler grid, what is left of the grid (None for other samplers, which never
    run out); a queued trial (a retry) is left too, so nothing ends while one waits."""
    if not isinstance(sampler, GridSearch):
        return None
    left = sampler.left(trials)
    waiting = sum(t.state.name == "WAITING" for t in trials)
    return GridLeft(left.unstarted + waiting, left.unfinished + waiting)


def create_sampler(
    name: str, *, seed: int | None, space: Space | None = None, startup_trials: int = 5
) -> optuna.samplers.BaseSampler:
    """tpe / random / grid (the grid of a space file's listed values) / cmaes / gp."""
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(startup_trials, 1))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        grid = space.grid() if space is not None else None
        if grid is None:
            missing = ", ".join(space.missing_grid()) if space is not None else "?"
            raise ConfigError(
                f"--sampler grid needs listed values for every sampled key; these have none: "
                f"{missing} (give them a list of choices, or 'grid: [...]' in a space file)."
            )
        return GridSearch(grid, seed=seed)
    if name == "cmaes":
        # CMA-ES handles numbers; categorical keys fall back to independent random sampling.
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    raise ConfigError(f"--sampler: expected tpe, random, grid, cmaes or gp, but got {name!r}.")


def create_pruner(
    name: str, *, startup_trials: int, warmup_steps: int, max_steps: int
) -> optuna.pruners.BasePruner:
    """median / wilcoxon / hyperband / none.

    median: Optuna's MedianPruner compares this trial's BEST value over its steps so far
    with the median of the other trials' values at the same step, so the objective reports
    a value that only grows (see maskopt.search.objective).
    wilcoxon: compares the trial fold by fold with the best trial (steps = folds); it can only
    reach p < 0.1 with 5 or more folds.
    hyperband: successive halving over epochs, from warmup_steps (its minimum resource: no
    trial is stopped before it) up to max_steps.
    """
    if name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=startup_trials, n_warmup_steps=warmup_steps
        )
    if name == "wilcoxon":
        return optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=warmup_steps)
    if name == "hyperband":
        first = max(warmup_steps, 1)
        if first > max_steps:
            raise ConfigError(
                f"--warmup-steps with --pruner hyperband is the first rung, at most the "
                f"{max_steps} steps a trial reports, but got {warmup_steps}."
            )
        return optuna.pruners.HyperbandPruner(
            min_resource=first, max_resource=max(max_steps, 1), reduction_factor=3
        )
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"--pruner: expected median, wilcoxon, hyperband or none, but got {name!r}.")
