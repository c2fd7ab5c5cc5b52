"""`run_search`: one worker in this process, or N worker processes on the same storage.

Workers share nothing but the storage (and the artifact folder): each runs
`maskopt.search.worker.run_worker`, exactly what a worker on another machine runs with a
PostgreSQL URL. This process shows the progress by reading the storage, like any reader.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from maskopt.search.options import SearchOptions
from maskopt.search.worker import MAX_FAILS_IN_A_ROW, load_objective, run_worker, worker_main

if TYPE_CHECKING:
    from optuna.storages import RDBStorage
    from rich.console import Console

POLL_S = 1.0


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str
    value: float | None
    epochs_run: int | None
    duration_s: float | None
    note: str  # fail reason, prune step, retry


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
    trials: list[TrialRow] = field(default_factory=list)
    interrupted: bool = False
    problems: list[str] = field(default_factory=list)  # worker exits, fail streaks

    @property
    def finished(self) -> int:
        return self.counts.get("COMPLETE", 0) + self.counts.get("PRUNED", 0)


def summarize(
    storage: RDBStorage,
    opts: SearchOptions,
    artifacts_dir: str,
    wall_s: float,
    interrupted: bool = False,
    problems: list[str] | None = None,
) -> SearchSummary:
    import optuna

    study = optuna.load_study(study_name=opts.study, storage=storage)
    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    rows = []
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
        note = t.user_attrs.get("fail_reason", "")
        if t.state.name == "FAIL" and not note:
            note = "its worker stopped (no heartbeat); retried with the same params"
        if t.state.name == "PRUNED" and t.intermediate_values:
            note = f"pruned at step {max(t.intermediate_values)}"
        retried = t.system_attrs.get("failed_trial")
        if retried is not None:
            note = (note + "; " if note else "") + f"retry of trial {retried}"
        if t.user_attrs.get("retry_of") is not None:
            note = (
                note + "; " if note else ""
            ) + f"rerun of interrupted trial {t.user_attrs['retry_of']}"
        rows.append(
            TrialRow(
                t.number,
                t.state.name,
                t.value,
                t.user_attrs.get("epochs_run"),
                t.user_attrs.get("duration_s"),
                note,
            )
        )
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
    return SearchSummary(
        study=opts.study,
        storage=opts.storage,
        artifacts_dir=artifacts_dir,
        trials_wanted=opts.trials,
        counts=counts,
        best_number=best.number if best else None,
        best_value=best.value if best else None,
        best_params=dict(best.params) if best else {},
        total_epochs=sum(int(t.user_attrs.get("epochs_run", 0) or 0) for t in trials),
        wall_s=round(wall_s, 1),
        trials=rows,
        interrupted=interrupted,
        problems=list(problems or []),
    )


class _ProgressView:
    """A rich progress line fed by reading the storage every second (works for any worker)."""

    def __init__(self, opts: SearchOptions, console: Console | None) -> None:
        self.opts = opts
        self.console = console
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _ProgressView:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            BarColumn(bar_width=12),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.task = self.progress.add_task("starting", total=self.opts.trials)
        self.progress.start()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        from maskopt.studies.storage import create_storage

        storage = create_storage(self.opts.storage, heartbeat=False)
        while not self._stop.is_set():
            self._refresh(storage)
            self._stop.wait(POLL_S)
        self._refresh(storage)
        storage.remove_session()

    def _refresh(self, storage: RDBStorage) -> None:
        import optuna

        try:
            study = optuna.load_study(study_name=self.opts.study, storage=storage)
            trials = study.get_trials(deepcopy=False)
        except Exception:  # the study may not exist yet in the first second; try again
            return
        n = {s: 0 for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
        durations = []
        for t in trials:
            n[t.state.name] = n.get(t.state.name, 0) + 1
            if t.state.name in ("COMPLETE", "PRUNED") and t.datetime_start and t.datetime_complete:
                durations.append((t.datetime_complete - t.datetime_start).total_seconds())
        complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
        best = max(complete, key=lambda t: t.value or 0.0) if complete else None
        text = (
            f"[green]{n['COMPLETE']} ok[/] [yellow]{n['PRUNED']} pruned[/] "
            f"[red]{n['FAIL']} failed[/] {n['RUNNING']} run"
        )
        if best is not None:
            text += f" | best {best.value:.4f} (#{best.number})"
        if durations:
            text += f" | {sum(durations) / len(durations):.0f} s/trial"
        self.progress.update(
            self.task,
            completed=min(n["COMPLETE"] + n["PRUNED"], self.opts.trials),
            description=text,
        )

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.progress.stop()


def run_search(
    opts: SearchOptions, *, show_progress: bool = True, console: Console | None = None
) -> SearchSummary:
    """Run (or resume) the study until it holds opts.trials finished trials; summary at the end."""
    from maskopt.search.study import open_study
    from maskopt.studies.storage import artifacts_dir_for, create_storage

    started = time.perf_counter()
    storage = create_storage(opts.storage, heartbeat=False)  # a bad URL fails here, in one line
    artifacts_dir = str(artifacts_dir_for(opts.storage, opts.artifacts))
    objective = load_objective(opts)  # bad data or space fails here, before any worker starts
    # Create (or check) the study once, before any progress or worker: a study made with other
    # folds or data fails here in one line, and workers on this machine only load it.
    open_study(opts, storage, objective.study_attrs, artifacts_dir)
    problems: list[str] = []
    interrupted = False
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
            interrupted, problems = _run_processes(opts)
    finally:
        if view is not None:
            view.__exit__(None, None, None)
    summary = summarize(
        storage, opts, artifacts_dir, time.perf_counter() - started, interrupted, problems
    )
    storage.remove_session()
    return summary


def _run_processes(opts: SearchOptions) -> tuple[bool, list[str]]:
    """Spawn one process per worker (one per GPU with --gpus) and wait for them."""
    from maskopt.search.gpus import plan_workers

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
