"""One worker: runs trials of a study until it holds --trials finished ones.

Every worker (the only one, or one of --workers N processes, or one per machine on a shared
PostgreSQL URL) runs this same loop over Optuna's `study.optimize`, which is what gives the
heartbeat: a trial whose worker dies stops beating, the next worker to start a trial marks
it FAIL and RetryHeartbeatStaleTrialCallback queues a copy of it (same params) to run again.
"""

from __future__ import annotations

import gc
import importlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from maskopt.errors import StudyError
from maskopt.search.options import SearchOptions

if TYPE_CHECKING:
    import optuna

FINISHED = ("COMPLETE", "PRUNED")
# A worker that sees this many failures in a row stops: the space or the data is broken, and
# failed trials do not count towards --trials, so it would otherwise never end.
MAX_FAILS_IN_A_ROW = 5
INTERRUPTED = "interrupted (Ctrl-C): not counted; the resumed search runs this config again"


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
    from maskopt.errors import MaskoptError

    if isinstance(err, MaskoptError):
        return str(err)
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def count_finished(study: optuna.Study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def run_worker(opts: SearchOptions, index: int = 0, objective: Any = None) -> WorkerResult:
    """Run trials until the study holds opts.trials finished ones (or timeout / Ctrl-C)."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from maskopt.search.models import drop_pushed_out_models
    from maskopt.search.samplers import create_pruner, create_sampler
    from maskopt.search.study import open_study
    from maskopt.spaces import get_space
    from maskopt.studies.storage import artifacts_dir_for, create_artifact_store, create_storage

    storage = create_storage(opts.storage, heartbeat=True, interval=opts.heartbeat)
    # Optuna logs every failed trial with its traceback; maskopt records the reason in the
    # trial (fail_reason) and shows it in the progress and the summary instead.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    objective = objective if objective is not None else load_objective(opts)
    artifacts_dir = artifacts_dir_for(opts.storage, opts.artifacts)
    store = create_artifact_store(artifacts_dir)
    study = open_study(opts, storage, objective.study_attrs, str(artifacts_dir))
    space = get_space(opts.space) if opts.sampler == "grid" else None
    seed = (
        None if opts.seed is None else opts.seed + index
    )  # same seed: same params in every worker
    study.sampler = create_sampler(
        opts.sampler, seed=seed, space=space, startup_trials=opts.startup_trials
    )
    max_steps = opts.folds if opts.report == "fold" else int(objective.study_attrs.get("epochs", 1))
    study.pruner = create_pruner(
        opts.pruner,
        startup_trials=opts.startup_trials,
        warmup_steps=opts.warmup_steps,
        max_steps=max_steps,
    )
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    state: dict[str, Any] = {"ran": 0, "fails": 0, "reason": None}

    def run_trial(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", worker_id)
        try:
            return float(objective(trial))
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            # FAIL, not PRUNED: a PRUNED trial counts towards --trials and its partial values
            # would feed the pruner's medians as if the config had been judged bad. The same
            # params go back in the queue, so the resumed search runs them first.
            trial.set_user_attr("fail_reason", INTERRUPTED)
            trial.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            raise
        except Exception as err:  # a bad config, out of memory...: FAIL with the reason, go on
            trial.set_user_attr("fail_reason", fail_reason(err))
            raise
        finally:
            _free_device_memory()

    def after_trial(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        state["ran"] += 1
        if frozen.state == TrialState.FAIL:
            state["fails"] += 1
            state["reason"] = frozen.user_attrs.get("fail_reason")
            if state["fails"] >= MAX_FAILS_IN_A_ROW:
                study.stop()
        else:
            state["fails"] = 0
        if frozen.state == TrialState.COMPLETE:
            drop_pushed_out_models(study, storage, store, opts.keep_models)

    interrupted = False
    if count_finished(study) < opts.trials:
        try:
            study.optimize(
                run_trial,
                timeout=opts.timeout,
                catch=(Exception,),
                callbacks=[
                    MaxTrialsCallback(opts.trials, states=(TrialState.COMPLETE, TrialState.PRUNED)),
                    after_trial,
                ],
                gc_after_trial=True,
            )
        except KeyboardInterrupt:
            interrupted = True
    storage.remove_session()
    return WorkerResult(state["ran"], state["fails"], state["reason"], interrupted)


def _free_device_memory() -> None:
    """Give the GPU's cached blocks back after a trial (OOM or not); the objective has already
    closed its models. Optuna's gc_after_trial collects host memory after every trial."""
    import sys

    torch = sys.modules.get("torch")  # only if the objective used it
    if torch is not None and torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


def worker_main(opts: SearchOptions, index: int, env: dict[str, str]) -> None:
    """Entry point of a spawned worker process (see maskopt.search.runner).

    `env`: its GPU, share of cores and threads (maskopt.search.gpus.plan_workers), set
    before anything imports torch."""
    os.environ.update(env)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    try:
        result = run_worker(opts, index)
    except StudyError as err:
        raise SystemExit(f"worker {index}: {err}") from None
    if result.failed_in_a_row >= MAX_FAILS_IN_A_ROW:
        raise SystemExit(3)
    if result.interrupted:
        raise SystemExit(130)
