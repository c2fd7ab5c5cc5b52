"""One worker: runs trials of a study until it holds exactly --trials finished ones.

Every worker (the only one, one of --workers N processes, or one per machine on a shared
PostgreSQL URL) runs this same loop of Optuna's `ask` and `tell`, with a heartbeat recorded
while a trial runs: a trial whose worker dies stops beating, the next worker to look after
the grace period fails it (optuna.storages.fail_stale_trials) and the storage's callback
queues its parameters again (records.requeue). Around that, three things `study.optimize`
does not do:

- Exactly N. A trial runs only if fewer than N trials numbered below it are finished,
  running or queued; otherwise it goes back to the queue (WAITING) as it was. Numbers follow
  creation, and every trial that may still finish counts for the higher-numbered ones, so
  at most N finish; and while trials run with fewer than N finished, the others wait, in
  case one fails and its place must be filled.
- Dead workers of this host are failed at once (maskopt.search.zombies), not after the grace.
- The fold models of FAIL and pushed-out trials are swept after every trial (search.models).
"""

from __future__ import annotations

import importlib
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from maskopt.errors import MaskoptError
from maskopt.search.models import Sweeper
from maskopt.search.options import SearchOptions
from maskopt.search.samplers import create_pruner, create_sampler, grid_left
from maskopt.search.zombies import reap, this_worker
from maskopt.spaces import get_space
from maskopt.store.locations import artifacts_dir_for, create_artifact_store
from maskopt.store.records import FAIL_REASON, FINISHED, WORKER, count_finished, read_trial, requeue
from maskopt.store.storage import create_storage, storage_lock
from maskopt.trainer.memory import free_memory, frozen_heap

if TYPE_CHECKING:
    from optuna.storages import RDBStorage
    from optuna.trial import FrozenTrial

# A worker that sees this many failures in a row stops: the space or the data is broken, and
# failed trials do not count towards --trials, so it would otherwise never end.
MAX_FAILS_IN_A_ROW = 5
INTERRUPTED = "interrupted (Ctrl-C): not counted; the resumed search runs this config again"
WAIT_S = 1.0  # between looks at the study while other workers' trials decide the count
COUNTED = (*FINISHED, "RUNNING", "WAITING")  # trials that may still finish


@dataclass(frozen=True)
class WorkerResult:
    ran: int  # trials this worker finished (any state)
    failed_in_a_row: int
    last_fail_reason: str | None
    interrupted: bool


def load_objective(opts: SearchOptions) -> Any:
    """The objective object `opts.objective` ("module:factory") makes for `opts`."""
    module, _, name = opts.objective.partition(":")
    factory: Callable[[SearchOptions], Any] = getattr(importlib.import_module(module), name)
    return factory(opts)


def fail_reason(err: BaseException) -> str:

    if isinstance(err, MaskoptError):
        return str(err)
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class Heartbeat:
    """Records the trial's heartbeat every interval while the `with` block runs (what
    `study.optimize` does for its trials)."""

    def __init__(self, storage: RDBStorage, trial_id: int) -> None:
        self.storage = storage
        self.trial_id = trial_id
        self.interval = storage.get_heartbeat_interval()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="maskopt-heartbeat")

    def _beat(self) -> None:
        assert self.interval is not None
        while True:
            self.storage.record_heartbeat(self.trial_id)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> Heartbeat:
        if self.interval is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def look_after(study: optuna.Study, storage: RDBStorage) -> None:
    """Fail the trials of dead workers: at once on this host, after the grace elsewhere."""

    reap(study, storage)
    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def ask(study: optuna.Study) -> optuna.Trial:
    """study.ask, without Optuna's warning that heartbeats are meant for study.optimize: this
    loop records them itself (Heartbeat), as optimize does."""

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        return study.ask()


def may_run(trials: list[optuna.trial.FrozenTrial], number: int, n: int) -> bool:
    """Whether trial `number` fits under --trials `n`: fewer than n trials numbered below it
    may still finish."""
    return sum(t.number < number and t.state.name in COUNTED for t in trials) < n


def run_worker(opts: SearchOptions, index: int = 0, objective: Any = None) -> WorkerResult:
    """Run trials until the study holds opts.trials finished ones (or timeout / Ctrl-C).
    The study exists and matches (maskopt.search.study.open_study, in run_search)."""

    objective = objective if objective is not None else load_objective(opts)
    with frozen_heap():  # the imports and the data stay out of every trial's collections
        return _run_trials(opts, index, objective)


def _run_trials(opts: SearchOptions, index: int, objective: Any) -> WorkerResult:

    storage = create_storage(opts.storage, heartbeat=True, interval=opts.heartbeat)
    store = create_artifact_store(artifacts_dir_for(opts.storage, opts.artifacts))
    seed = None if opts.seed is None else opts.seed + index  # same seed: same params everywhere
    if opts.sampler == "grid":
        seed = opts.seed  # one seed for all: a grid point's id must name the same point in each
    sampler = create_sampler(
        opts.sampler,
        seed=seed,
        space=get_space(opts.space) if opts.sampler == "grid" else None,
        startup_trials=opts.startup_trials,
    )
    study = optuna.load_study(
        study_name=opts.study,
        storage=storage,
        sampler=sampler,
        pruner=create_pruner(
            opts.pruner,
            startup_trials=opts.startup_trials,
            warmup_steps=opts.warmup_steps,
            max_steps=max_steps(opts, objective),
        ),
    )
    study_id = storage.get_study_id_from_name(opts.study)
    worker = this_worker().to_attr()
    sweep = Sweeper(store, opts.keep_models)
    deadline = None if opts.timeout is None else time.monotonic() + opts.timeout
    ran = fails = 0
    reason: str | None = None
    interrupted = False
    try:
        sweep(study)
        while fails < MAX_FAILS_IN_A_ROW and (deadline is None or time.monotonic() < deadline):
            with storage_lock(opts.storage):  # SQLite: the workers of this machine take turns
                look_after(study, storage)
                trials = study.get_trials(deepcopy=False)
                finished = count_finished(trials)
                running = sum(t.state == TrialState.RUNNING for t in trials)
                grid = grid_left(sampler, trials)  # None unless --sampler grid
                if finished >= opts.trials or (grid is not None and grid.unfinished == 0):
                    break
                # While finished + running reach N, one of those running may still fail: wait;
                # so too while the grid's last points run (one may be killed and queued again).
                more = finished + running < opts.trials and (grid is None or grid.unstarted > 0)
                trial = ask(study) if more else None
            if trial is None:
                time.sleep(WAIT_S)
                continue
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            if not may_run(study.get_trials(deepcopy=False), trial.number, opts.trials):
                # A worker elsewhere took the last place at the same moment: back to the queue,
                # as it was (the next run takes it first).
                storage.set_trial_state_values(trial_id, TrialState.WAITING)
                time.sleep(WAIT_S)
                continue
            trial.set_user_attr(WORKER, worker)
            frozen = run_trial(study, trial, objective, Heartbeat(storage, trial_id))
            ran += 1
            if frozen.state == TrialState.FAIL:
                fails += 1
                reason = frozen.user_attrs.get(FAIL_REASON)
            else:
                fails = 0
            sweep(study)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        close = getattr(objective, "close", None)  # the k-fold objective's trackers
        if close is not None:
            close()
    storage.remove_session()
    return WorkerResult(ran, fails, reason, interrupted)


def max_steps(opts: SearchOptions, objective: Any) -> int:
    """The steps a trial reports: folds (wilcoxon) or epochs."""

    return opts.folds if opts.report == "fold" else int(objective.settings.epochs)


def run_trial(
    study: optuna.Study, trial: optuna.Trial, objective: Any, heartbeat: Heartbeat
) -> optuna.trial.FrozenTrial:
    """Run one trial and tell the study how it ended: COMPLETE, PRUNED, or FAIL with its
    reason (a bad config, out of memory...; the study goes on). Ctrl-C fails it too, queues
    its parameters again and is raised on. A trial another worker has failed meanwhile (its
    heartbeats came late) stays failed: its parameters are queued already."""

    def tell(value: float | None = None, state: TrialState | None = None) -> FrozenTrial:
        return study.tell(trial, value, state=state, skip_if_finished=True)

    try:
        with heartbeat:
            value = float(objective(trial))
    except optuna.TrialPruned:
        return tell(state=TrialState.PRUNED)
    except KeyboardInterrupt:
        # FAIL, not PRUNED: a PRUNED trial counts towards --trials and its partial values
        # would feed the pruner's medians as if the config had been judged bad. The same
        # params go back in the queue, so the resumed search runs them first.
        _set_attr_unless_finished(trial, FAIL_REASON, INTERRUPTED)
        requeue(study, read_trial(tell(state=TrialState.FAIL)), died=False)
        raise
    except Exception as err:
        _set_attr_unless_finished(trial, FAIL_REASON, fail_reason(err))
        return tell(state=TrialState.FAIL)
    finally:
        free_memory()  # what the trial left, OOM or not; its objective closed its models
    return tell(value)


def _set_attr_unless_finished(trial: optuna.Trial, key: str, value: Any) -> None:

    try:
        trial.set_user_attr(key, value)
    except UpdateFinishedTrialError:
        pass  # another worker failed it meanwhile
