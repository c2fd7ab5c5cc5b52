"""--trials N ends with exactly N finished trials: a worker waits while another's trial may
still fill the last place, and fills it if that trial fails."""

from __future__ import annotations

import threading
import time

import optuna
from optuna.trial import TrialState

from maskopt.search.options import SearchOptions
from maskopt.search.study import open_study
from maskopt.search.worker import load_objective, may_run, run_worker
from maskopt.search.zombies import this_worker
from maskopt.store.records import WORKER, count_states
from maskopt.store.storage import create_storage
from tests.search.conftest import FAKE


def test_may_run_counts_every_lower_trial_that_may_still_finish(tmp_path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'm.db'}", direction="maximize")
    study.tell(study.ask(), 0.5)  # 0 COMPLETE
    study.tell(study.ask(), state=TrialState.FAIL)  # 1 FAIL: does not count
    study.ask()  # 2 RUNNING
    study.enqueue_trial({})  # 3 WAITING
    trials = study.get_trials()
    assert may_run(trials, 4, 4) and not may_run(trials, 4, 3)  # 0, 2 and 3 are below 4
    assert may_run(trials, 3, 3) and not may_run(trials, 3, 2)  # 0 and 2 are below 3
    assert may_run(trials, 2, 2)  # only 0 is below 2


def test_a_worker_waits_for_a_running_trial_and_fills_its_place_if_it_fails(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("FAKE_SLEEP", "0")
    url = f"sqlite:///{tmp_path / 'm.db'}"
    opts = SearchOptions(storage=url, trials=2, seed=0, heartbeat=1, objective=FAKE)
    objective = load_objective(opts)
    storage = create_storage(url, heartbeat=False)
    study, _ = open_study(opts, storage, objective.settings)
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.5)
    other = study.ask()  # another worker's trial, alive (this process) and running
    other.set_user_attr(WORKER, this_worker().to_attr())

    def other_worker_fails_later() -> None:
        time.sleep(3)
        study.tell(other, state=TrialState.FAIL)

    failing = threading.Thread(target=other_worker_fails_later)
    started = time.monotonic()
    failing.start()
    result = run_worker(opts, 0, objective)
    failing.join()
    # It did not start a trial that could have made 3 finished; it ran one once a place was free.
    assert time.monotonic() - started >= 3
    assert result.ran == 1
    assert count_states(optuna.load_study(study_name=opts.study, storage=storage)) == {
        "COMPLETE": 2,
        "FAIL": 1,
    }
