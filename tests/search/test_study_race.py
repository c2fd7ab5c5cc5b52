"""Two processes starting one study at once: exactly one creates it, and a process whose
settings differ refuses in one line, even while the creator has not recorded them yet.

The race is made real and deterministic: the creating process pauses between creating the
study and recording its settings (a wrapper around maskopt.search.study.record_settings), and
the second process starts only once the study exists.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from maskopt.store.records import FOLD_SEED, N_FOLDS, count_finished
from maskopt.store.storage import create_storage
from tests.search.conftest import FAKE

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys, time
import maskopt.search.study as study_module
from maskopt.errors import StudyError
from maskopt.search.options import SearchOptions
from maskopt.search.runner import run_search

url, name, artifacts = sys.argv[1], sys.argv[2], sys.argv[3]
folds, pause = int(sys.argv[4]), float(sys.argv[5])
record = study_module.record_settings

def record_late(study, settings):
    time.sleep(pause)  # created, settings not yet recorded: the window of the race
    record(study, settings)

study_module.record_settings = record_late
opts = SearchOptions(storage=url, study=name, artifacts=artifacts, trials=2, folds=folds,
                     heartbeat=1, seed=0, objective="{fake}")
try:
    summary = run_search(opts, show_progress=False)
    print("ran", summary.finished)
except StudyError as err:
    print("refused:", err)
"""


def _start(url: str, name: str, artifacts: Path, folds: int, pause: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT.format(fake=FAKE), url, name, str(artifacts)]
        + [str(folds), str(pause)],
        env=dict(os.environ, PYTHONPATH=str(ROOT), FAKE_SLEEP="0.1"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_until_created(url: str, name: str, creator: subprocess.Popen) -> optuna.Study:
    storage = create_storage(url, heartbeat=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and creator.poll() is None:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            time.sleep(0.05)
            continue
        assert FOLD_SEED not in study.user_attrs, "the creator recorded its settings too early"
        return study
    raise AssertionError(f"the study was never created: {creator.communicate()[0]}")


@pytest.mark.slow
def test_a_second_process_with_other_folds_refuses(storage_url, study_name, tmp_path):
    first = _start(storage_url, study_name, tmp_path / "a", folds=2, pause=2.5)
    _wait_until_created(storage_url, study_name, first)
    second = _start(storage_url, study_name, tmp_path / "a", folds=3, pause=0.0)
    out2, _ = second.communicate(timeout=120)
    out1, _ = first.communicate(timeout=120)
    assert first.returncode == 0 and second.returncode == 0, out1 + out2
    assert out1.strip().splitlines()[-1] == "ran 2", out1
    assert out2.strip().splitlines()[-1] == (
        f"refused: study {study_name!r} was made with other settings, so its trials are not "
        "comparable with this search (--folds: study has 2, this search 3). Use the same "
        "settings, or another --study."
    ), out2
    study = optuna.load_study(study_name=study_name, storage=create_storage(storage_url, False))
    assert study.user_attrs[N_FOLDS] == 2 and study.user_attrs[FOLD_SEED] == 0
    assert count_finished(study) == 2
