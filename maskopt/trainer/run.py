"""`train(TrainOptions)`: what `maskopt train` does — one config on one fold (or all the
data), with TensorBoard events while it trains and a checkpoint + metrics.json at the end.

The run is built in a hidden folder beside `out` and swapped into place once training has
finished (maskopt.outputs.replace_dir): a run that fails or is interrupted leaves `out` as it
was, and only an earlier run folder (config.json + metrics.json, nothing else) is replaced.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maskopt.data.labels import OLD_AGE
from maskopt.data.layout import TrainSet, read_train
from maskopt.errors import ConfigError
from maskopt.outputs import Owned, atomic_write_text, check_out_dir, replace_dir
from maskopt.trainer.checkpoint import save_checkpoint
from maskopt.trainer.config import TrainConfig, config_to_dict, dump_config, load_config
from maskopt.trainer.folds import create_folds
from maskopt.trainer.loop import fit
from maskopt.trainer.metrics import compute_metrics
from maskopt.trainer.options import TrainOptions

CHECKPOINT = "model.pt"
METRICS = "metrics.json"
CONFIG = "config.json"
TENSORBOARD = "tensorboard"
# A run folder: a later `maskopt train --out` into it replaces it whole (maskopt.outputs).
RUN = Owned(
    what="training run",
    marks=(CONFIG, METRICS),
    entries=frozenset({CHECKPOINT, METRICS, CONFIG, TENSORBOARD}),
    made_by="maskopt train",
)


@dataclass(frozen=True)
class RunResult:
    """What a training run wrote (`out`) and scored; `metrics` is metrics.json as written."""

    out: Path
    metrics: dict[str, Any]

    @property
    def best_f1(self) -> float | None:
        return self.metrics["best_f1"]

    @property
    def best_epoch(self) -> int:
        return self.metrics["best_epoch"]

    @property
    def validation(self) -> dict[str, Any] | None:
        """compute_metrics of the best epoch's validation predictions (None with --full)."""
        return self.metrics["validation"]

    @property
    def images_per_s(self) -> float:
        return self.metrics["images_per_s"]

    @property
    def seconds(self) -> float:
        return self.metrics["seconds"]


def train(
    opts: TrainOptions,
    *,
    on_start: Callable[[TrainConfig, TrainSet], Any] | None = None,
    on_epoch: Callable[[dict], Any] | None = None,
) -> RunResult:
    """`maskopt train`: read the config and the data, train, write the run folder. The out
    folder is checked before the data is read; `on_start(cfg, data)` is told before training."""
    cfg = load_config(opts.config)
    out = check_out_dir(opts.out_dir, RUN)
    data = read_train(opts.data, skip_bad=opts.skip_bad, crop=opts.crop, cache_dir=opts.cache)
    if on_start is not None:
        on_start(cfg, data)
    return train_to_dir(
        cfg,
        data,
        out,
        fold=opts.fold,
        n_folds=opts.folds,
        fold_seed=opts.fold_seed,
        full=opts.full,
        device=opts.device,
        on_epoch=on_epoch,
    )


def train_to_dir(
    cfg: TrainConfig,
    data,
    out: str | Path,
    *,
    fold: int = 0,
    n_folds: int = 5,
    fold_seed: int = 0,
    full: bool = False,
    device: str = "auto",
    num_workers: int | None = None,
    on_epoch: Callable[[dict], Any] | None = None,
) -> RunResult:
    """Train and write `out`/model.pt, metrics.json, config.json and tensorboard/; returns what
    was written and scored. `full` trains on all the data (no validation).
    `out` is absent, empty or an earlier run (replaced whole once this one has finished)."""

    check_out_dir(out, RUN)
    split: tuple[np.ndarray, np.ndarray] | None = None
    if not full:
        folds = create_folds(data.strata(), data.groups(), n_folds, fold_seed)
        if isinstance(fold, bool) or not 0 <= fold < n_folds:
            raise ConfigError(
                f"fold: expected an integer in 0..{n_folds - 1} (with --folds {n_folds}), "
                f"but got {fold!r}."
            )
        split = folds[fold]
    with replace_dir(out, RUN) as folder:
        writer = _tensorboard(folder / TENSORBOARD)

        def epoch_done(m: dict) -> None:
            for key in ("train_loss", "val_f1", "val_loss", "lr", "images_per_s"):
                if m.get(key) is not None:
                    writer.add_scalar(key, m[key], m["epoch"])
            writer.flush()
            if on_epoch is not None:
                on_epoch(m)

        started = time.time()
        try:
            result = fit(
                cfg, data, split, on_epoch=epoch_done, device=device, num_workers=num_workers
            )
        finally:
            writer.close()
        metrics: dict[str, Any] = {
            "config": config_to_dict(cfg),
            "data": str(getattr(data, "root", "")),
            "data_fingerprint": data.fingerprint() if hasattr(data, "fingerprint") else None,
            "full": full,
            "fold": None if full else fold,
            "n_folds": None if full else n_folds,
            "fold_seed": None if full else fold_seed,
            "n_train": int(len(data.labels()) if split is None else len(split[0])),
            "n_val": 0 if split is None else int(len(split[1])),
            "best_epoch": result.best_epoch,
            "best_f1": result.best_f1,
            "epochs_run": result.epochs_run,
            "images_per_s": result.images_per_s,
            "seconds": round(time.time() - started, 2),
            "history": result.history,
            "validation": None,
        }
        if result.val_probs is not None and result.val_index is not None:
            y = np.asarray(data.labels(OLD_AGE))[result.val_index]  # validation: true labels
            metrics["validation"] = compute_metrics(y, result.val_probs)
        extras = {
            k: metrics[k] for k in ("fold", "n_folds", "fold_seed", "best_epoch", "best_f1", "full")
        }
        save_checkpoint(folder / CHECKPOINT, result.state_dict, cfg, **extras)
        atomic_write_text(folder / CONFIG, dump_config(cfg, ".json"))
        atomic_write_text(folder / METRICS, json.dumps(metrics, indent=2) + "\n")
    return RunResult(Path(out), metrics)


def _tensorboard(folder: Path):
    """A TensorBoard SummaryWriter; a no-op writer if tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is a dependency, but training must not hinge on a log
        return _NoWriter()
    return SummaryWriter(log_dir=str(folder))


class _NoWriter:
    """Stands in for TensorBoard's SummaryWriter where tensorboard cannot be imported."""

    def add_scalar(self, *a: Any, **k: Any) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
