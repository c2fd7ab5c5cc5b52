"""`maskopt search` and `maskopt spaces`: running a study, and the spaces it searches."""

from __future__ import annotations

import typer

from maskopt.cli import options as o
from maskopt.cli import render
from maskopt.cli.render import friendly
from maskopt.search.options import SearchOptions

D = SearchOptions  # the defaults' one home


@friendly
def search(
    ctx: typer.Context,
    trials: o.Trials = D.trials,
    space: o.Space = D.space,
    folds: o.Folds = D.folds,
    epochs: o.Epochs = D.epochs,
    study: o.Study = D.study,
    storage: o.Storage = D.storage,
    artifacts: o.Artifacts = D.artifacts,
    tensorboard: o.TensorBoard = D.tensorboard,
    track: o.Track = None,
    sampler: o.Sampler = D.sampler,
    pruner: o.Pruner = D.pruner,
    startup_trials: o.StartupTrials = D.startup_trials,
    warmup_steps: o.WarmupSteps = D.warmup_steps,
    seed: o.SearchSeed = D.seed,
    timeout: o.Timeout = D.timeout,
    workers: o.Workers = D.workers,
    gpus: o.Gpus = None,
    keep_models: o.KeepModels = D.keep_models,
    heartbeat: o.Heartbeat = D.heartbeat,
    data: o.Data = D.data,
    crop: o.Crop = D.crop,
    cache: o.Cache = D.cache,
    skip_bad: o.SkipBad = D.skip_bad,
    device: o.Device = D.device,
) -> None:
    """Run (or resume) an Optuna study: k-fold trials, pruning, fold models of the best kept."""
    from rich.console import Console

    from maskopt.search.gpus import parse_gpus
    from maskopt.search.runner import run_search

    # Every parameter is a SearchOptions field of the same name (gpus parsed from its text).
    opts = SearchOptions(**{**ctx.params, "gpus": parse_gpus(gpus), "track": tuple(track or ())})
    console = Console()
    s = run_search(opts, console=console)
    render.search_summary(console, s)
    if s.interrupted:
        raise typer.Exit(130)
    if s.problems and s.finished < s.trials_wanted:
        raise typer.Exit(1)


spaces_app = typer.Typer(
    help="Search spaces: list them, or show one.",
    no_args_is_help=False,
    invoke_without_command=True,
)


@spaces_app.callback()
@friendly
def spaces(ctx: typer.Context) -> None:
    """List the built-in search spaces (show one: maskopt spaces show NAME)."""
    if ctx.invoked_subcommand is None:
        from maskopt.spaces import list_spaces

        render.spaces(list_spaces())


@spaces_app.command("show")
@friendly
def spaces_show(name: o.SpaceName) -> None:
    """Print one space: each key's distribution or fixed value."""
    from maskopt.spaces import get_space

    typer.echo(get_space(name).describe())
