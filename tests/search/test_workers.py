"""Several worker processes on one storage (SQLite and PostgreSQL), one SIGKILLed mid-trial,
while optuna-dashboard (started by `maskopt dashboard`) reads the same storage.

The objective is the fast fake (tests/search/fake.py) driven through the real runner and
worker code. The killed worker's trial is failed by a live worker of the same machine as soon
as it looks (its pid is gone), well before its heartbeats (3 s) would go stale.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from maskopt.search.options import SearchOptions
from maskopt.search.runner import run_search
from maskopt.search.zombies import DIED
from maskopt.store.records import FAIL_REASON, RETRY_OF
from maskopt.store.storage import create_storage
from tests.search.conftest import FAKE

ROOT = Path(__file__).resolve().parents[2]
MASKOPT = str(Path(sys.executable).parent / "maskopt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DashboardReader:
    """`maskopt dashboard` in a process, and a thread that keeps reading the study through it."""

    def __init__(self, storage_url: str, study_name: str, artifacts: Path) -> None:
        self.port = _free_port()
        self.study_name = study_name
        self.proc = subprocess.Popen(
            [
                MASKOPT,
                "dashboard",
                "--storage",
                storage_url,
                "--artifacts",
                str(artifacts),
                "--port",
                str(self.port),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        self.reads = 0
        self.detail_reads = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as r:
            assert r.status == 200, r.status
            return json.loads(r.read())

    def _loop(self) -> None:
        deadline = time.monotonic() + 60
        while not self._stop.is_set():  # wait for the server to listen
            try:
                self._get("/api/meta")
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.errors.append("dashboard never answered")
                    return
                time.sleep(0.2)
        while not self._stop.is_set():
            try:
                studies = self._get("/api/studies")["study_summaries"]
                self.reads += 1
                ids = [s["study_id"] for s in studies if s["study_name"] == self.study_name]
                if ids:
                    self._get(f"/api/studies/{ids[0]}")
                    self.detail_reads += 1
            except Exception as err:  # every failed read is a finding
                self.errors.append(repr(err))
            time.sleep(0.1)

    def stop(self) -> str:
        self._stop.set()
        self._thread.join(timeout=30)
        self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out


def _kill_one_worker_mid_trial(storage_url: str, study_name: str, killed: dict) -> None:
    """Once 2 trials are finished, SIGKILL the worker process of a RUNNING trial."""
    storage = create_storage(storage_url, heartbeat=False)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            study = optuna.load_study(study_name=study_name, storage=storage)
        except KeyError:
            time.sleep(0.1)
            continue
        trials = study.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        # A trial that has not reported its first step yet is far from its end, so its worker
        # dies mid-trial (not between two trials) even on a busy machine.
        running = [
            t
            for t in trials
            if t.state == TrialState.RUNNING and "pid" in t.user_attrs and not t.intermediate_values
        ]
        if len(finished) >= 2 and running:
            pid = int(running[0].user_attrs["pid"])
            os.kill(pid, signal.SIGKILL)
            killed.update(pid=pid, number=running[0].number)
            break
        time.sleep(0.05)
    storage.remove_session()


@pytest.mark.slow
def test_workers_survive_a_killed_worker_and_a_reading_dashboard(
    storage_url, study_name, tmp_path, monkeypatch
):
    monkeypatch.setenv("FAKE_SLEEP", "0.9")
    artifacts = tmp_path / "artifacts"
    opts = SearchOptions(
        storage=storage_url,
        study=study_name,
        artifacts=artifacts,
        trials=14,
        workers=3,
        heartbeat=3,
        seed=0,
        startup_trials=3,
        objective=FAKE,
    )
    dash = DashboardReader(storage_url, study_name, artifacts)
    killed: dict = {}
    killer = threading.Thread(
        target=_kill_one_worker_mid_trial, args=(storage_url, study_name, killed)
    )
    killer.start()
    try:
        summary = run_search(opts, show_progress=False)
    finally:
        killer.join()
        dash_out = dash.stop()

    assert killed, "no worker was killed mid-trial"
    storage = create_storage(storage_url, heartbeat=False)
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    # --trials counts finished trials over all workers: exactly, not one more per worker.
    assert len(finished) == opts.trials
    # The killed worker's trial was failed by a live worker of this host as soon as it looked
    # (its pid is gone: a zombie its parent has not reaped yet counts as gone), and a copy with
    # its params ran again. (Its trial is the one read as RUNNING before the kill; should that
    # one have just ended, the worker's next trial, which carries the same pid.)
    fails = [t for t in trials if t.state == TrialState.FAIL]
    assert len(fails) == 1, [(t.number, t.user_attrs) for t in fails]
    dead = fails[0]
    assert dead.number == killed["number"] or dead.user_attrs.get("pid") == killed["pid"]
    assert dead.user_attrs[FAIL_REASON] == DIED
    retries = [t for t in trials if t.user_attrs.get(RETRY_OF) == dead.number]
    assert len(retries) == 1 and retries[0].params == dead.params
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.WAITING)
    # Every trial is accounted for: nothing left RUNNING, and the only FAIL is the killed one.
    assert [t.number for t in trials if t.state == TrialState.RUNNING] == []
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [dead.number]
    # The killed worker shows up as a problem; no worker failed in any other way.
    assert summary.problems == [
        f"worker {w} exited with code -9"
        for w in range(3)
        if f"worker {w} exited with code -9" in summary.problems
    ]
    assert len(summary.problems) == 1
    # optuna-dashboard read the study all along without an error, and never locked the workers out.
    assert dash.errors == []
    assert dash.detail_reads >= 5
    assert "database is locked" not in dash_out
    assert not any("locked" in str(t.user_attrs.get("fail_reason", "")) for t in trials)
    storage.remove_session()


@pytest.mark.slow
def test_resumed_search_runs_only_what_is_missing_and_optuna_cli_reads_it(
    storage_url, study_name, tmp_path, monkeypatch
):
    monkeypatch.setenv("FAKE_SLEEP", "0.05")
    base = dict(
        storage=storage_url,
        study=study_name,
        artifacts=tmp_path / "a",
        seed=1,
        startup_trials=2,
        objective=FAKE,
        heartbeat=1,
    )
    first = run_search(SearchOptions(trials=4, **base), show_progress=False)
    assert first.finished == 4
    again = run_search(SearchOptions(trials=4, **base), show_progress=False)
    assert again.finished == 4 and len(again.trials) == 4  # nothing to do
    more = run_search(SearchOptions(trials=7, workers=2, **base), show_progress=False)
    assert more.finished == 7

    # Optuna's own CLI reads the study the search wrote.
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "optuna"),
            "trials",
            "--study-name",
            study_name,
            "--storage",
            storage_url,
            "-f",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    rows = json.loads(out)
    assert len(rows) == len(more.trials)
    # On a server, two workers may ask for the last place at the same moment: the one that
    # lost puts its fresh trial back in the queue (WAITING) for the next run.
    assert {r["state"] for r in rows} <= {"COMPLETE", "PRUNED", "WAITING"}
    assert sum(r["state"] == "WAITING" for r in rows) <= 1
    assert max(r["value"] for r in rows if r["state"] == "COMPLETE") == pytest.approx(
        more.best_value
    )
