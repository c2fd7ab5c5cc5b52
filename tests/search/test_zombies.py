"""A running trial whose worker is gone from this machine is failed at once and requeued; the
trials of live workers, and of other machines, are left to run (and to heartbeats)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import optuna
import pytest

from maskopt.search.zombies import DIED, is_alive, process_start, reap, this_worker
from maskopt.store.records import WORKER, Worker, read_trials
from maskopt.store.storage import create_storage

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="process start times come from Linux's /proc"
)


def _dead_worker() -> Worker:
    """A worker of this machine whose process ran and is gone (its pid reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    start = process_start(proc.pid)
    assert start is not None
    proc.kill()
    proc.wait()
    return dataclasses.replace(this_worker(), pid=proc.pid, start=start)


def test_a_worker_is_alive_until_it_exits_even_unreaped() -> None:
    me = this_worker()
    assert is_alive(me) and process_start(me.pid) == me.start
    # a pid taken again by a later process is not the worker: the start time differs
    assert not is_alive(dataclasses.replace(me, start=(me.start or 0) + 1))
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child = dataclasses.replace(me, pid=proc.pid, start=process_start(proc.pid))
    assert is_alive(child)
    proc.kill()
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert not is_alive(child)
    proc.wait()
    assert not is_alive(child) and process_start(proc.pid) is None


def test_reap_fails_the_dead_workers_trials_of_this_machine_only(tmp_path) -> None:
    storage = create_storage(f"sqlite:///{tmp_path / 'm.db'}", heartbeat=False)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    dead, me = _dead_worker(), this_worker()
    workers = {
        "dead here": dead.to_attr(),
        "alive here": me.to_attr(),
        "other machine": dataclasses.replace(dead, host="elsewhere").to_attr(),
        "same name, other pid space": dataclasses.replace(dead, space="other").to_attr(),
    }
    numbers = {}
    for what, attr in workers.items():
        trial = study.ask()
        trial.suggest_float("lr", 1e-3, 1e-1)
        trial.set_user_attr(WORKER, attr)
        numbers[what] = trial.number

    assert reap(study, storage) == [numbers["dead here"]]
    assert reap(study, storage) == []  # nothing left to reap, nothing queued twice
    records = read_trials(study)
    by_number = {r.number: r for r in records}
    killed = by_number[numbers["dead here"]]
    assert killed.state == "FAIL" and killed.fail_reason == DIED
    assert {r.number: r.state for r in records if r.number != killed.number} == {
        numbers["alive here"]: "RUNNING",
        numbers["other machine"]: "RUNNING",
        numbers["same name, other pid space"]: "RUNNING",
        4: "WAITING",
    }
    rerun = by_number[4]
    assert (rerun.retry_of, rerun.retries) == (killed.number, 1)
    assert study.get_trials()[4].system_attrs["fixed_params"] == killed.params
