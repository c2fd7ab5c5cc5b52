"""Trial tracking: each search trial as a run in TensorBoard, Weights & Biases or MLflow.

The k-fold objective drives one `Tracker` per worker (create_search_tracker(opts): TensorBoard
always, plus `--track wandb` / `--track mlflow`; closed when the worker ends):

    tracker = create_tracker(["wandb"], tensorboard=Path("maskopt.tensorboard"))
    with tracker.trial(study_name, trial.number, params=trial.params, config=cfg_dict) as run:
        ...  run.log_epoch(fold, epoch, row)     # the trainer's history row of that epoch
        run.value = value                        # the trial's value
    # leaving the block ends the run: COMPLETE, PRUNED (optuna.TrialPruned) or FAIL (any other
    # exception, Ctrl-C included); the exception goes on unchanged

(What each backend writes: its module's docstring.)

optuna-integration's W&B and MLflow callbacks log once a trial has ended; the per-epoch fold
curves need the clients while the trial runs, so the clients are used directly.

Tracking never fails a trial: a backend that raises (not logged in, server down, disk
full...) is reported once, in one line, and dropped for the rest of this worker's search.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any

import optuna

from maskopt.errors import ConfigError
from maskopt.search.tracking.base import METRICS, STATES, Backend, first_line, log
from maskopt.search.tracking.mlflow_backend import MlflowBackend
from maskopt.search.tracking.tensorboard_backend import TensorBoardBackend
from maskopt.search.tracking.wandb_backend import WandbBackend
from maskopt.store.locations import mlflow_uri_for, tensorboard_dir_for

if TYPE_CHECKING:
    from maskopt.search.options import SearchOptions


# --track NAME -> (module to import, pip extra)
TRACKERS = {"wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}


def check_trackers(names: Sequence[str]) -> tuple[str, ...]:
    """The --track names, checked: known, and their library installed (ConfigError naming
    the extra otherwise). Call it before the search starts, so it fails in one line."""
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ConfigError(
            f"--track: expected {' or '.join(TRACKERS)}, but got {', '.join(map(repr, unknown))}."
        )
    missing = []
    for name in dict.fromkeys(names):
        module, extra = TRACKERS[name]
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append((name, extra))
    if missing:
        needs = ", ".join(f"--track {n} needs {TRACKERS[n][0]}" for n, _ in missing)
        extras = ",".join(extra for _, extra in missing)
        raise ConfigError(f"{needs}, which is not installed: pip install maskopt[{extras}]")
    return tuple(dict.fromkeys(names))


class TrialRun:
    """The tracked run of one trial (see `Tracker.trial`): log_epoch, then `value` and exit."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.value: float | None = None

    def log_epoch(self, fold: int, epoch: int, row: Mapping[str, Any]) -> None:
        self.tracker.log_epoch(fold, epoch, row)

    def __enter__(self) -> TrialRun:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:

        if err is None:
            state = "COMPLETE"
        elif isinstance(err, optuna.TrialPruned):
            state = "PRUNED"
        else:
            state = "FAIL"
        self.tracker.end_trial(self.value, state)


class Tracker:
    """Sends each call to every backend; a backend that raises is reported once and dropped."""

    def __init__(
        self, backends: Sequence[Backend], report: Callable[[str], None] | None = None
    ) -> None:
        self.backends = list(backends)
        self.report = report or log.warning
        self.failed: list[str] = []  # names of the backends dropped, in order

    @property
    def names(self) -> list[str]:
        return [b.name for b in self.backends]

    def _each(self, what: str, call: Callable[[Backend], None]) -> None:
        for backend in list(self.backends):
            try:
                call(backend)
            except Exception as err:
                self.backends.remove(backend)
                self.failed.append(backend.name)
                self.report(
                    f"tracking: {backend.name} failed at {what} ({first_line(err)}); "
                    f"this worker goes on without {backend.name}."
                )
                try:
                    backend.close()
                except Exception:  # it is broken already; the one report above is enough
                    pass

    def prepare(self, study: str) -> None:
        """What the workers share, made once before they start (the MLflow experiment)."""
        self._each(f"preparing study {study!r}", lambda b: b.prepare(study))

    def start_trial(
        self, study: str, number: int, *, params: Mapping[str, Any], config: Mapping[str, Any]
    ) -> None:
        self._each(f"the start of trial {number}", lambda b: b.start(study, number, params, config))

    def log_epoch(self, fold: int, epoch: int, row: Mapping[str, Any]) -> None:
        """Log the METRICS of a history row (the others, and missing values, are left out)."""
        metrics = {k: float(row[k]) for k in METRICS if row.get(k) is not None}
        self._each(f"fold {fold} epoch {epoch}", lambda b: b.log_epoch(fold, epoch, metrics))

    def end_trial(self, value: float | None, state: str) -> None:
        if state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, but got {state=}.")
        self._each("the end of the trial", lambda b: b.end(value, state))

    @contextmanager
    def trial(
        self, study: str, number: int, *, params: Mapping[str, Any], config: Mapping[str, Any]
    ) -> Iterator[TrialRun]:
        """Start a trial's run; leaving the block ends it with the state the exit tells."""
        self.start_trial(study, number, params=params, config=config)
        with TrialRun(self) as run:
            yield run

    def close(self) -> None:
        """End any run left open (as killed) and release the backends."""
        self._each("closing", lambda b: b.close())


def create_tracker(
    track: Sequence[str] = (),
    *,
    tensorboard: str | os.PathLike | None = None,
    wandb_project: str | None = None,
    wandb_dir: str | os.PathLike | None = None,
    mlflow_uri: str | None = None,
    mlflow_experiment: str | None = None,
    report: Callable[[str], None] | None = None,
) -> Tracker:
    """A Tracker for the --track names (checked: ConfigError for an unknown name or a missing
    extra), with TensorBoard into `tensorboard` unless it is None."""
    backends: list[Backend] = []
    if tensorboard is not None:
        backends.append(TensorBoardBackend(tensorboard))
    for name in check_trackers(track):
        if name == "wandb":
            backends.append(WandbBackend(wandb_project, directory=wandb_dir))
        else:
            backends.append(MlflowBackend(mlflow_uri, experiment=mlflow_experiment))
    return Tracker(backends, report)


def create_search_tracker(
    opts: SearchOptions, report: Callable[[str], None] | None = None
) -> Tracker:
    """The tracker of a search worker: TensorBoard always (tensorboard_dir_for), and the
    --track backends with the libraries' own settings (W&B: WANDB_PROJECT or "maskopt",
    WANDB_DIR, WANDB_MODE...; MLflow: mlflow_uri_for, MLFLOW_EXPERIMENT_NAME or the study)."""
    return create_tracker(
        opts.track,
        tensorboard=tensorboard_dir_for(opts.storage, opts.tensorboard),
        mlflow_uri=mlflow_uri_for(opts.storage),
        report=report,
    )


def prepare_search_tracking(opts: SearchOptions) -> SearchOptions:
    """Before a search starts its worker processes: make what their trackers share (the MLflow
    store and experiment) once, instead of letting them race to make it. A tracker that fails
    here is reported once and left out of the options the workers get."""
    if not opts.track:
        return opts
    tracker = create_search_tracker(opts)
    tracker.prepare(opts.study)
    tracker.close()
    return replace(opts, track=tuple(n for n in opts.track if n not in tracker.failed))
