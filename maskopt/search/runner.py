"""`run_search`: one worker in this process, or N worker processes on the same storage.

Workers share nothing but the storage (and the artifact folder): each runs
`maskopt.search.worker.run_worker`, exactly what a worker on another machine runs with a
PostgreSQL URL. This process checks everything it can before it creates the storage (so a
bad option leaves no file behind), creates or joins the study, fails the trials of dead
workers of this host, and shows the progress by reading the storage, like any reader.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from sqlalchemy.exc import SQLAlchemyError

from maskopt.errors import StudyError
from maskopt.progress import progress_bar
from maskopt.search.gpus import plan_workers
from maskopt.search.options import SearchOptions
from maskopt.search.process import worker_main
from maskopt.search.samplers import GridSearch, create_pruner, create_sampler
from maskopt.search.study import open_study
from maskopt.search.tracking.tracker import check_trackers, prepare_search_tracking
from maskopt.search.worker import (
    MAX_FAILS_IN_A_ROW,
    fail_reason,
    load_objective,
    max_steps,
    run_worker,
)
from maskopt.search.zombies import reap
from maskopt.spaces import get_space
from maskopt.store.locations import (
    ARTIFACTS_MARKER,
    artifacts_dir_for,
    check_artifacts_dir,
    check_tensorboard_dir,
    create_artifact_store,
    tensorboard_dir_for,
)
from maskopt.store.records import TrialRecord, best_trial, count_finished, count_states, read_trials
from maskopt.store.s3 import is_s3_url
from maskopt.store.storage import check_url, create_storage, sqlite_path, storage_lock
from maskopt.trainer.device import resolve_device

if TYPE_CHECKING:
    from optuna.storages import RDBStorage
    from rich.console import Console

POLL_S = 1.0


@dataclass(frozen=True)
class SearchSummary:
    study: str
    storage: str
    artifacts_dir: str
    trials_wanted: int
    counts: dict[str, int]  # COMPLETE / PRUNED / FAIL / RUNNING / WAITING
    best_number: int | None
    best_value: float | None
    best_params: dict[str, Any]
    total_epochs: int  # fold-epochs trained over all trials (pruned ones included)
    wall_s: float
    trials: list[TrialRecord] = field(default_factory=list)
    interrupted: bool = False
    problems: list[str] = field(default_factory=list)  # worker exits, fail streaks
    notes: list[str] = field(default_factory=list)  # how it ended, when not by --trials
    space: str = ""  # the space searched (what --space auto chose)
    tensorboard_dir: str = ""  # where this machine's workers wrote the trials' TensorBoard runs

    @property
    def finished(self) -> int:
        return count_finished(self.counts)


def summarize(
    storage: RDBStorage,
    opts: SearchOptions,
    artifacts_dir: str,
    wall_s: float,
    interrupted: bool = False,
    problems: list[str] | None = None,
) -> SearchSummary:

    trials = optuna.load_study(study_name=opts.study, storage=storage).get_trials(deepcopy=False)
    records = read_trials(trials)
    best = best_trial(trials)
    return SearchSummary(
        study=opts.study,
        storage=opts.storage,
        artifacts_dir=artifacts_dir,
        trials_wanted=opts.trials,
        counts=count_states(trials),
        best_number=best.number if best else None,
        best_value=best.value if best else None,
        best_params=dict(best.params) if best else {},
        total_epochs=sum(r.epochs_run or 0 for r in records),
        wall_s=round(wall_s, 1),
        trials=records,
        interrupted=interrupted,
        problems=list(problems or []),
        space=opts.space,
        tensorboard_dir=str(tensorboard_dir_for(opts.storage, opts.tensorboard)),
    )


class _ProgressView:
    """A rich progress line fed by reading the storage every second (works for any worker)."""

    def __init__(self, opts: SearchOptions, console: Console | None) -> None:
        self.opts = opts
        self.console = console
        self.error: str | None = None  # why the view stopped early (reported, never hidden)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _ProgressView:

        self.progress = progress_bar(console=self.console, transient=False, elapsed=True)
        self.task = self.progress.add_task("starting", total=self.opts.trials)
        self.progress.start()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:

        try:
            storage = create_storage(self.opts.storage, heartbeat=False)
            study = optuna.load_study(study_name=self.opts.study, storage=storage)
            while not self._stop.is_set():
                self._refresh(study)
                self._stop.wait(POLL_S)
            self._refresh(study)
            storage.remove_session()
        except (StudyError, SQLAlchemyError) as err:
            # The storage stopped answering this reader: the search reports it as a problem;
            # the workers, with their own connections, go on or fail on their own.
            self.error = fail_reason(err)

    def _refresh(self, study: optuna.Study) -> None:
        trials = study.get_trials(deepcopy=False)
        n = count_states(trials)
        best = best_trial(trials)
        durations = [r.seconds for r in read_trials(trials) if r.finished and r.seconds is not None]
        text = (
            f"[green]{n.get('COMPLETE', 0)} ok[/] [yellow]{n.get('PRUNED', 0)} pruned[/] "
            f"[red]{n.get('FAIL', 0)} failed[/] {n.get('RUNNING', 0)} run"
        )
        if best is not None:
            text += f" | best {best.value:.4f} (#{best.number})"
        if durations:
            text += f" | {sum(durations) / len(durations):.0f} s/trial"
        finished = count_finished(n)
        self.progress.update(self.task, completed=min(finished, self.opts.trials), description=text)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.progress.stop()


def resolve_space(opts: SearchOptions) -> tuple[SearchOptions, str | None]:
    """`--space auto`: the default space where a GPU trains (--gpus, or --device finds one), the
    cpu space elsewhere. Returns the options with the space named, and a line saying what auto
    chose (None when the space was named)."""
    if opts.space != "auto":
        return opts, None
    on_gpu = bool(opts.gpus) or resolve_device(opts.device).type != "cpu"
    space = "default" if on_gpu else "cpu"
    note = f"space: {space} (--space auto: {'a GPU' if on_gpu else 'no GPU'} here)"
    return replace(opts, space=space), note


def run_search(
    opts: SearchOptions, *, show_progress: bool = True, console: Console | None = None
) -> SearchSummary:
    """Run (or resume) the study until it holds opts.trials finished trials; summary at the end.
    `--space auto` is resolved here (and said on `console`)."""

    started = time.perf_counter()
    opts, note = resolve_space(opts)
    if note is not None and console is not None:
        console.print(note)
    # Everything that can be checked before the storage exists is checked first: a bad URL,
    # tracker, bucket, data, space, folds, sampler or pruner fails in one line and leaves no
    # file behind.
    check_url(opts.storage)
    check_trackers(opts.track)  # --track wandb without wandb installed: one line naming it
    artifacts = artifacts_dir_for(opts.storage, opts.artifacts)
    # folders maskopt adds to: refused when they hold what it did not write (the project folder)
    check_artifacts_dir(opts.storage, artifacts)
    check_tensorboard_dir(opts.storage, opts.tensorboard)
    if is_s3_url(artifacts):
        create_artifact_store(artifacts)  # checks the bucket (a folder is made by the workers)
    artifacts_dir = str(artifacts)
    objective = load_objective(opts)
    sampler = create_sampler(
        opts.sampler,
        seed=opts.seed,
        space=get_space(opts.space) if opts.sampler == "grid" else None,
        startup_trials=opts.startup_trials,
    )
    create_pruner(
        opts.pruner,
        startup_trials=opts.startup_trials,
        warmup_steps=opts.warmup_steps,
        max_steps=max_steps(opts, objective),
    )
    problems: list[str] = []
    interrupted = False
    with _no_leftovers(opts.storage, artifacts):
        storage = create_storage(opts.storage, heartbeat=False)
        # Create (or join and check) the study once, before any progress or worker: a study
        # made with other folds or data fails here in one line; workers only load it.
        study, _ = open_study(opts, storage, objective.settings, artifacts_dir)
        with storage_lock(opts.storage):  # trials of a killed earlier run: failed, requeued
            reap(study, storage)
        view = _ProgressView(opts, console) if show_progress else None
        try:
            if view is not None:
                view.__enter__()
            if opts.n_workers == 1 and not opts.gpus:  # a --gpus worker needs its own process
                result = run_worker(opts, 0, objective)
                interrupted = result.interrupted
                if result.failed_in_a_row >= MAX_FAILS_IN_A_ROW:
                    problems.append(
                        f"stopped after {result.failed_in_a_row} failed trials in a row; "
                        f"last reason: {result.last_fail_reason}"
                    )
            else:
                del objective  # each worker process makes its own
                interrupted, problems = _run_processes(prepare_search_tracking(opts))
        finally:
            if view is not None:
                view.__exit__(None, None, None)
        if view is not None and view.error is not None:
            problems.append(f"the progress display stopped: {view.error}")
        with storage_lock(opts.storage):  # a worker killed after the others' last look
            reap(study, storage)
        summary = summarize(
            storage, opts, artifacts_dir, time.perf_counter() - started, interrupted, problems
        )
        storage.remove_session()
    if isinstance(sampler, GridSearch) and summary.finished < opts.trials and not interrupted:
        ran = ", ".join(f"{n} {k.lower()}" for k, n in sorted(summary.counts.items()))
        summary.notes.append(
            f"the grid holds {sampler.size} configuration(s), fewer than --trials "
            f"{opts.trials}: all of them ran ({ran})."
        )
    return summary


@contextmanager
def _no_leftovers(url: str, artifacts: Path | str) -> Iterator[None]:
    """A search that ends before any trial exists (an error after the storage was made, all
    workers dead at start, Ctrl-C) leaves no new SQLite file or artifact folder (a bucket,
    made by the user, stays)."""

    db = sqlite_path(url)
    new_db = db is not None and not db.exists()
    folder = artifacts if isinstance(artifacts, Path) else None
    new_dir = folder is not None and not folder.exists()
    try:
        yield
    finally:
        if new_db and db is not None and _holds_no_trial(url):
            for suffix in ("", "-wal", "-shm", ".lock"):
                Path(str(db) + suffix).unlink(missing_ok=True)
            if new_dir and folder is not None and folder.is_dir():
                (folder / ARTIFACTS_MARKER).unlink(missing_ok=True)
                if not any(folder.iterdir()):
                    folder.rmdir()


def _holds_no_trial(url: str) -> bool:

    try:
        storage = create_storage(url, heartbeat=False, must_exist=True)
    except StudyError:
        return True  # not even a database
    try:
        return not any(
            optuna.load_study(study_name=s.study_name, storage=storage).get_trials(deepcopy=False)
            for s in storage.get_all_studies()
        )
    finally:
        storage.remove_session()


def _run_processes(opts: SearchOptions) -> tuple[bool, list[str]]:
    """Spawn one process per worker (one per GPU with --gpus) and wait for them."""

    ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked CUDA or DB state
    procs = [
        ctx.Process(
            target=worker_main, args=(opts, p.index, p.env), name=f"maskopt-worker-{p.index}"
        )
        for p in plan_workers(opts.gpus, opts.workers)
    ]
    for p in procs:
        p.start()
    interrupted = False
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        # Ctrl-C reaches the workers too (same process group): each marks its trial and exits.
        interrupted = True
        deadline = time.monotonic() + 60
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(5)
    problems = []
    for i, p in enumerate(procs):
        code = p.exitcode
        if code == 3:
            problems.append(f"worker {i} stopped after {MAX_FAILS_IN_A_ROW} failed trials in a row")
        elif code == 130:
            interrupted = True
        elif code not in (0, None):
            problems.append(f"worker {i} exited with code {code}")
    return interrupted, problems
