"""Ctrl-C during a trial: the trial is FAIL (not counted), its params queued; a rerun resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from maskopt.search.options import SearchOptions
from maskopt.search.runner import run_search
from maskopt.search.worker import INTERRUPTED
from maskopt.store.storage import create_storage
from tests.search.conftest import FAKE

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
from maskopt.search.options import SearchOptions
from maskopt.search.runner import run_search
s = run_search(SearchOptions(storage=sys.argv[1], study="ctrlc", trials=3, seed=0, heartbeat=1,
                             objective="{fake}"), show_progress=False)
print("interrupted" if s.interrupted else "finished", s.counts)
"""


@pytest.mark.slow
def test_ctrl_c_marks_the_trial_failed_and_the_rerun_resumes(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    env = dict(os.environ, FAKE_SLEEP="30", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT.format(fake=FAKE), url],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Ctrl-C as a terminal delivers it: a test run in the background (`cmd &`, nohup)
        # ignores SIGINT, the child would inherit that and Python would then never raise
        # KeyboardInterrupt (seen: the search ran all its trials to the end)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    storage = create_storage(url, heartbeat=False)
    deadline = time.monotonic() + 60
    running = []
    while not running and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            study = optuna.load_study(study_name="ctrlc", storage=storage)
        except KeyError:
            continue
        running = [
            t for t in study.get_trials() if t.state == TrialState.RUNNING and "pid" in t.user_attrs
        ]
    if not running:  # say why: the search's own output
        proc.kill()
        pytest.fail(f"no trial started; the search printed: {proc.communicate()[0]}")
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the search did not stop after Ctrl-C; it printed: {proc.communicate()[0]}")
    assert "interrupted" in out and "Traceback" not in out, out

    study = optuna.load_study(study_name="ctrlc", storage=storage)
    trials = study.get_trials()
    first = trials[0]
    assert first.state == TrialState.FAIL and first.user_attrs["fail_reason"] == INTERRUPTED
    queued = [t for t in trials if t.state == TrialState.WAITING]
    assert len(queued) == 1 and queued[0].system_attrs["fixed_params"] == first.params

    os.environ["FAKE_SLEEP"] = "0.05"
    try:
        again = run_search(
            SearchOptions(
                storage=url, study="ctrlc", trials=3, seed=0, heartbeat=1, objective=FAKE
            ),
            show_progress=False,
        )
    finally:
        os.environ.pop("FAKE_SLEEP")
    assert again.finished == 3 and not again.interrupted
    rerun = [
        t
        for t in optuna.load_study(study_name="ctrlc", storage=storage).get_trials()
        if t.user_attrs.get("retry_of") == first.number
    ]
    assert len(rerun) == 1 and rerun[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert rerun[0].params == first.params
