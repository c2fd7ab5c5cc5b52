"""`maskopt train`: one config on one fold, or on all the data."""

from __future__ import annotations

from typing import Any

from maskopt.cli import options as o
from maskopt.cli import render
from maskopt.cli.render import friendly
from maskopt.trainer.options import TrainOptions

D = TrainOptions  # the defaults' one home


@friendly
def train(
    config: o.Config,
    data: o.Data = D.data,
    crop: o.Crop = D.crop,
    cache: o.Cache = D.cache,
    skip_bad: o.SkipBad = D.skip_bad,
    fold: o.Fold = D.fold,
    folds: o.Folds = D.folds,
    fold_seed: o.FoldSeed = D.fold_seed,
    full: o.Full = D.full,
    out: o.RunOut = D.out,
    device: o.Device = D.device,
) -> None:
    """Train one config on one fold (or all data): checkpoint, metrics.json, TensorBoard."""
    from rich.console import Console

    from maskopt.progress import progress_bar
    from maskopt.trainer.run import train as train_run

    opts = TrainOptions(
        config, data, crop, cache, skip_bad, fold, folds, fold_seed, full, out, device
    )
    console = Console()
    what = "all data" if full else f"fold {fold} of {folds}"
    with progress_bar(console=console, elapsed=True) as bar:
        task: list[Any] = []

        def start(cfg: Any, ds: Any) -> None:
            render.train_start(console, cfg, what, len(ds), ds.n_people)
            task.append(bar.add_task("epochs", total=cfg.epochs))
            task.append(cfg.epochs)

        def epoch(m: dict) -> None:
            bar.console.print(render.epoch_line(m, task[1]))
            bar.advance(task[0])

        res = train_run(opts, on_start=start, on_epoch=epoch)
    render.run_result(console, res)
