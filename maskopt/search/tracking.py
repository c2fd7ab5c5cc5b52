"""Trial tracking: each search trial as a run in TensorBoard, Weights & Biases or MLflow.

The k-fold objective drives one `Tracker` per worker (create_search_tracker(opts): TensorBoard
always, plus `--track wandb` / `--track mlflow`; closed when the worker ends):

    tracker = create_tracker(["wandb"], tensorboard=Path("maskopt.tensorboard"))
    with tracker.trial(study_name, trial.number, params=trial.params, config=cfg_dict) as run:
        ...  run.log_epoch(fold, epoch, row)     # the trainer's history row of that epoch
        run.value = value                        # the trial's value
    # leaving the block ends the run: COMPLETE, PRUNED (optuna.TrialPruned) or FAIL (any other
    # exception, Ctrl-C included); the exception goes on unchanged

What each backend writes, one run per trial:
- TensorBoard: DIR/<study>/trial_<n>/ holds the trial's parameters as hparams and its value;
  DIR/<study>/trial_<n>/fold_<k>/ one curve per fold of train_loss, val_loss, val_f1 (macro
  F1) and lr against the epoch. `tensorboard --logdir DIR` compares the trials.
- W&B: a run named <study>-<n> in the project (WANDB_PROJECT, else "maskopt"), grouped by
  study; the config and parameters as its config, `fold<k>/<metric>` against `epoch`, the
  value and state in its summary. WANDB_MODE=offline writes it locally (`wandb sync` later).
- MLflow: a run named trial-<n> in the experiment MLFLOW_EXPERIMENT_NAME, else named after the
  study, in the store MLFLOW_TRACKING_URI names (a `sqlite:///` file or a server), else in a
  SQLite file beside the SQLite storage (maskopt.mlflow.db), else MLflow's default:
  parameters, `fold<k>/<metric>` at step = epoch, the value, and the state as a tag (a FAIL
  ends the run FAILED). The search makes the experiment before its workers start.

optuna-integration's W&B and MLflow callbacks log once a trial has ended; the per-epoch fold
curves need the clients while the trial runs, so the clients are used directly.

Tracking never fails a trial: a backend that raises (not logged in, server down, disk
full...) is reported once, in one line, and dropped for the rest of this worker's search.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from maskopt.errors import ConfigError
from maskopt.outputs import check_shared_dir, mark_dir

if TYPE_CHECKING:
    from maskopt.search.options import SearchOptions

log = logging.getLogger("maskopt.search")

# --track NAME -> (module to import, pip extra)
TRACKERS = {"wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}
METRICS = ("train_loss", "val_loss", "val_f1", "lr")  # of the trainer's history row
STATES = ("COMPLETE", "PRUNED", "FAIL")
WANDB_PROJECT = "maskopt"  # when neither the option nor WANDB_PROJECT names one


class Backend(Protocol):
    """One tracking library. Calls come in order: start, log_epoch*, end (then maybe close);
    `prepare` once, before any worker starts."""

    name: str

    def prepare(self, study: str) -> None: ...
    def start(
        self, study: str, number: int, params: Mapping[str, Any], config: Mapping[str, Any]
    ) -> None: ...
    def log_epoch(self, fold: int, epoch: int, metrics: Mapping[str, float]) -> None: ...
    def end(self, value: float | None, state: str) -> None: ...
    def close(self) -> None: ...


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


# Marks a TensorBoard folder as maskopt's: a later search may add runs to it (maskopt.outputs).
TENSORBOARD_MARKER = ".maskopt-tensorboard"


def check_tensorboard_dir(url: str, tensorboard: str | os.PathLike | None) -> Path:
    """The search's TensorBoard folder, before any work: absent, empty, maskopt's or one a study
    records; anything else is refused in one line (maskopt.outputs.check_shared_dir)."""
    from maskopt.studies.storage import recorded_dirs

    return check_shared_dir(
        tensorboard_dir_for(url, tensorboard),
        flag="--tensorboard",
        marker=TENSORBOARD_MARKER,
        what="TensorBoard runs",
        known=lambda: recorded_dirs(url),
    )


def tensorboard_dir_for(url: str, tensorboard: str | os.PathLike | None) -> Path:
    """Where the trials' TensorBoard runs go: `tensorboard` if given, else beside the SQLite
    file (maskopt.db -> maskopt.tensorboard/), else ./maskopt.tensorboard on this machine."""
    if tensorboard is not None:
        return Path(tensorboard)
    from maskopt.studies.storage import sqlite_path

    path = sqlite_path(url)
    return path.with_suffix(".tensorboard") if path is not None else Path("maskopt.tensorboard")


def mlflow_uri_for(url: str) -> str | None:
    """The MLflow store of a search: None where MLFLOW_TRACKING_URI is set (MLflow reads it)
    or the storage is a server (MLflow's own default); else a SQLite file beside the SQLite
    storage (maskopt.db -> maskopt.mlflow.db)."""
    from maskopt.studies.storage import sqlite_path

    path = sqlite_path(url)
    if os.environ.get("MLFLOW_TRACKING_URI") or path is None:
        return None
    return f"sqlite:///{path.with_suffix('.mlflow.db')}"


def _scalar(value: Any) -> int | float | str | bool:
    """A value TensorBoard hparams and MLflow params take (lists and None as text)."""
    return value if isinstance(value, int | float | str | bool) else str(value)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


class TensorBoardBackend:
    """DIR/<study>/trial_<n>/ (hparams, value) and DIR/<study>/trial_<n>/fold_<k>/ (curves)."""

    name = "tensorboard"

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.run_dir: Path | None = None
        self.params: dict[str, Any] = {}
        self.writers: dict[int, Any] = {}

    def prepare(self, study: str) -> None:
        pass  # each trial's run is its own folder

    def start(
        self, study: str, number: int, params: Mapping[str, Any], config: Mapping[str, Any]
    ) -> None:
        self.close()
        mark_dir(self.root, TENSORBOARD_MARKER)
        self.run_dir = self.root / study / f"trial_{number:04d}"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.params = {k: _scalar(v) for k, v in params.items()}

    def log_epoch(self, fold: int, epoch: int, metrics: Mapping[str, float]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        assert self.run_dir is not None, "log_epoch before start"
        if fold not in self.writers:
            self.writers[fold] = SummaryWriter(log_dir=str(self.run_dir / f"fold_{fold}"))
        writer = self.writers[fold]
        for key, value in metrics.items():
            writer.add_scalar(key, value, epoch)
        writer.flush()

    def end(self, value: float | None, state: str) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        assert self.run_dir is not None, "end before start"
        metric = math.nan if value is None else float(value)
        writer = SummaryWriter(log_dir=str(self.run_dir))
        try:
            # the hparams summaries go into the trial's own run (add_hparams would make a new one)
            file_writer = writer.file_writer
            assert file_writer is not None
            for summary in hparams({**self.params, "state": state}, {"value": metric}):
                file_writer.add_summary(summary)
            writer.add_scalar("value", metric, 0)
        finally:
            writer.close()
        self.close()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers = {}


class WandbBackend:
    """One W&B run per trial in `project`, grouped by study."""

    name = "wandb"

    def __init__(
        self,
        project: str | None = None,
        *,
        entity: str | None = None,
        directory: str | os.PathLike | None = None,
    ) -> None:
        self.project = project or os.environ.get("WANDB_PROJECT") or WANDB_PROJECT
        self.entity = entity
        self.directory = None if directory is None else str(directory)
        self.run: Any = None

    def prepare(self, study: str) -> None:
        pass  # W&B makes the project with its first run, whichever worker starts it

    def start(
        self, study: str, number: int, params: Mapping[str, Any], config: Mapping[str, Any]
    ) -> None:
        import wandb

        self.close()
        if self.directory is not None:
            Path(self.directory).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=self.project,
            entity=self.entity,
            group=study,
            job_type="trial",
            name=f"{study}-{number}",
            config={**config, **params, "study": study, "trial": number},
            dir=self.directory,
            reinit="create_new",
            # no console capture: a search shows its own progress on the terminal
            settings=wandb.Settings(console="off", silent=True),
        )
        self.run.define_metric("epoch")
        self.run.define_metric("fold*", step_metric="epoch")

    def log_epoch(self, fold: int, epoch: int, metrics: Mapping[str, float]) -> None:
        self.run.log({**{f"fold{fold}/{k}": v for k, v in metrics.items()}, "epoch": epoch})

    def end(self, value: float | None, state: str) -> None:
        run, self.run = self.run, None
        run.summary.update({"value": value, "state": state})
        run.tags = (*run.tags, state.lower())
        run.finish(exit_code=1 if state == "FAIL" else 0)

    def close(self) -> None:
        if self.run is not None:
            run, self.run = self.run, None
            run.finish(exit_code=1)


class MlflowBackend:
    """One MLflow run per trial, in the experiment named after the study (or `experiment`)."""

    name = "mlflow"

    def __init__(self, tracking_uri: str | None = None, *, experiment: str | None = None) -> None:
        self.tracking_uri = tracking_uri  # None: MLFLOW_TRACKING_URI, else MLflow's default
        # None: MLFLOW_EXPERIMENT_NAME, else the study's name
        self.experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME")
        self._client: Any = None
        self.experiments: dict[str, str] = {}  # name -> id
        self.run_id: str | None = None

    @property
    def client(self) -> Any:
        if self._client is None:  # made at the first trial: a bad URI is a run-time failure
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def _experiment_id(self, name: str) -> str:
        if name not in self.experiments:
            found = self.client.get_experiment_by_name(name)
            if found is None:
                try:
                    self.experiments[name] = self.client.create_experiment(name)
                except Exception:  # another worker created it just now
                    found = self.client.get_experiment_by_name(name)
                    if found is None:
                        raise
            if found is not None:
                self.experiments[name] = found.experiment_id
        return self.experiments[name]

    def prepare(self, study: str) -> None:
        """Make the store's tables and the experiment now: workers that make a new SQLite
        store at the same moment race on its schema (`duplicate column name`)."""
        self._experiment_id(self.experiment or study)

    def start(
        self, study: str, number: int, params: Mapping[str, Any], config: Mapping[str, Any]
    ) -> None:
        from mlflow.entities import Param

        self.close()
        run = self.client.create_run(
            self._experiment_id(self.experiment or study),
            run_name=f"trial-{number}",
            tags={"study": study, "trial": str(number)},
        )
        self.run_id = run.info.run_id
        values = {**config, **params}
        self.client.log_batch(
            self.run_id, params=[Param(k, str(_scalar(v))) for k, v in values.items()]
        )

    def log_epoch(self, fold: int, epoch: int, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        assert self.run_id is not None, "log_epoch before start"
        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id,
            metrics=[Metric(f"fold{fold}/{k}", float(v), now, epoch) for k, v in metrics.items()],
        )

    def end(self, value: float | None, state: str) -> None:
        run_id, self.run_id = self.run_id, None
        assert run_id is not None, "end before start"
        if value is not None:
            self.client.log_metric(run_id, "value", float(value))
        self.client.set_tag(run_id, "state", state)
        self.client.set_terminated(run_id, "FAILED" if state == "FAIL" else "FINISHED")

    def close(self) -> None:
        if self.run_id is not None:
            run_id, self.run_id = self.run_id, None
            self.client.set_terminated(run_id, "KILLED")


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
        import optuna

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
                    f"tracking: {backend.name} failed at {what} ({_first_line(err)}); "
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
