"""The `maskopt` command line: a thin Typer shell over the library.

Each command parses its options (declared once, in `options`), calls one library function
and renders its result (`render`). The library is imported inside the commands, so
`maskopt --help` starts fast. Errors a user can act on (`MaskoptError`) end in one line on
stderr and a non-zero exit code (`render.friendly`).
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from maskopt.cli import data, predict, search, studies, train

# The order of the work, which `maskopt --help` lists (Typer would put groups last).
COMMAND_ORDER = (
    "synth",
    "eda",
    "search",
    "studies",
    "best",
    "predict",
    "train",
    "spaces",
    "dashboard",
)


class InWorkOrder(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: COMMAND_ORDER.index(n) if n in COMMAND_ORDER else 99)


app = typer.Typer(
    cls=InWorkOrder,
    help="Find the best face-mask status classifier by hyperparameter search.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def setup_process() -> None:
    # Once per process, before any command: Optuna logs warnings only (its INFO lines about
    # studies and trials would mix with maskopt's own progress and tables).
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


for command in (
    data.synth,
    data.eda,
    search.search,
    studies.studies,
    studies.best,
    predict.predict,
    train.train,
    studies.dashboard,
):
    app.command()(command)
app.add_typer(search.spaces_app, name="spaces")


def main() -> None:
    """Console entry point."""
    app()
