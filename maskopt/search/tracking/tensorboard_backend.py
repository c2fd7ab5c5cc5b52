"""TensorBoard: DIR/<study>/trial_<n>/ holds the trial's parameters as hparams and its value;
DIR/<study>/trial_<n>/fold_<k>/ one curve per fold of train_loss, val_loss, val_f1 (macro F1)
and lr against the epoch. `tensorboard --logdir DIR` compares the trials.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch.utils.tensorboard.summary import hparams

from maskopt.outputs import mark_dir
from maskopt.search.tracking.base import scalar
from maskopt.store.locations import TENSORBOARD_MARKER

if TYPE_CHECKING:
    pass


class TensorBoardBackend:
    """DIR/<study>/trial_<n>/ (hparams, value) and DIR/<study>/trial_<n>/fold_<k>/ (curves)."""

    name = "tensorboard"

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.run_dir: Path | None = None
        self.params: dict[str, Any] = {}
        self.writers: dict[int, Any] = {}

    def prepare(self, study: str) -> None:
        pass  # each trial's run is its own folder

    def start(
        self, study: str, number: int, params: Mapping[str, Any], config: Mapping[str, Any]
    ) -> None:
        self.close()
        mark_dir(self.root, TENSORBOARD_MARKER)
        self.run_dir = self.root / study / f"trial_{number:04d}"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.params = {k: scalar(v) for k, v in params.items()}

    def log_epoch(self, fold: int, epoch: int, metrics: Mapping[str, float]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        assert self.run_dir is not None, "log_epoch before start"
        if fold not in self.writers:
            self.writers[fold] = SummaryWriter(log_dir=str(self.run_dir / f"fold_{fold}"))
        writer = self.writers[fold]
        for key, value in metrics.items():
            writer.add_scalar(key, value, epoch)
        writer.flush()

    def end(self, value: float | None, state: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        assert self.run_dir is not None, "end before start"
        metric = math.nan if value is None else float(value)
        writer = SummaryWriter(log_dir=str(self.run_dir))
        try:
            # the hparams summaries go into the trial's own run (add_hparams would make a new one)
            file_writer = writer.file_writer
            assert file_writer is not None
            for summary in hparams({**self.params, "state": state}, {"value": metric}):
                file_writer.add_summary(summary)
            writer.add_scalar("value", metric, 0)
        finally:
            writer.close()
        self.close()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers = {}
