"""`maskopt best --export --distill` and `maskopt predict BUNDLE --student`: one student model
trained on the ensemble's out-of-fold probabilities, in the bundle, its manifest, its ONNX
graph and the trade-off table.

The bundle (tests/cli/conftest.py, `exported`): the complementary study (two trials that only
together get every image right) exported through the CLI with --distill and --onnx.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from maskopt.bundle.manifest import read_manifest
from maskopt.cli import app
from maskopt.store.records import trial_config
from maskopt.store.storage import load_study
from tests.cli.conftest import export_args

runner = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture
def distilled(exported) -> tuple[Path, str]:
    return exported


def rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_the_bundle_holds_the_student_and_says_what_it_learnt_from(
    distilled, complementary_study
) -> None:
    out, output = distilled
    m = read_manifest(out)
    st = m.student
    assert st is not None and (out / st.checkpoint).is_file() and (out / "student.onnx").is_file()
    teacher = m.choice["options"][m.choice["teacher"]]
    assert st.teacher == teacher["name"] and len(st.teacher_trials) >= 2
    # the student is the best single trial's config, with a seed of its own
    best = m.candidates[m.choice["best"]]["trial"]
    searched = trial_config(load_study(complementary_study.url, complementary_study.name), best)
    assert st.config["backbone"] == searched.backbone and st.config["seed"] != searched.seed
    assert st.epochs >= 1 and st.temperature > 1 and 0 < st.alpha < 1
    assert st.heldout is not None and st.heldout["low"] <= st.heldout["value"] <= st.heldout["high"]
    row = m.tradeoff[-1]
    assert row["name"].startswith("student (distilled") and row["models"] == 1
    assert row["oof_f1"] is None and row["images_per_s"] > 0 and row["onnx_images_per_s"] > 0
    with np.load(out / "eval_probs.npz") as z:
        assert z["student_probs"].shape == z["probs"].shape
    for text in ("student:", "distilled from", "--student", "held-out F1", "student (distilled"):
        assert text in output, text


def test_predict_student_reproduces_its_eval_probabilities_in_torch_and_onnx(
    distilled, complementary_study, tmp_path: Path
) -> None:
    out, _ = distilled
    common = ["--eval", "--data", str(complementary_study.data), "--device", "cpu", "--student"]
    a, b = tmp_path / "torch.csv", tmp_path / "onnx.csv"
    res = runner.invoke(app, ["predict", str(out), *common, "--out", str(a)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["predict", str(out), *common, "--runtime", "onnx", "--out", str(b)])
    assert res.exit_code == 0, res.output
    with np.load(out / "eval_probs.npz") as z:
        student = z["student_probs"]
    torch_rows, onnx_rows = rows(a), rows(b)
    assert [int(r["class"]) for r in torch_rows] == student.argmax(1).tolist()
    assert np.allclose([float(r["probability"]) for r in torch_rows], student.max(1), atol=1e-4)
    assert [r["class"] for r in onnx_rows] == [r["class"] for r in torch_rows]
    held = read_manifest(out).student.heldout
    assert f"held-out macro F1 {held['value']:.4f}" in res.output


def test_student_options_are_checked_before_any_work(complementary_study, tmp_path: Path) -> None:
    out = tmp_path / "b"
    res = runner.invoke(app, export_args(complementary_study, out, "--student", "test_convnext"))
    assert res.exit_code == 2 and "add --distill" in res.output and not out.exists()
    res = runner.invoke(
        app, export_args(complementary_study, out, "--distill", "--student", "no_such_net")
    )
    assert res.exit_code == 2 and "--student no_such_net" in res.output
    assert "Traceback" not in res.output and not out.exists()
    assert "loaded" not in res.output  # refused before the trials and their OOF were read


def test_predict_student_needs_a_bundle_with_one(distilled, complementary_study, tmp_path) -> None:
    out, _ = distilled
    photo = next((complementary_study.data / "eval" / "images").iterdir())
    checkpoint = out / read_manifest(out).student.checkpoint
    res = runner.invoke(app, ["predict", str(checkpoint), str(photo), "--student"])
    assert res.exit_code == 2 and "give a bundle folder" in res.output
    plain = tmp_path / "plain"
    res = runner.invoke(app, export_args(complementary_study, plain, "--no-retrain"))
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["predict", str(plain), str(photo), "--student"])
    assert res.exit_code == 1 and "holds no student" in res.output
    res = runner.invoke(app, ["predict", str(out), str(photo), "--student", "--device", "cpu"])
    assert res.exit_code == 0 and "1 predictions" in res.output
