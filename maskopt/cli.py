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


def _fmt(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


@app.command()
@friendly
def best(
    study: StudyOpt = "maskopt",
    storage: StorageOpt = DEFAULT_STORAGE,
    artifacts: ArtifactsOpt = None,
    top: Annotated[int, typer.Option("--top", help="How many of the best complete trials.")] = 5,
    export: Annotated[
        bool, typer.Option("--export", help="Choose the ensemble, retrain it and write the bundle.")
    ] = False,
    out: Annotated[Path, typer.Option("--out", help="Bundle folder to write (--export).")] = Path("bundle"),
    vote: Annotated[str, typer.Option("--vote", help="soft (mean of probabilities) or hard (majority).")] = "soft",
    retrain: Annotated[
        bool,
        typer.Option(
            "--retrain/--no-retrain",
            help="Retrain each member on all data (median best epoch), or keep its fold models, averaged.",
        ),
    ] = True,
    tta: Annotated[bool, typer.Option("--tta", help="Use hflip test-time augmentation in the bundle.")] = False,
    data: DataOpt = DEFAULT_DATA,
    cache: CacheOpt = None,
    device: DeviceOpt = "auto",
    trial: Annotated[int | None, typer.Option("--trial", help="A trial number (with --config-out).")] = None,
    config_out: Annotated[
        Path | None, typer.Option("--config-out", help="Write --trial's TrainConfig here (.json/.yaml/.toml).")
    ] = None,
) -> None:
    """The top trials of a study; --export builds the ensemble bundle."""
    from rich.console import Console
    from rich.table import Table

    from maskopt.errors import ConfigError

    console = Console()
    if (trial is None) != (config_out is None):
        raise ConfigError("--trial and --config-out go together: give both, e.g. --trial 12 --config-out cfg.json.")
    if trial is not None and config_out is not None:
        from maskopt.studies.export import trial_config
        from maskopt.studies.storage import load_study
        from maskopt.trainer.config import save_config

        save_config(trial_config(load_study(storage, study), trial), config_out)
        console.print(f"trial {trial}'s config written to {config_out}  (maskopt train --config {config_out})")
        return
    if export:
        _best_export(console, study, storage, artifacts, top, out, vote, retrain, tta, data, cache, device)
        return

    from maskopt.studies.export import best_trials
    from maskopt.studies.storage import load_study

    rows, states = best_trials(load_study(storage, study), top)
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))
    if not rows:
        console.print(f"study {study!r} has no complete trials yet ({counts or 'no trials'}).")
        return
    table = Table(title=f"top {len(rows)} trials of {study!r} ({counts})")
    for col, just in [("trial", "right"), ("macro F1", "right"), ("folds (min-max)", "right"),
                      ("best epochs", "right"), ("params", "left"), ("img/s", "right"), ("models", "left")]:
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rows:
        spread = f"{min(r.fold_f1):.3f}-{max(r.fold_f1):.3f}" if r.fold_f1 else "-"
        params = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.params.items()
        )
        table.add_row(
            str(r.number), _fmt(r.value), spread, ",".join(map(str, r.fold_best_epoch)) or "-",
            params, _fmt(r.images_per_s, 0), "kept" if r.has_models else "-",
        )
    console.print(table)
    console.print("export them: maskopt best --export   (one config: maskopt best --trial N --config-out cfg.json)")


def _best_export(console, study, storage, artifacts, top, out, vote, retrain, tta, data, cache, device) -> None:
    from rich.table import Table

    from maskopt.studies.export import OPTIMISM_NOTE, export_best

    rep = export_best(
        storage_url=storage, study_name=study, data_dir=data, out=out, artifacts=artifacts, top=top,
        vote=vote, retrain=retrain, tta=tta, device=device, cache_dir=cache,
        echo=lambda s: console.print(f"[dim]{s}[/dim]"),
    )
    table = Table(title=f"OOF macro F1 of the top {len(rep.candidates)} trials ({rep.vote} vote)")
    for col in ("", "OOF macro F1", "weight"):
        table.add_column(col, justify="right" if col else "left")
    weights = {m.trial: m.weight for m in rep.members}
    for c in rep.candidates:
        table.add_row(f"trial {c['trial']}", _fmt(c["oof_f1"]), _fmt(weights.get(c["trial"]), 2))
    table.add_row("plain average of all", _fmt(rep.plain_average_f1), "")
    table.add_row("[bold]exported[/bold]", f"[bold]{_fmt(rep.oof_f1)}[/bold]", "")
    console.print(table)
    console.print(rep.decision)
    console.print(f"[yellow]{OPTIMISM_NOTE}[/yellow]")
    trade = Table(title="trade-off: OOF macro F1 against inference speed")
    for col in ("option", "OOF macro F1", "images/s", "forward passes"):
        trade.add_column(col, justify="left" if col == "option" else "right")
    for r in rep.tradeoff:
        trade.add_row(r.name, _fmt(r.oof_f1), _fmt(r.images_per_s, 0), str(r.models))
    console.print(trade)
    for note in rep.notes:
        console.print(f"note: {note}")
    how = "retrained on all data" if retrain else "fold models averaged"
    console.print(f"bundle written to {rep.out} ({len(rep.members)} member(s), {how}{', hflip TTA' if tta else ''})")
    if rep.plots is not None:
        console.print(f"plots: {rep.out / 'plots.html'}")
    if rep.submission is not None:
        console.print(f"submission: {rep.submission}")
    if rep.heldout_f1 is not None:
        members = ", ".join(f"trial {t} {f:.4f}" for t, f in rep.heldout_member_f1.items())
        console.print(f"[bold]held-out macro F1 (eval/solution.csv): {rep.heldout_f1:.4f}[/bold]"
                      + (f"  (members alone: {members})" if len(rep.heldout_member_f1) > 1 else ""))


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
