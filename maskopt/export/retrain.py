"""The members' models: each chosen trial retrained on all the data, or its fold models.

A retrained member trains for the median of its folds' best epochs (its schedule laid
out for that length) with a seed of its own: in the search every trial trained with
the study's fold seed, and members that start alike and see batches alike vary less.
When the folds' best epochs sat at the trial's last epoch the search stopped them
before they converged, and the export says so.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from maskopt.progress import progress_bar
from maskopt.trainer.checkpoint import save_checkpoint
from maskopt.trainer.loop import fit

if TYPE_CHECKING:
    from maskopt.data.layout import TrainSet
    from maskopt.export.candidates import Candidate
    from maskopt.trainer.config import TrainConfig

log = logging.getLogger(__name__)

# Trained models by trial number: checkpoint paths relative to the bundle, and the config.
Trained = dict[int, tuple[list[str], "TrainConfig"]]


def retrain_config(cfg: TrainConfig, fold_best_epoch: Sequence[int]) -> TrainConfig:
    """The config for training on all the data: epochs = median of the folds' best epochs
    (rounded up), so its schedule is laid out for that length."""
    if not fold_best_epoch:
        return cfg
    epochs = max(1, int(math.ceil(float(np.median(fold_best_epoch)))))
    return dataclasses.replace(
        cfg,
        epochs=epochs,
        warmup_epochs=min(cfg.warmup_epochs, epochs - 1),
        freeze_epochs=min(cfg.freeze_epochs, epochs),
    )


def member_seed(cfg: TrainConfig, trial: int) -> int:
    """A seed of the member's own: the search's seed moved by the trial number (distinct
    for distinct trials, the same on every export of the same study)."""
    return (cfg.seed + 1 + trial) % 2**32


def epoch_cap_note(c: Candidate) -> str | None:
    """A note when most folds' best epoch was the trial's last one."""
    best = c.fold_best_epoch
    if not best or float(np.median(best)) < c.config.epochs:
        return None
    return (
        f"trial {c.number}: the folds' best epochs ({', '.join(map(str, best))}) reached its "
        f"last epoch ({c.config.epochs}): the search's epochs were too few for it to converge; "
        "search with more epochs to let the retrain copy a converged regime."
    )


def retrain(
    members: Sequence[Candidate],
    data: TrainSet,
    folder: Path,
    *,
    device: str,
    progress: bool,
    study: str,
) -> Trained:
    """Train each member's config on all the data; checkpoints `models/trial-N.pt`."""

    cfgs = {
        c.number: dataclasses.replace(
            retrain_config(c.config, c.fold_best_epoch), seed=member_seed(c.config, c.number)
        )
        for c in members
    }
    out: Trained = {}
    with progress_bar(enabled=progress, transient=False) as bar:
        task = bar.add_task(
            "retraining on all data (epochs)", total=sum(c.epochs for c in cfgs.values())
        )
        for c in members:
            cfg = cfgs[c.number]
            bar.update(
                task, description=f"retraining trial {c.number} on all data ({cfg.epochs} epochs)"
            )
            log.info(
                "retraining trial %d on all %d images for %d epochs (seed %d)",
                c.number,
                len(data),
                cfg.epochs,
                cfg.seed,
            )
            result = fit(cfg, data, fold=None, on_epoch=lambda _m: bar.advance(task), device=device)
            rel = f"models/trial-{c.number}.pt"
            save_checkpoint(
                folder / rel, result.state_dict, cfg, trial=c.number, study=study, retrained=True
            )
            out[c.number] = ([rel], cfg)
    return out


def copy_fold_models(
    members: Sequence[Candidate], fold_cks: dict[int, list[Path]], folder: Path
) -> Trained:
    """Move each member's downloaded fold models into the bundle (`--no-retrain`)."""
    out: Trained = {}
    for c in members:
        rels = []
        for k, src in enumerate(fold_cks[c.number]):
            rel = f"models/trial-{c.number}-fold-{k}.pt"
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            src.replace(folder / rel)
            rels.append(rel)
        out[c.number] = (rels, c.config)
    return out
