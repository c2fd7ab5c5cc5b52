"""More folds than people is refused once, before any trial runs."""

from __future__ import annotations

from typer.testing import CliRunner

from maskopt.cli import app


def test_search_refuses_more_folds_than_people(tiny_data, tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'm.db'}"
    result = CliRunner().invoke(
        app,
        [
            "search",
            "--data",
            str(tiny_data),
            "--space",
            "cpu",
            "--trials",
            "1",
            "--folds",
            "999",
            "--storage",
            storage,
        ],
    )
    assert result.exit_code == 2, result.output
    assert "--folds must be in 2..24" in result.output
    assert "Traceback" not in result.output


def test_search_picks_the_cpu_space_without_a_gpu(tiny_data, tmp_path) -> None:
    import torch

    storage = f"sqlite:///{tmp_path / 'm.db'}"
    result = CliRunner().invoke(
        app,
        ["search", "--data", str(tiny_data), "--trials", "1", "--folds", "999",
         "--storage", storage],
    )  # fmt: skip
    expected = (
        "default (--space auto: a GPU" if torch.cuda.is_available() else "cpu (--space auto: no GPU"
    )
    assert f"space: {expected}" in result.output, result.output
    assert result.exit_code == 2  # then the folds check stops it before any trial
