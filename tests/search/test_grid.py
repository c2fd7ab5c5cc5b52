"""`maskopt search --sampler grid` ends like any other search when its grid is done: the summary
table, exit 0, and a line saying the grid held fewer configurations than --trials (Optuna's
GridSampler calls study.stop(), which raises outside study.optimize: the worker loop sees the
end itself)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from maskopt.cli import app
from maskopt.store.records import read_trials
from maskopt.store.storage import load_study

runner = CliRunner(env={"COLUMNS": "200"})

GRID_SPACE = """
name: grid
epochs: 1
params:
  backbone: test_resnet
  image_size: 32
  batch_size: 32
  augment: 0
  lr: {low: 1.0e-3, high: 3.0e-2, log: true, grid: [0.01]}
  loss: [cross_entropy, focal]
  focal_gamma: {low: 1.0, high: 3.0, when: {loss: focal}, grid: [2.0]}
"""


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_a_grid_smaller_than_trials_ends_with_its_table(
    workers: int, tiny_data: Path, tmp_path: Path
) -> None:
    space = tmp_path / "grid.yaml"
    space.write_text(GRID_SPACE)
    url = f"sqlite:///{tmp_path / 'm.db'}"
    args = ["search", "--data", str(tiny_data), "--space", str(space), "--sampler", "grid"]
    args += ["--folds", "2", "--trials", "6", "--seed", "0", "--device", "cpu", "--storage", url]
    res = runner.invoke(app, [*args, "--workers", str(workers), "--pruner", "none"])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output and "RuntimeError" not in res.output
    assert "the grid holds 2 configuration(s), fewer than --trials 6: all of them ran" in res.output
    assert "trials: " in res.output and "next: maskopt best" in res.output  # the summary
    trials = read_trials(load_study(url, "maskopt"))
    points = {(t.params["lr"], t.params["loss"]) for t in trials}
    assert len(trials) == 2 and len(points) == 2  # each point once, none run twice
    assert all(t.state in ("COMPLETE", "PRUNED", "FAIL") for t in trials)
    # run again: nothing is left, it says so and ends at once
    again = runner.invoke(app, [*args, "--workers", str(workers)])
    assert again.exit_code == 0, again.output
    assert "all of them ran" in again.output
    assert len(load_study(url, "maskopt").trials) == 2
