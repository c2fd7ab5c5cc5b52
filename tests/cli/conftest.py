"""The CLI's tests train tiny models as the trainer's do: one thread, no loader processes.
One exported bundle serves the ONNX and the distillation tests: the complementary study's
ensemble, fold models kept, with model.onnx, a distilled student and its student.onnx."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from maskopt.cli import app
from tests.extras import need
from tests.trainer.conftest import _one_thread  # noqa: F401  (an autouse fixture)


def export_args(study, out: Path, *more: str) -> list[str]:
    return [
        "best",
        "--storage",
        study.url,
        "--export",
        "--out",
        str(out),
        "--data",
        str(study.data),
        "--device",
        "cpu",
        *more,
    ]


@pytest.fixture(scope="session")
def exported(complementary_study, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(bundle, what `best --export --no-retrain --onnx --distill` printed)."""
    need("onnxruntime", "onnx")
    need("onnxscript", "onnx")
    out = tmp_path_factory.mktemp("cli-onnx") / "bundle"
    args = export_args(complementary_study, out, "--no-retrain", "--onnx", "--distill")
    res = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert res.exit_code == 0, res.output
    assert f"onnx: {out / 'model.onnx'}" in res.output
    return out, res.output
