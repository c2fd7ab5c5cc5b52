"""`maskopt studies`, `maskopt best` (the top trials, one trial's config, the export) and
`maskopt dashboard`: looking at a study and turning it into a deliverable."""

from __future__ import annotations

import dataclasses

import typer

from maskopt.cli import options as o
from maskopt.cli import render
from maskopt.cli.render import friendly
from maskopt.errors import ConfigError
from maskopt.export.options import ExportOptions

D = ExportOptions  # the defaults' one home
EXPORT_FIELDS = {f.name for f in dataclasses.fields(ExportOptions)}


@friendly
def studies(storage: o.Storage = D.storage) -> None:
    """The studies in a storage: trials by state, best value, last activity."""
    from maskopt.studies.listing import list_studies

    render.studies(storage, list_studies(storage))


@friendly
def best(
    study: o.Study = D.study,
    storage: o.Storage = D.storage,
    artifacts: o.Artifacts = D.artifacts,
    top: o.Top = D.top,
    export: o.Export = False,
    out: o.BundleOut = D.out,
    vote: o.Vote = D.vote,
    retrain: o.Retrain = D.retrain,
    tta: o.BundleTta = D.tta,
    onnx: o.Onnx = D.onnx,
    distill: o.Distill = D.distill,
    student: o.StudentBackbone = D.student,
    data: o.RecordedData = D.data,
    skip_bad: o.RecordedSkipBad = D.skip_bad,
    cache: o.Cache = D.cache,
    device: o.Device = D.device,
    trial: o.Trial = None,
    config_out: o.ConfigOut = None,
) -> None:
    """The top trials of a study; --export builds the ensemble bundle."""
    options = dict(locals())  # every option by name: ExportOptions' fields share the names
    from rich.console import Console

    if (trial is None) != (config_out is None):
        raise ConfigError(
            "--trial and --config-out go together: give both, e.g. --trial 12 --config-out cfg.json."
        )
    console = Console()
    if trial is not None and config_out is not None:
        from maskopt.studies.table import write_trial_config

        path = write_trial_config(storage, study, trial, config_out)
        console.print(f"trial {trial}'s config written to {path}  (maskopt train --config {path})")
    elif export:
        from maskopt.export.export import export_best

        opts = ExportOptions(**{k: v for k, v in options.items() if k in EXPORT_FIELDS})
        render.export_report(
            console, export_best(opts, echo=lambda s: console.print(f"[dim]{s}[/dim]"))
        )
    else:
        from maskopt.studies.table import top_trials

        render.best_trials(study, top_trials(storage, study, top, artifacts))


@friendly
def dashboard(
    storage: o.Storage = D.storage,
    artifacts: o.Artifacts = D.artifacts,
    host: o.Host = "127.0.0.1",
    port: o.Port = 8080,
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
