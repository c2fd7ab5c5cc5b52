"""The `maskopt` command line: a thin Typer shell.

Each command parses its options, calls one library function and renders the
result. Heavy libraries (torch, timm, albumentations, optuna) are imported inside
the commands, so `maskopt --help` starts fast. Errors a user can act on
(`MaskoptError`) end in one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from maskopt.errors import MaskoptError

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

app = typer.Typer(
    help="Find the best face-mask status classifier by hyperparameter search.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def friendly(fn: F) -> F:
    """Turn a MaskoptError (or Ctrl-C) into one line on stderr and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MaskoptError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


# Options shared by every command that reads data.
DataOpt = Annotated[
    Path, typer.Option("--data", help="Data folder in the mask-competition layout.")
]
CropOpt = Annotated[
    str, typer.Option("--crop", help="Face crop: 'center' (competition centre crop) or 'face' (Haar cascade).")
]
CacheOpt = Annotated[
    Path | None,
    typer.Option("--cache", help="Decoded-image cache folder (default <data>/.maskopt_cache)."),
]
SkipBadOpt = Annotated[
    bool, typer.Option("--skip-bad", help="Drop people with bad files instead of stopping.")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | mps (auto: CUDA if there).")]
StorageOpt = Annotated[
    str, typer.Option("--storage", help="Optuna storage URL (any SQLAlchemy URL Optuna supports).")
]
StudyOpt = Annotated[str, typer.Option("--study", help="Study name.")]
ArtifactsOpt = Annotated[
    Path | None,
    typer.Option(
        "--artifacts",
        help="Artifact folder (default: beside the SQLite file; required with a server URL).",
    ),
]

DEFAULT_DATA = Path("data")
DEFAULT_STORAGE = "sqlite:///maskopt.db"


@app.command()
@friendly
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write (train/ and eval/ go inside).")] = DEFAULT_DATA,
    people: Annotated[int, typer.Option("--people", help="People in train/ (7 photos each).")] = 150,
    eval_people: Annotated[
        int | None, typer.Option("--eval-people", help="Other people in eval/ (default 2/3 of --people).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same bytes.")] = 0,
    size: Annotated[str, typer.Option("--size", help="Photo size WIDTHxHEIGHT.")] = "384x512",
) -> None:
    """Write a synthetic data set in the competition layout (with eval/solution.csv)."""
    from rich.console import Console
    from rich.table import Table

    from maskopt.data.labels import AGE_NAMES
    from maskopt.data.synth import parse_size, synthesize

    summary = synthesize(out, people=people, eval_people=eval_people, seed=seed, size=parse_size(size))
    table = Table(title=f"synthetic data in {summary['out']} ({summary['seconds']} s)")
    table.add_column("part")
    table.add_column("value", justify="right")
    table.add_row("train people / images", f"{summary['people']} / {summary['train_images']}")
    table.add_row("eval people / images", f"{summary['eval_people']} / {summary['eval_images']}")
    table.add_row("female", f"{summary['female']}")
    for name, n in zip(AGE_NAMES, summary["age_bands"]):
        table.add_row(f"age {name}", f"{n}")
    table.add_row("photo size", summary["size"])
    Console().print(table)


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
