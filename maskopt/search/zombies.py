"""Trials whose worker died on this host: failed at once and their parameters queued again.

A running trial records its worker (records.WORKER: host, pid, process start time). A dead
worker on another host is known only by its silence (Optuna's heartbeats and grace period);
on this host the answer is immediate: its pid is gone, or belongs to a process started at
another time (pids are reused). Only Optuna's public storage API is used.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from maskopt.store.records import FAIL_REASON, Worker, read_trials, requeue

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

DIED = "its worker died (found gone on its host); its parameters are queued again"


def process_start(pid: int) -> int | None:
    """The start time of process `pid` (clock ticks after boot, /proc/PID/stat field 22);
    None when there is no such live process (a zombie that only waits for its parent to reap it
    is dead too) or no /proc to ask."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")"
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def pid_space() -> str | None:
    """This machine's boot and this process's pid namespace: processes with the same value see
    the same pids (None where Linux's /proc does not tell)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


def this_worker() -> Worker:
    pid = os.getpid()
    return Worker(socket.gethostname(), pid, process_start(pid), pid_space())


def is_here(worker: Worker) -> bool:
    """Whether the worker ran on this machine, in this pid namespace (whose pids we can ask)."""
    return worker.host == socket.gethostname() and worker.space == pid_space()


def is_alive(worker: Worker) -> bool:
    """Whether the worker process (of this machine) still runs."""
    if os.path.exists("/proc/self/stat"):
        start = process_start(worker.pid)
        return start is not None and (worker.start is None or start == worker.start)
    try:  # no /proc (macOS): whether the pid exists at all
        os.kill(worker.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process has that pid now: not ours, but cannot tell
    return True


def reap(study: optuna.Study, storage: BaseStorage) -> list[int]:
    """Fail the RUNNING trials of this host whose worker is gone and queue their parameters
    again; returns their numbers. Safe when several workers reap at once: the one whose state
    change succeeds queues the rerun."""

    study_id = None
    reaped = []
    for r in read_trials(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))):
        if r.worker is None or not is_here(r.worker) or is_alive(r.worker):
            continue
        if study_id is None:
            study_id = storage.get_study_id_from_name(study.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, r.number)
        try:
            storage.set_trial_user_attr(trial_id, FAIL_REASON, DIED)
            if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue  # it ended, or another worker reaped it first
        requeue(study, r, died=True)
        reaped.append(r.number)
    return reaped
