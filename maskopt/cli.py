"""The `maskopt` command line: a thin Typer shell.

Each command parses its options, calls one library function and renders the
result. Heavy libraries (torch, timm, albumentations, optuna) are imported inside
the commands, so `maskopt --help` starts fast. Errors a user can act on
(`MaskoptError`) end in one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

from maskopt.errors import MaskoptError
from maskopt.search.options import SearchOptions

if TYPE_CHECKING:
    pass

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
    str,
    typer.Option(
        "--crop", help="Face crop: 'center' (competition centre crop) or 'face' (Haar cascade)."
    ),
]
CacheOpt = Annotated[
    Path | None,
    typer.Option("--cache", help="Decoded-image cache folder (default <data>/.maskopt_cache)."),
]
SkipBadOpt = Annotated[
    bool, typer.Option("--skip-bad", help="Drop people with bad files instead of stopping.")
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="auto | cpu | cuda | mps (auto: CUDA if there).")
]
StorageOpt = Annotated[
    str, typer.Option("--storage", help="Optuna storage URL (any SQLAlchemy URL Optuna supports).")
]
StudyOpt = Annotated[str, typer.Option("--study", help="Study name.")]
ArtifactsOpt = Annotated[
    str | None,  # not a Path: Path() would eat the // of s3://
    typer.Option(
        "--artifacts",
        help="Artifact folder or s3://bucket\\[/prefix] (default: beside the SQLite file; "
        "required with a server URL).",
    ),
]

DEFAULT_DATA = Path("data")
DEFAULT_STORAGE = "sqlite:///maskopt.db"


@app.command()
@friendly
def synth(
    out: Annotated[
        Path, typer.Argument(help="Folder to write (train/ and eval/ go inside).")
    ] = DEFAULT_DATA,
    people: Annotated[
        int, typer.Option("--people", help="People in train/ (7 photos each).")
    ] = 150,
    eval_people: Annotated[
        int | None,
        typer.Option("--eval-people", help="Other people in eval/ (default 2/3 of --people)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same bytes.")] = 0,
    size: Annotated[str, typer.Option("--size", help="Photo size WIDTHxHEIGHT.")] = "384x512",
) -> None:
    """Write a synthetic data set in the competition layout (with eval/solution.csv)."""
    from rich.console import Console
    from rich.table import Table

    from maskopt.data.labels import AGE_NAMES
    from maskopt.data.synth import parse_size, synthesize

    summary = synthesize(
        out, people=people, eval_people=eval_people, seed=seed, size=parse_size(size)
    )
    table = Table(title=f"synthetic data in {summary['out']} ({summary['seconds']} s)")
    table.add_column("part")
    table.add_column("value", justify="right")
    table.add_row("train people / images", f"{summary['people']} / {summary['train_images']}")
    table.add_row("eval people / images", f"{summary['eval_people']} / {summary['eval_images']}")
    table.add_row("female", f"{summary['female']}")
    for name, n in zip(AGE_NAMES, summary["age_bands"], strict=True):
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
    out: Annotated[Path, typer.Option("--out", help="Bundle folder to write (--export).")] = Path(
        "bundle"
    ),
    vote: Annotated[
        str, typer.Option("--vote", help="soft (mean of probabilities) or hard (majority).")
    ] = "soft",
    retrain: Annotated[
        bool,
        typer.Option(
            "--retrain/--no-retrain",
            help="Retrain each member on all data (median best epoch), or keep its fold models, averaged.",
        ),
    ] = True,
    tta: Annotated[
        bool, typer.Option("--tta", help="Use hflip test-time augmentation in the bundle.")
    ] = False,
    onnx: Annotated[
        bool,
        typer.Option(
            "--onnx",
            help="Also write model.onnx: the whole ensemble as one ONNX graph "
            "(predict --runtime onnx; needs the onnx extra).",
        ),
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Data folder (default: the folder the study was searched on)."),
    ] = None,
    skip_bad: Annotated[
        bool | None,
        typer.Option(
            "--skip-bad/--no-skip-bad",
            help="Drop people with bad files (default: as the search did).",
            show_default=False,
        ),
    ] = None,
    cache: CacheOpt = None,
    device: DeviceOpt = "auto",
    trial: Annotated[
        int | None, typer.Option("--trial", help="A trial number (with --config-out).")
    ] = None,
    config_out: Annotated[
        Path | None,
        typer.Option("--config-out", help="Write --trial's TrainConfig here (.json/.yaml/.toml)."),
    ] = None,
) -> None:
    """The top trials of a study; --export builds the ensemble bundle."""
    from rich.console import Console
    from rich.table import Table

    from maskopt.errors import ConfigError

    console = Console()
    if (trial is None) != (config_out is None):
        raise ConfigError(
            "--trial and --config-out go together: give both, e.g. --trial 12 --config-out cfg.json."
        )
    if trial is not None and config_out is not None:
        from maskopt.outputs import check_file_out
        from maskopt.store.records import trial_config
        from maskopt.store.storage import load_study
        from maskopt.trainer.config import save_config

        check_file_out(config_out, "--config-out")
        save_config(trial_config(load_study(storage, study), trial), config_out)
        console.print(
            f"trial {trial}'s config written to {config_out}  (maskopt train --config {config_out})"
        )
        return
    if export:
        from maskopt.export.export import export_best
        from maskopt.export.options import ExportOptions

        rep = export_best(
            ExportOptions(
                study=study,
                storage=storage,
                artifacts=artifacts,
                data=data,
                skip_bad=skip_bad,
                cache=cache,
                out=out,
                top=top,
                vote=vote,
                retrain=retrain,
                tta=tta,
                onnx=onnx,
                device=device,
            ),
            echo=lambda s: console.print(f"[dim]{s}[/dim]"),
        )
        _print_export(console, rep)
        return

    from maskopt.store.locations import find_artifact_store
    from maskopt.store.storage import load_study
    from maskopt.studies.table import best_trials

    found = load_study(storage, study)
    best_of = best_trials(found, top, find_artifact_store(storage, artifacts, found))
    rows = best_of.rows
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(best_of.counts.items()))
    if not rows:
        console.print(f"study {study!r} has no complete trials yet ({counts or 'no trials'}).")
        return
    table = Table(title=f"top {len(rows)} trials of {study!r} ({counts})")
    for col in ("trial", "macro F1", "folds", "best ep", "img/s", "models"):
        table.add_column(col, justify="left" if col == "models" else "right", no_wrap=True)
    table.add_column("key parameters", overflow="fold", min_width=24)
    for r in rows:
        spread = f"{min(r.fold_f1):.3f}-{max(r.fold_f1):.3f}" if r.fold_f1 else "-"
        params = "\n".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in r.params.items()
            if k in best_of.keys
        )
        table.add_row(
            str(r.number),
            _fmt(r.value),
            spread,
            ",".join(map(str, r.fold_best_epoch)) or "-",
            _fmt(r.images_per_s, 0),
            "kept" if r.number in best_of.kept else "-",
            params,
        )
    console.print(table)
    console.print(
        "export them: maskopt best --export   (one config: maskopt best --trial N --config-out cfg.json)"
    )


def _interval(d: dict | None) -> str:
    """A manifest's Interval (its as_dict()) in one line, as Interval prints itself."""
    from maskopt.trainer.metrics import Interval

    return "-" if d is None else str(Interval(**d))


def _print_export(console, rep) -> None:
    from rich.table import Table

    m = rep.manifest
    table = Table(title=f"OOF macro F1 of the top {len(m.candidates)} trials ({m.vote} vote)")
    for col in ("", "OOF macro F1", "weight"):
        table.add_column(col, justify="right" if col else "left")
    weights = {mm.trial: mm.weight for mm in m.members}
    for c in m.candidates:
        table.add_row(f"trial {c['trial']}", _fmt(c["oof_f1"]), _fmt(weights.get(c["trial"]), 2))
    table.add_row("[bold]exported (in-sample)[/bold]", f"[bold]{_fmt(m.oof_f1)}[/bold]", "")
    console.print(table)
    console.print(m.choice.get("target_note", ""))
    console.print(m.choice.get("temperature_note", ""))
    console.print(f"[bold]{m.choice.get('decision', '')}[/bold]")
    onnx = any(r.get("onnx_images_per_s") for r in m.tradeoff)
    trade = Table(title="trade-off: OOF macro F1 against inference speed")
    cols = ["option", "OOF macro F1", "images/s"] + (["onnx images/s"] if onnx else [])
    for col in [*cols, "forward passes"]:
        trade.add_column(col, justify="left" if col == "option" else "right")
    for r in m.tradeoff:
        speed = [_fmt(r["images_per_s"], 0)] + ([_fmt(r["onnx_images_per_s"], 0)] if onnx else [])
        trade.add_row(r["name"], _fmt(r["oof_f1"]), *speed, str(r["models"]))
    console.print(trade)
    for note in m.notes:
        console.print(f"note: {note}")
    retrained = all(mm.retrained for mm in m.members)
    how = "retrained on all data" if retrained else "fold models averaged"
    console.print(
        f"bundle written to {rep.out} ({len(m.members)} member(s), {how}"
        f"{', hflip TTA' if m.tta else ''})"
    )
    if rep.plots is not None:
        console.print(f"plots: {rep.out / 'plots.html'}")
    if onnx:
        console.print(f"onnx: {rep.out / 'model.onnx'}  (maskopt predict {rep.out} --runtime onnx)")
    if rep.submission is not None:
        console.print(f"submission: {rep.submission}")
    if m.heldout is not None:
        console.print(f"[bold]held-out macro F1 (eval/solution.csv): {_interval(m.heldout)}[/bold]")
        if len(m.heldout_members) > 1:
            for trial, d in m.heldout_members.items():
                console.print(f"  trial {trial} alone: {_interval(d)}")


# `search`'s defaults are SearchOptions' (the one declaration); these add the help.
D = SearchOptions


@app.command()
@friendly
def search(
    ctx: typer.Context,
    trials: Annotated[
        int,
        typer.Option(
            "--trials",
            help="Finished (complete + pruned) trials the study should hold, over all workers.",
        ),
    ] = D.trials,
    space: Annotated[
        str,
        typer.Option(
            "--space",
            help="Search space: auto (default on a GPU, cpu without), default, cpu, or a .yaml/.toml file.",
        ),
    ] = D.space,
    folds: Annotated[
        int, typer.Option("--folds", help="k of the k-fold CV (fixed per study).")
    ] = D.folds,
    epochs: Annotated[
        int | None, typer.Option("--epochs", help="Epochs per fold (default: the space's).")
    ] = D.epochs,
    study: StudyOpt = D.study,
    storage: StorageOpt = D.storage,
    artifacts: ArtifactsOpt = D.artifacts,
    tensorboard: Annotated[
        Path | None,
        typer.Option(
            "--tensorboard",
            help="Folder for every trial's TensorBoard run (default: beside the SQLite file, "
            "maskopt.tensorboard/).",
        ),
    ] = D.tensorboard,
    track: Annotated[
        list[str] | None,
        typer.Option(
            "--track",
            help="Also track each trial in wandb or mlflow (repeatable; the extras "
            "maskopt[wandb], maskopt[mlflow]).",
        ),
    ] = None,
    sampler: Annotated[
        str, typer.Option("--sampler", help="tpe | random | grid | cmaes | gp.")
    ] = D.sampler,
    pruner: Annotated[
        str, typer.Option("--pruner", help="median | wilcoxon | hyperband | none.")
    ] = D.pruner,
    startup_trials: Annotated[
        int,
        typer.Option("--startup-trials", help="Trials run in full before the pruner may stop one."),
    ] = D.startup_trials,
    warmup_steps: Annotated[
        int,
        typer.Option(
            "--warmup-steps",
            help="Steps (epochs; folds for wilcoxon) before a trial may be pruned "
            "(hyperband: its first rung).",
        ),
    ] = D.warmup_steps,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Sampler seed (worker i: seed+i) and fold seed.")
    ] = D.seed,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Stop starting trials after this many seconds."),
    ] = D.timeout,
    workers: Annotated[
        int, typer.Option("--workers", help="Worker processes on this machine.")
    ] = D.workers,
    gpus: Annotated[
        str | None,
        typer.Option(
            "--gpus",
            help="Workers on GPUs: 0,1 (one each), 0,0,1,1 (two on each), all (one per visible GPU).",
        ),
    ] = None,
    keep_models: Annotated[
        int,
        typer.Option("--keep-models", help="Keep the fold models of the best K trials (0: none)."),
    ] = D.keep_models,
    heartbeat: Annotated[
        int | None,
        typer.Option(
            "--heartbeat", help="Seconds between a running trial's heartbeats (default 30)."
        ),
    ] = D.heartbeat,
    data: DataOpt = D.data,
    crop: CropOpt = D.crop,
    cache: CacheOpt = D.cache,
    skip_bad: SkipBadOpt = D.skip_bad,
    device: DeviceOpt = D.device,
) -> None:
    """Run (or resume) an Optuna study: k-fold trials, pruning, fold models of the best kept."""
    from rich.console import Console
    from rich.table import Table

    from maskopt.search.options import parse_gpus
    from maskopt.search.runner import run_search

    # Every parameter is a SearchOptions field of the same name (gpus parsed from its text).
    opts = SearchOptions(**{**ctx.params, "gpus": parse_gpus(gpus), "track": tuple(track or ())})
    console = Console()
    s = run_search(opts, console=console)
    table = Table(
        title=f"study {s.study!r}: {s.finished}/{s.trials_wanted} finished in {s.wall_s:.0f} s, "
        f"{s.total_epochs} fold-epochs trained"
    )
    for col, just in [
        ("trial", "right"),
        ("state", "left"),
        ("macro F1", "right"),
        ("epochs", "right"),
        ("seconds", "right"),
        ("note", "left"),
    ]:
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    colour = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}
    for r in s.trials:
        star = " *" if r.number == s.best_number else ""
        table.add_row(
            str(r.number) + star,
            f"[{colour.get(r.state, 'white')}]{r.state.lower()}[/]",
            _fmt(r.value),
            "-" if r.epochs_run is None else str(r.epochs_run),
            _fmt(r.duration_s, 1),
            r.note,
        )
    console.print(table)
    counts = ", ".join(f"{n} {k.lower()}" for k, n in sorted(s.counts.items()))
    console.print(f"trials: {counts}")
    if s.best_number is not None:
        console.print(
            f"[bold]best: trial {s.best_number}, macro F1 {s.best_value:.4f}[/bold]  "
            f"(storage {s.storage}, artifacts {s.artifacts_dir})"
        )
    console.print(f"TensorBoard: tensorboard --logdir {s.tensorboard_dir}")
    for n in s.notes:
        console.print(f"note: {n}")
    for p in s.problems:
        console.print(f"[red]problem: {p}[/red]")
    if s.interrupted:
        console.print(
            "interrupted: the running trial is marked FAIL (it does not count) and its config "
            "is queued again; run the same command to resume."
        )
        raise typer.Exit(130)
    if s.problems and s.finished < s.trials_wanted:
        raise typer.Exit(1)
    console.print("next: maskopt best   (then maskopt best --export)")


spaces_app = typer.Typer(
    help="Search spaces: list them, or show one.",
    no_args_is_help=False,
    invoke_without_command=True,
)
app.add_typer(spaces_app, name="spaces")


@spaces_app.callback()
@friendly
def spaces(ctx: typer.Context) -> None:
    """List the built-in search spaces (show one: maskopt spaces show NAME)."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.table import Table

    from maskopt.spaces import list_spaces

    table = Table(title="search spaces (--space NAME, or a .yaml/.toml file)")
    for col in ("name", "epochs", "sampled keys", "description"):
        table.add_column(col)
    for sp in list_spaces():
        sampled = sum(p.kind != "fixed" for p in sp.params)
        table.add_row(sp.name, str(sp.epochs), str(sampled), sp.description)
    Console().print(table)
    typer.echo("show one: maskopt spaces show NAME (or FILE)")


@spaces_app.command("show")
@friendly
def spaces_show(
    name: Annotated[str, typer.Argument(help="A built-in space name or a .yaml/.toml file.")],
) -> None:
    """Print one space: each key's distribution or fixed value."""
    from maskopt.spaces import get_space

    typer.echo(get_space(name).describe())


@app.command()
@friendly
def studies(storage: StorageOpt = DEFAULT_STORAGE) -> None:
    """The studies in a storage: trials by state, best value, last activity."""
    from rich.console import Console
    from rich.table import Table

    from maskopt.studies.listing import list_studies

    infos = list_studies(storage)
    if not infos:
        typer.echo(f"no studies in {storage} yet (maskopt search creates one).")
        return
    table = Table(title=f"studies in {storage}")
    for col, just in [
        ("study", "left"),
        ("done", "right"),
        ("pruned", "right"),
        ("fail", "right"),
        ("run", "right"),
        ("best F1", "right"),
        ("trial", "right"),
        ("space", "left"),
        ("k", "right"),
        ("last activity", "left"),
    ]:
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for i in infos:
        c = i.counts
        table.add_row(
            i.name,
            str(c.get("COMPLETE", 0)),
            str(c.get("PRUNED", 0)),
            str(c.get("FAIL", 0)),
            str(c.get("RUNNING", 0) + c.get("WAITING", 0)),
            _fmt(i.best_value),
            "-" if i.best_trial is None else str(i.best_trial),
            i.space or "-",
            "-" if i.n_folds is None else str(i.n_folds),
            i.last_activity.strftime("%m-%d %H:%M") if i.last_activity else "-",
        )
    Console().print(table)


@app.command()
@friendly
def dashboard(
    storage: StorageOpt = DEFAULT_STORAGE,
    artifacts: ArtifactsOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8080,
) -> None:
    """optuna-dashboard on the storage and its artifacts; where the TensorBoard events are."""
    from maskopt.studies.dashboard import dashboard_url, open_dashboard, serve_dashboard

    board = open_dashboard(storage, artifacts)
    typer.echo(f"optuna-dashboard on {storage}: {dashboard_url(host, port)}  (Ctrl-C stops it)")
    typer.echo(
        f"artifacts: {board.artifacts}"
        if board.artifacts is not None
        else "artifacts: none found (--artifacts FOLDER or s3://bucket[/prefix])"
    )
    for folder in board.tensorboard:
        typer.echo(f"TensorBoard events of the trials: tensorboard --logdir {folder}")
    if not board.tensorboard:
        typer.echo(
            "TensorBoard events: none on this machine (a search writes them beside its SQLite "
            "file, or into its --tensorboard folder, on the machine that ran the trial)"
        )
    serve_dashboard(board, host, port)


@app.command()
@friendly
def train(
    config: Annotated[
        Path, typer.Option("--config", help="Config file: .json, .yaml, .yml or .toml.")
    ],
    data: DataOpt = DEFAULT_DATA,
    crop: CropOpt = "center",
    cache: CacheOpt = None,
    skip_bad: SkipBadOpt = False,
    fold: Annotated[int, typer.Option("--fold", help="Which fold to validate on (0-based).")] = 0,
    folds: Annotated[
        int, typer.Option("--folds", help="Number of folds (by person, stratified).")
    ] = 5,
    fold_seed: Annotated[int, typer.Option("--fold-seed", help="Seed of the fold split.")] = 0,
    full: Annotated[
        bool, typer.Option("--full", help="Train on all the data (no validation).")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default runs/<config name>).")
    ] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Train one config on one fold (or all data): checkpoint, metrics.json, TensorBoard."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from maskopt.data.layout import read_train
    from maskopt.outputs import check_out_dir
    from maskopt.trainer.config import load_config
    from maskopt.trainer.run import CHECKPOINT, METRICS, RUN, TENSORBOARD, train_to_dir

    cfg = load_config(config)
    out = check_out_dir(out if out is not None else Path("runs") / config.stem, RUN)
    ds = read_train(data, skip_bad=skip_bad, crop=crop, cache_dir=cache)
    console = Console()
    what = "all data" if full else f"fold {fold} of {folds}"
    console.print(
        f"training {cfg.backbone} ({cfg.head} head, {cfg.image_size} px) on {what}: "
        f"{len(ds)} images of {ds.n_people} people"
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("epochs", total=cfg.epochs)

        def show(m: dict) -> None:
            f1 = (
                ""
                if m["val_f1"] is None
                else f"  val F1 {m['val_f1']:.4f}  val loss {m['val_loss']:.4f}"
            )
            bar.console.print(
                f"epoch {m['epoch']:>3}/{cfg.epochs}  loss {m['train_loss']:.4f}{f1}  "
                f"lr {m['lr']:.2e}  {m['images_per_s']:.0f} img/s  {m['seconds']:.1f} s"
            )
            bar.advance(task)

        res = train_to_dir(
            cfg,
            ds,
            out,
            fold=fold,
            n_folds=folds,
            fold_seed=fold_seed,
            full=full,
            device=device,
            on_epoch=show,
        )
    if res["best_f1"] is not None:
        v = res["validation"]
        console.print(
            f"[bold]best macro F1 {res['best_f1']:.4f} at epoch {res['best_epoch']}[/bold]  "
            f"(mask {v['mask_f1']:.3f}, gender {v['gender_f1']:.3f}, age {v['age_f1']:.3f}, "
            f"accuracy {v['accuracy']:.3f})"
        )
    console.print(f"{res['images_per_s']:.0f} img/s training, {res['seconds']:.0f} s in all")
    console.print(
        f"wrote {out / CHECKPOINT}, {out / METRICS}; tensorboard --logdir {out / TENSORBOARD}"
    )


@app.command()
@friendly
def predict(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            help="A checkpoint (model.pt from maskopt train) or a bundle folder (maskopt best --export)."
        ),
    ],
    images: Annotated[
        list[Path] | None, typer.Argument(help="Image files or folders of images.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write a CSV here instead of printing a table.")
    ] = None,
    eval_: Annotated[
        bool,
        typer.Option(
            "--eval",
            help="Predict <data>/eval (info.csv order); prints the held-out F1 and its 95% "
            "interval if solution.csv is there.",
        ),
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Data folder with eval/ (default: the folder a bundle was exported from; "
            "./data for a checkpoint).",
        ),
    ] = None,
    crop: Annotated[
        str, typer.Option("--crop", help="Face crop for a checkpoint (a bundle uses its own).")
    ] = "center",
    device: DeviceOpt = "auto",
    tta: Annotated[
        bool,
        typer.Option(
            "--tta", help="Average with the mirrored image (a bundle uses its own setting)."
        ),
    ] = False,
    runtime: Annotated[
        str,
        typer.Option(
            "--runtime",
            help="torch, or onnx: a bundle's model.onnx in onnxruntime on the CPU "
            "(maskopt best --export --onnx; needs the onnx extra).",
        ),
    ] = "torch",
) -> None:
    """Predict mask / gender / age classes of new photos (any size) with a checkpoint or a bundle."""
    import csv
    import io

    from rich.console import Console
    from rich.table import Table

    from maskopt.bundle.predict import predict as predict_
    from maskopt.outputs import atomic_write_text, check_file_out

    if out is not None:
        check_file_out(out)  # before any prediction
    pred = predict_(
        checkpoint,
        images or [],
        on_eval=eval_,
        eval_data=data if eval_ else None,
        crop=crop,
        tta=tta,
        device=device,
        runtime=runtime,
    )
    rows, heldout, eval_data = pred.rows(), pred.heldout, pred.eval_data
    cols = ("image", "class", "mask", "gender", "age", "probability")
    if out is not None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=cols)
        writer.writeheader()
        writer.writerows({**r, "probability": f"{r['probability']:.4f}"} for r in rows)
        atomic_write_text(out, buf.getvalue())
        Console().print(f"wrote {len(rows)} predictions to {out}")
    else:
        table = Table(title=f"{len(rows)} predictions ({checkpoint})")
        for c in cols:
            table.add_column(c, justify="right" if c in ("class", "probability") else "left")
        for r in rows:
            table.add_row(
                r["image"],
                str(r["class"]),
                r["mask"],
                r["gender"],
                r["age"],
                f"{r['probability']:.3f}",
            )
        Console().print(table)
    if heldout is not None:
        # plain echo: one line however narrow the terminal, and no markup in "[95% CI ...]"
        typer.echo(f"held-out macro F1 {heldout} ({eval_data}/eval/solution.csv)")


@app.command()
@friendly
def eda(
    data: DataOpt = DEFAULT_DATA,
    out: Annotated[Path, typer.Option("--out", help="The HTML report to write.")] = Path(
        "eda.html"
    ),
    skip_bad: SkipBadOpt = False,
) -> None:
    """Class mix, image sizes, duplicate photos and label checks; one HTML report."""
    from rich.console import Console
    from rich.table import Table

    from maskopt.data.eda import run_eda
    from maskopt.data.labels import AGE_NAMES, CLASS_NAMES, GENDER_NAMES, MASK_NAMES
    from maskopt.data.layout import read_train
    from maskopt.outputs import check_file_out

    check_file_out(out)  # before the data is read
    ds = read_train(data, skip_bad=skip_bad)
    s = run_eda(ds, out, progress=True)
    console = Console()

    def pct(n: int) -> str:
        return f"{n} ({100 * n / max(1, s['images']):.1f}%)"

    overview = Table(title=f"{s['root']}: {s['images']} images, {s['people']} people")
    overview.add_column("what")
    overview.add_column("images", justify="right")
    for names, key in ((MASK_NAMES, "mask"), (GENDER_NAMES, "gender"), (AGE_NAMES, "age")):
        for name, n in zip(names, s[key], strict=True):
            overview.add_row(f"{key} {name}", pct(n))
    overview.add_row("sizes", ", ".join(f"{k}: {v}" for k, v in s["sizes"].items()))
    overview.add_row("formats", ", ".join(f"{k}: {v}" for k, v in s["formats"].items()))
    if s["skipped_people"]:
        overview.add_row("skipped people (--skip-bad)", str(s["skipped_people"]))
    console.print(overview)

    classes = Table(title="images per class")
    classes.add_column("class")
    classes.add_column("name")
    classes.add_column("images", justify="right")
    for c, (name, n) in enumerate(zip(CLASS_NAMES, s["classes"], strict=True)):
        classes.add_row(str(c), name, pct(n))
    console.print(classes)

    if s["duplicates"]:
        dups = Table(title=f"duplicate images: {len(s['duplicates'])} groups (first 20)")
        dups.add_column("files")
        for group in s["duplicates"][:20]:
            dups.add_row(", ".join(group))
        console.print(dups)
    else:
        console.print("duplicate images: none")
    if s["flags"]:
        flags = Table(title=f"photos to check: {len(s['flags'])} (first 20)")
        for col in ("folder", "file", "check", "prob"):
            flags.add_column(col)
        for f in s["flags"][:20]:
            flags.add_row(f["folder"], f["file"], f["check"], f"{f['prob']:.2f}")
        console.print(flags)
    else:
        console.print("photos to check: none (no photo's mask state is at odds with its file)")
    console.print(f"report: {s['html']} ({s['seconds']} s)")


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
