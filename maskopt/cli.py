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


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
