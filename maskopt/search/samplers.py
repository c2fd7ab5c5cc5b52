"""Optuna samplers and pruners by name, with the options `maskopt search` exposes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from maskopt.errors import ConfigError

if TYPE_CHECKING:
    import optuna

    from maskopt.spaces import Space


def create_sampler(
    name: str, *, seed: int | None, space: Space | None = None, startup_trials: int = 5
) -> optuna.samplers.BaseSampler:
    """tpe / random / grid (the grid of a space file's listed values) / cmaes / gp."""
    import optuna

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
        return optuna.samplers.GridSampler(grid, seed=seed)
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
    import optuna

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
