"""The real chain on the tiny set: `maskopt search` -> `maskopt best --export` -> `maskopt predict`.

Guards the study format between the search (which writes it) and the export (which reads it).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from maskopt.bundle.manifest import read_manifest
from maskopt.cli import app

TINY_SPACE = """
name: tiny
epochs: 2
params:
  backbone: [test_convnext, test_resnet]
  image_size: 32
  batch_size: 32
  lr: {low: 1.0e-3, high: 3.0e-2, log: true}
  augment: 0
"""

runner = CliRunner(env={"COLUMNS": "200"})


@pytest.mark.slow
def test_search_export_predict(tiny_data: Path, tmp_path: Path) -> None:
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    url = f"sqlite:///{tmp_path / 'maskopt.db'}"
    common = ["--storage", url, "--device", "cpu"]
    res = runner.invoke(
        app,
        [
            "search",
            "--data",
            str(tiny_data),
            "--space",
            str(space),
            "--trials",
            "3",
            "--folds",
            "2",
            "--keep-models",
            "3",
            "--seed",
            "0",
            *common,
        ],
    )
    assert res.exit_code == 0, res.output

    out = tmp_path / "bundle"
    # no --data: the export reads the folder the search recorded
    res = runner.invoke(app, ["best", "--export", "--out", str(out), "--tta", *common])
    assert res.exit_code == 0, res.output
    m = read_manifest(out)
    assert m.data == str(tiny_data.resolve())
    assert m.tta and all(mm.retrained for mm in m.members)
    assert m.oof_f1 >= max(c["oof_f1"] for c in m.candidates)
    # the held-out F1 with its interval, and the out-of-sample gain that decided
    h = m.heldout
    assert h is not None and h["low"] <= h["value"] <= h["high"] and h["unit"] == "people"
    assert f"held-out macro F1 (eval/solution.csv): {h['value']:.4f} [95% CI" in res.output
    decision = m.choice["decision"]
    assert decision.split(":")[0] in res.output
    assert "expected macro F1 on new people" in decision

    preds = tmp_path / "preds.csv"
    res = runner.invoke(
        app,
        [
            "predict",
            str(out),
            "--eval",
            "--out",
            str(preds),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    with open(preds) as f:
        rows = list(csv.DictReader(f))
    with np.load(out / "eval_probs.npz") as z:
        assert [int(r["class"]) for r in rows] == z["probs"].argmax(1).tolist()
        assert np.allclose([float(r["probability"]) for r in rows], z["probs"].max(1), atol=1e-4)
    assert f"{h['value']:.4f} [95% CI {h['low']:.4f}, {h['high']:.4f}" in res.output
