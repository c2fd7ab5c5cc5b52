"""Weights & Biases: a run named <study>-<n> in the project (WANDB_PROJECT, else "maskopt"),
grouped by study; the config and parameters as its config, `fold<k>/<metric>` against `epoch`,
the value and state in its summary. WANDB_MODE=offline writes it locally (`wandb sync` later).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

WANDB_PROJECT = "maskopt"  # when neither the option nor WANDB_PROJECT names one


class WandbBackend:
    """One W&B run per trial in `project`, grouped by study."""

    name = "wandb"

    def __init__(
        self,
        project: str | None = None,
        *,
        entity: str | None = None,
        directory: str | os.PathLike | None = None,
    ) -> None:
        self.project = project or os.environ.get("WANDB_PROJECT") or WANDB_PROJECT
        self.entity = entity
        # WANDB_DIR read here, not left to wandb: its settings are fixed process-wide at the
        # first run, so a later search in the same process would write where the first did
        directory = directory if directory is not None else os.environ.get("WANDB_DIR")
        self.directory = None if directory is None else str(directory)
        self.run: Any = None

    def prepare(self, study: str) -> None:
        pass  # W&B makes the project with its first run, whichever worker starts it

    def start(
        self, study: str, number: int, params: Mapping[str, Any], config: Mapping[str, Any]
    ) -> None:
        import wandb

        self.close()
        if self.directory is not None:
            Path(self.directory).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=self.project,
            entity=self.entity,
            group=study,
            job_type="trial",
            name=f"{study}-{number}",
            config={**config, **params, "study": study, "trial": number},
            dir=self.directory,
            reinit="create_new",
            # no console capture: a search shows its own progress on the terminal
            settings=wandb.Settings(console="off", silent=True),
        )
        self.run.define_metric("epoch")
        self.run.define_metric("fold*", step_metric="epoch")

    def log_epoch(self, fold: int, epoch: int, metrics: Mapping[str, float]) -> None:
        self.run.log({**{f"fold{fold}/{k}": v for k, v in metrics.items()}, "epoch": epoch})

    def end(self, value: float | None, state: str) -> None:
        run, self.run = self.run, None
        run.summary.update({"value": value, "state": state})
        run.tags = (*run.tags, state.lower())
        run.finish(exit_code=1 if state == "FAIL" else 0)

    def close(self) -> None:
        if self.run is not None:
            run, self.run = self.run, None
            run.finish(exit_code=1)
