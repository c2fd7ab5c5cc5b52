"""`maskopt best --export --onnx` and `maskopt predict BUNDLE --runtime onnx`.

The bundle (tests/cli/conftest.py, `exported`): the complementary study's ensemble, fold
models kept (--no-retrain), exported once through the CLI with its model.onnx.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from maskopt.cli import app
from tests.cli.conftest import export_args
from tests.extras import need

runner = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture
def onnx_bundle(exported) -> Path:
    return exported[0]


def read_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_best_export_onnx_writes_the_bundles_graph(onnx_bundle: Path) -> None:
    from maskopt.bundle.manifest import read_manifest
    from maskopt.bundle.onnx_runtime import META, graph_key, onnx_session

    manifest = read_manifest(onnx_bundle)
    assert len(manifest.members) >= 2  # an ensemble: the graph holds every member
    meta = onnx_session(onnx_bundle / "model.onnx").get_modelmeta().custom_metadata_map
    assert meta[META + "graph_key"] == graph_key(manifest)


def test_predict_runtime_onnx_writes_the_table_of_torch_fp32(
    onnx_bundle: Path, complementary_study, tmp_path: Path
) -> None:
    common = ["--eval", "--data", str(complementary_study.data), "--device", "cpu"]
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    onnx = runner.invoke(
        app, ["predict", str(onnx_bundle), *common, "--runtime", "onnx", "--out", str(a)]
    )
    assert onnx.exit_code == 0, onnx.output
    fp32 = runner.invoke(
        app,
        ["predict", str(onnx_bundle), *common, "--out", str(b)],
        env={"MASKOPT_CPU_BF16": "0"},
    )
    assert fp32.exit_code == 0, fp32.output
    got, expected = read_rows(a), read_rows(b)
    assert len(got) == len(expected) > 0
    for key in ("image", "class", "mask", "gender", "age"):
        assert [r[key] for r in got] == [r[key] for r in expected], key
    assert len({r["class"] for r in expected}) > 1  # the models are not constant
    probability = np.array([[float(r["probability"]) for r in rows] for rows in (got, expected)])
    assert np.abs(probability[0] - probability[1]).max() <= 1.0001e-4  # printed to 4 decimals
    heldout = [line for line in onnx.output.splitlines() if line.startswith("held-out macro F1")]
    assert len(heldout) == 1 and heldout[0] in fp32.output.splitlines()


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (
            ["{bare}", "--eval", "--runtime", "onnx"],
            1,
            "has no model.onnx: export it with `maskopt best --export --onnx`.",
        ),
        (
            ["{bundle}", "--eval", "--runtime", "tensorrt"],
            2,
            "runtime must be one of torch, onnx, but got runtime='tensorrt'.",
        ),
        (
            ["{checkpoint}", "--eval", "--runtime", "onnx"],
            2,
            "is a checkpoint file: drop --runtime or give a bundle.",
        ),
        (
            ["{bundle}", "--eval", "--runtime", "onnx", "no-onnxruntime"],
            2,
            "the onnx runtime needs onnxruntime, which is not installed: pip install maskopt[onnx]",
        ),
    ],
)
def test_predict_runtime_errors_are_one_line(
    onnx_bundle: Path,
    complementary_study,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    code: int,
    text: str,
) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(onnx_bundle, bare)
    (bare / "model.onnx").unlink()
    if "no-onnxruntime" in args:
        args.remove("no-onnxruntime")
        monkeypatch.setitem(sys.modules, "onnxruntime", None)
    checkpoint = sorted((onnx_bundle / "models").glob("*.pt"))[0]
    args = [a.format(bundle=onnx_bundle, bare=bare, checkpoint=checkpoint) for a in args]
    res = runner.invoke(app, ["predict", *args, "--data", str(complementary_study.data)])
    assert res.exit_code == code, res.output
    assert res.output.startswith("error: ") and res.output.count("\n") == 1, res.output
    assert text in res.output


def test_best_export_onnx_without_the_exporter_stops_before_any_work(
    complementary_study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    out = tmp_path / "bundle"
    res = runner.invoke(app, export_args(complementary_study, out, "--onnx"))
    assert res.exit_code == 2, res.output
    assert res.output == (
        "error: ONNX export needs onnxscript, which is not installed: pip install maskopt[onnx]\n"
    )
    assert not out.exists() and not list(tmp_path.iterdir())


def test_an_ensemble_the_exporter_refuses_stops_before_retraining(
    complementary_study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need("onnxruntime", "onnx")
    need("onnxscript", "onnx")
    import torch

    import maskopt.export.retrain

    def refuse(*args, **kwargs):
        raise RuntimeError("no ONNX op for aten::made_up")

    def no_training(*args, **kwargs):
        raise AssertionError("retrained before checking the export")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    monkeypatch.setattr(maskopt.export.retrain, "fit", no_training)  # the export's training
    out = tmp_path / "bundle"
    # --top 1: one member is enough, and the export's speed and TTA measurements stay short
    args = export_args(complementary_study, out, "--retrain", "--onnx", "--top", "1")
    res = runner.invoke(app, args)
    assert res.exit_code == 1, res.output
    error = res.output.splitlines()[-1]
    assert error.startswith("error: cannot export the chosen members' models (")
    assert error.endswith(") to ONNX: RuntimeError: no ONNX op for aten::made_up")
    assert "Traceback" not in res.output and not out.exists()


def test_help_shows_the_options() -> None:
    for command, option in (("best", "--onnx"), ("predict", "--runtime")):
        res = runner.invoke(app, [command, "--help"])
        assert res.exit_code == 0, res.output  # rich markup in a help text would raise here
        assert option in res.output
