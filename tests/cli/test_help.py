"""Every command's --help says what its options are declared to say (rich markup must not eat
`[wandb]`), and each command takes its defaults from the library it calls."""

from __future__ import annotations

import dataclasses
import inspect
import re

import click
import pytest
import typer
from typer.testing import CliRunner

from maskopt.cli import app
from maskopt.export.options import ExportOptions
from maskopt.trainer.options import TrainOptions

runner = CliRunner(env={"COLUMNS": "400"})  # wide: no help text is folded over lines


def _commands() -> dict[str, click.Command]:
    root = typer.main.get_command(app)
    out = {}
    for name, cmd in root.commands.items():  # type: ignore[attr-defined]
        out[name] = cmd
        for sub, subcmd in getattr(cmd, "commands", {}).items():
            out[f"{name} {sub}"] = subcmd
    return out


def _plain(text: str) -> str:
    """Help as written: rich's escape of [ undone, white space folded."""
    return re.sub(r"\s+", " ", text.replace("\\[", "[")).strip()


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_option_help_survives_rendering(name: str) -> None:
    res = runner.invoke(app, [*name.split(), "--help"])
    assert res.exit_code == 0, res.output
    shown = re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", res.output))
    for param in _commands()[name].params:
        help_text = getattr(param, "help", None)
        if help_text:
            assert _plain(help_text) in shown, (name, param.name, help_text)


def test_track_help_names_the_extras() -> None:
    res = runner.invoke(app, ["search", "--help"])
    assert "maskopt[wandb], maskopt[mlflow]" in re.sub(r"\s+", " ", res.output)


def _defaults(command: str) -> dict[str, object]:
    return {p.name: p.default for p in _commands()[command].params if p.name}


def test_best_and_train_take_their_defaults_from_the_option_dataclasses() -> None:
    best = _defaults("best")
    for field in dataclasses.fields(ExportOptions):
        if field.name in best:
            assert best[field.name] == field.default, field.name
    train = _defaults("train")
    for field in dataclasses.fields(TrainOptions):
        if field.name != "config":
            assert train[field.name] == field.default, field.name


def test_predict_takes_its_defaults_from_the_library_function() -> None:
    from maskopt.bundle.predict import predict

    library = inspect.signature(predict).parameters
    cli = _defaults("predict")
    for name in ("crop", "tta", "device", "runtime"):
        assert cli[name] == library[name].default, name
