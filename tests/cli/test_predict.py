"""`maskopt predict BUNDLE (IMAGES... | --eval)`: the bundle reproduces the export's probs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from maskopt.bundle.manifest import MANIFEST, read_manifest
from maskopt.bundle.predict import Prediction
from maskopt.cli import app
from maskopt.data.layout import read_eval
from maskopt.export.export import export_best
from maskopt.export.options import ExportOptions

runner = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def bundle(complementary_study, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "bundle"
    export_best(
        ExportOptions(
            storage=complementary_study.url,
            study=complementary_study.name,
            data=complementary_study.data,
            out=out,
            retrain=False,
            device="cpu",
        ),
        progress=False,
    )
    return out


def read_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def ids_of(bundle: Path) -> list[str]:
    with np.load(bundle / "eval_probs.npz") as z:
        return list(z["image_ids"])


def probs_of(bundle: Path) -> np.ndarray:
    with np.load(bundle / "eval_probs.npz") as z:
        return z["probs"]


def truth_of(data: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    ev = read_eval(data, progress=False)
    assert ev is not None
    return ev.solution, ev.groups


def with_recorded_data(bundle: Path, to: Path, data: str) -> Path:
    """A copy of `bundle` whose manifest records `data` as its data folder."""
    shutil.copytree(bundle, to)
    manifest = json.loads((to / MANIFEST).read_text())
    manifest["data"] = data
    (to / MANIFEST).write_text(json.dumps(manifest))
    return to


def test_predict_eval_defaults_to_the_data_folder_the_bundle_records(
    bundle: Path, complementary_study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = read_manifest(bundle).data
    assert Path(recorded) == complementary_study.data.resolve()
    monkeypatch.chdir(tmp_path)  # no ./data here: only the recorded folder can be read
    res = runner.invoke(app, ["predict", str(bundle), "--eval", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert f"({recorded}/eval/solution.csv)" in res.output
    assert "bootstrap over 8 people]" in res.output


def test_predict_eval_on_a_bundle_whose_data_is_gone(
    bundle: Path, complementary_study, tmp_path: Path
) -> None:
    gone = tmp_path / "moved-away"
    moved = with_recorded_data(bundle, tmp_path / "b", str(gone))
    res = runner.invoke(app, ["predict", str(moved), "--eval", "--device", "cpu"])
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.output
    assert lines[0].startswith(f"error: the bundle's data folder {gone} is gone")
    assert "pass --data DIR" in lines[0]
    # an explicit --data wins over the recorded folder
    data = complementary_study.data
    res = runner.invoke(
        app, ["predict", str(moved), "--eval", "--data", str(data), "--device", "cpu"]
    )
    assert res.exit_code == 0, res.output
    assert f"({data}/eval/solution.csv)" in res.output


def test_predict_eval_writes_csv_and_heldout_f1(
    bundle: Path, complementary_study, tmp_path: Path
) -> None:
    out = tmp_path / "preds.csv"
    res = runner.invoke(
        app,
        [
            "predict",
            str(bundle),
            "--eval",
            "--data",
            str(complementary_study.data),
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    heldout = Prediction(ids_of(bundle), probs_of(bundle), *truth_of(complementary_study.data))
    assert f"held-out macro F1 {heldout.heldout} ({complementary_study.data}/eval" in res.output
    assert "bootstrap over 8 people]" in res.output  # tests/conftest.py: TINY_EVAL_PEOPLE
    rows = read_rows(out)
    with np.load(bundle / "eval_probs.npz") as z:
        probs, ids = z["probs"], list(z["image_ids"])
    assert [r["image"] for r in rows] == ids
    assert [int(r["class"]) for r in rows] == probs.argmax(1).tolist()
    assert np.allclose([float(r["probability"]) for r in rows], probs.max(1), atol=1e-4)
    assert set(rows[0]) == {"image", "class", "mask", "gender", "age", "probability"}
    with open(bundle / "submission.csv") as f:
        assert [int(r["ans"]) for r in csv.DictReader(f)] == [int(r["class"]) for r in rows]


def test_predict_images_with_a_bundle(bundle: Path, complementary_study, tmp_path: Path) -> None:
    img = sorted((complementary_study.data / "eval" / "images").iterdir())[0]
    out = tmp_path / "one.csv"
    res = runner.invoke(
        app, ["predict", str(bundle), str(img), "--out", str(out), "--device", "cpu"]
    )
    assert res.exit_code == 0, res.output
    assert [r["image"] for r in read_rows(out)] == [str(img)]


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["{bundle}"], 2, "give IMAGES... or --eval"),
        (["{data}", "--eval", "--data", "{data}"], 2, "not a bundle"),
        (["{bundle}", "missing.jpg"], 1, "some images do not exist"),
    ],
)
def test_predict_errors_are_one_line(bundle: Path, complementary_study, args, code, text) -> None:
    args = [a.format(bundle=bundle, data=complementary_study.data) for a in args]
    res = runner.invoke(app, ["predict", *args, "--device", "cpu"])
    assert res.exit_code == code, res.output
    assert text in res.output and "Traceback" not in res.output
