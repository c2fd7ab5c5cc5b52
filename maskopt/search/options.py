"""`SearchOptions`: everything one `maskopt search` run is told (picklable: workers get a copy),
and the one home of its defaults. Kept free of heavy imports: the command line imports it for
those defaults before `--help`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from maskopt.errors import ConfigError

SAMPLERS = ("tpe", "random", "grid", "cmaes", "gp")
PRUNERS = ("median", "wilcoxon", "hyperband", "none")

# The objective factory a worker imports: "module:function", called as factory(opts) and
# returning an object with `settings` (store.records.StudySettings), `__call__(trial) -> float` and, optionally,
# `close()` (called when the worker ends). Tests of the worker machinery point it at a fast
# fake; the search always runs the k-fold objective.
KFOLD_OBJECTIVE = "maskopt.search.objective:create_objective"


@dataclass(frozen=True)
class SearchOptions:
    # data
    data: Path = Path("data")
    crop: str = "center"
    cache: Path | None = None
    skip_bad: bool = False
    # what to search
    space: str = (
        "auto"  # built-in name, a .yaml/.yml/.toml file, or auto (see runner.resolve_space)
    )
    trials: int = 20  # finished (COMPLETE + PRUNED) trials the study should hold, all workers
    folds: int = 5
    epochs: int | None = None  # None: the space's epochs
    # where
    study: str = "maskopt"
    storage: str = "sqlite:///maskopt.db"
    # a folder or s3://bucket[/prefix] (a str: Path() would eat the //); None: beside the
    # SQLite file (maskopt.db -> maskopt.artifacts/), required with a server URL
    artifacts: str | None = None
    # tracking: TensorBoard events of every trial always go here (None: beside the SQLite
    # file, maskopt.db -> maskopt.tensorboard/, or ./maskopt.tensorboard with a server URL)
    tensorboard: Path | None = None
    track: tuple[str, ...] = ()  # also to "wandb" and/or "mlflow" (search.tracking)
    # how
    sampler: str = "tpe"
    pruner: str = "median"
    startup_trials: int = 5  # trials run in full before the pruner may stop any
    # steps (epochs, or folds for wilcoxon) reported before a trial may be pruned; with
    # hyperband it is the minimum resource (the first rung)
    warmup_steps: int = 1
    seed: int | None = None  # sampler seed (worker i uses seed + i); also the fold seed
    timeout: float | None = None  # seconds, per worker
    keep_models: int = 5  # fold models kept for the top K trials
    device: str = "auto"
    # workers
    workers: int = 1
    gpus: tuple[str, ...] = ()  # one worker per entry, a GPU listed twice gets two (gpus.py)
    heartbeat: int | None = None  # seconds; None: $MASKOPT_HEARTBEAT or 30
    objective: str = KFOLD_OBJECTIVE

    def __post_init__(self) -> None:
        def bad(key: str, value: object, allowed: str) -> ConfigError:
            return ConfigError(f"--{key}: expected {allowed}, but got {value!r}.")

        if self.sampler not in SAMPLERS:
            raise bad("sampler", self.sampler, "one of " + ", ".join(SAMPLERS))
        if self.pruner not in PRUNERS:
            raise bad("pruner", self.pruner, "one of " + ", ".join(PRUNERS))
        if self.trials < 1:
            raise bad("trials", self.trials, "a whole number >= 1")
        if self.folds < 2:
            raise bad("folds", self.folds, "a whole number >= 2")
        if self.epochs is not None and self.epochs < 1:
            raise bad("epochs", self.epochs, "a whole number >= 1")
        if self.startup_trials < 0:
            raise bad("startup-trials", self.startup_trials, "a whole number >= 0")
        if self.warmup_steps < 0:
            raise bad("warmup-steps", self.warmup_steps, "a whole number >= 0")
        if self.keep_models < 0:
            raise bad("keep-models", self.keep_models, "a whole number >= 0")
        if self.workers < 1:
            raise bad("workers", self.workers, "a whole number >= 1")
        if self.timeout is not None and self.timeout <= 0:
            raise bad("timeout", self.timeout, "seconds > 0")
        if self.heartbeat is not None and self.heartbeat < 1:
            raise bad("heartbeat", self.heartbeat, "whole seconds >= 1")
        if self.gpus and self.workers not in (1, len(self.gpus)):
            raise bad("workers", self.workers, f"1 or {len(self.gpus)} (one per entry of --gpus)")
        if self.gpus and self.device.split(":")[0] not in ("auto", "cuda"):
            raise bad("device", self.device, "auto or cuda with --gpus")

    @property
    def n_workers(self) -> int:
        return len(self.gpus) if self.gpus else self.workers

    @property
    def report(self) -> str:
        """What a pruning step is: "fold" for the Wilcoxon pruner, "epoch" for the rest."""
        return "fold" if self.pruner == "wilcoxon" else "epoch"
