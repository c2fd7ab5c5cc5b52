"""The whole job through the Python API, as a notebook would run it: synth -> read_data ->
search -> export -> predict, and the packages `maskopt.search` / `maskopt.export` callable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import maskopt
from maskopt.errors import ConfigError
from tests.search.test_search_tracking import TINY_SPACE


@pytest.mark.slow
def test_the_whole_job_through_the_python_api(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MASKOPT_WORKERS", "0")
    made = maskopt.synth("data", people=16, eval_people=6, size=(96, 128), progress=False)
    assert made.people == 16 and made.eval_images == 6 * 7
    data = maskopt.read_data("data")
    assert data.n_people == 16 and len(data) == 16 * 7

    Path("tiny.yaml").write_text(TINY_SPACE)
    opts = maskopt.SearchOptions(space="tiny.yaml", trials=2, folds=2, seed=0, device="cpu")
    summary = maskopt.search(opts)
    assert summary.finished == 2 and summary.best_number is not None
    assert maskopt.search(opts, trials=3).finished == 3  # resumed: one more trial

    report = maskopt.export(top=2, device="cpu", out=Path("bundle"))
    assert report.manifest.heldout is not None  # synth wrote eval/solution.csv
    pred = maskopt.predict("bundle", on_eval=True, device="cpu")
    assert pred.heldout is not None
    assert pred.heldout.value == pytest.approx(report.manifest.heldout["value"])
    with np.load(Path("bundle") / "eval_probs.npz") as z:
        assert np.allclose(pred.probs, z["probs"], atol=1e-6)
    assert {"image", "class", "mask", "gender", "age", "probability"} == set(pred.rows()[0])


def test_the_api_takes_the_commands_options_and_says_what_is_wrong() -> None:
    with pytest.raises(ConfigError, match="--trials"):
        maskopt.search(trials=0)
    with pytest.raises(ConfigError, match="--top must be >= 1"):
        maskopt.export(top=0)
    with pytest.raises(TypeError):
        maskopt.search(trails=3)  # a misspelt option is not silently ignored
    assert callable(maskopt.search) and callable(maskopt.export)
    assert maskopt.search.__name__ == "maskopt.search"  # the package, called as its function
    for name in dir(maskopt):  # everything `import maskopt` offers is there
        assert getattr(maskopt, name) is not None, name
