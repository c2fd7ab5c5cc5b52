"""`maskopt search --workers 2` SIGKILLed mid-trial as a whole (the parent and its workers),
then the same command run again at once, with the real k-fold objective on the tiny set.

The rerun must end with exactly --trials finished trials and none RUNNING: the killed trials
are failed at once (their worker's pid is gone on this host; the heartbeat grace, 60 s by
default, is not waited for), their parameters run again, and no fold-model file is left
without a trial that lists it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from maskopt.search.zombies import DIED
from maskopt.store import records as r
from maskopt.store.locations import create_artifact_store
from maskopt.store.storage import create_storage

MASKOPT = str(Path(sys.executable).parent / "maskopt")
ROOT = Path(__file__).resolve().parents[2]
TRIALS = 3

SPACE = """
name: killable
epochs: 1
params:
  backbone: test_resnet
  image_size: 48
  batch_size: 32
  lr: {low: 1.0e-3, high: 3.0e-2, log: true}
  augment: 0
"""


def _command(data: Path, space: Path, url: str, study: str, artifacts: Path) -> list[str]:
    return [
        MASKOPT, "search", "--data", str(data), "--space", str(space), "--trials", str(TRIALS),
        "--folds", "2", "--workers", "2", "--storage", url, "--study", study,
        "--artifacts", str(artifacts), "--seed", "0", "--device", "cpu",
        "--keep-models", str(TRIALS), "--startup-trials", str(TRIALS),
    ]  # fmt: skip


def _kill_when_both_workers_train(proc: subprocess.Popen, url: str, study: str) -> list[int]:
    """SIGKILL the search's process group once both workers train a sampled config; returns
    the trials left RUNNING by the kill."""
    storage = create_storage(url, heartbeat=False)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            trials = optuna.load_study(study_name=study, storage=storage).get_trials()
        except KeyError:
            time.sleep(0.2)
            continue
        running = [t for t in trials if t.state.name == "RUNNING" and r.CONFIG in t.user_attrs]
        if len(running) == 2:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            trials = optuna.load_study(study_name=study, storage=storage).get_trials()
            storage.remove_session()
            return [t.number for t in trials if t.state.name == "RUNNING"]
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"never saw both workers in a trial: {proc.communicate()[0][-2000:]}")


@pytest.mark.slow
def test_a_killed_search_run_again_ends_whole_and_exact(
    storage_url, study_name, tiny_data, tmp_path
):
    space = tmp_path / "killable.yaml"
    space.write_text(SPACE)
    artifacts = tmp_path / "artifacts"
    command = _command(tiny_data, space, storage_url, study_name, artifacts)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    first = subprocess.Popen(
        command,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the kill takes the workers too
    )
    killed = _kill_when_both_workers_train(first, storage_url, study_name)
    assert killed, "the kill left no trial RUNNING"

    again = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stdout + again.stderr

    study = optuna.load_study(study_name=study_name, storage=create_storage(storage_url, False))
    records = r.read_trials(study)
    by_number = {x.number: x for x in records}
    assert (
        sum(x.finished for x in records) == TRIALS
    )  # exactly --trials, over all workers and both runs
    assert [x.number for x in records if x.state == "RUNNING"] == []
    for number in killed:
        dead = by_number[number]
        assert dead.state == "FAIL" and dead.fail_reason == DIED, dead
        reruns = [x for x in records if x.retry_of == number]
        assert len(reruns) == 1 and reruns[0].finished, reruns
        assert reruns[0].params == dead.params
    assert [x.number for x in records if x.state == "FAIL"] == sorted(killed)
    # No fold-model file without a trial that lists it; the FAIL trials' files are gone.
    listed = {m for x in records for m in x.model_artifacts}
    files = {p.name for p in artifacts.iterdir() if p.name.startswith("maskopt-model-")}
    assert files <= listed, files - listed
    store = create_artifact_store(artifacts)
    assert all(r.kept_models(store, by_number[n]) == () for n in killed)
    assert "Traceback" not in again.stdout + again.stderr
