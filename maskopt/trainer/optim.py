"""`create_optimizer` and `create_scheduler`: the config's optimizer, and its learning-rate
schedule stepped once an epoch (after an optional linear warm-up)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch

if TYPE_CHECKING:
    from maskopt.trainer.config import TrainConfig


def create_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """sgd (momentum 0.9, nesterov) / adam / adamw; no weight decay on biases and norm weights."""

    decay: list = []
    no_decay: list = []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise AssertionError(f"unvalidated optimizer {cfg.optimizer!r}")


class EpochScheduler:
    """Sets the learning rate of each epoch: warm-up, then step / cosine / plateau / none.

    Call `step(metric)` after each epoch; `metric` is what plateau watches (validation
    macro F1, higher is better; or training loss with `mode="min"` when there is no
    validation part). `lr` is the rate the next epoch trains at.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        optimizer: torch.optim.Optimizer,
        mode: Literal["min", "max"] = "max",
    ) -> None:

        self.optimizer = optimizer
        self.base_lr = cfg.lr
        self.warmup = cfg.warmup_epochs
        self.epoch = 0  # epochs done
        rest = max(1, cfg.epochs - cfg.warmup_epochs)
        sched = torch.optim.lr_scheduler
        self.inner: Any
        if cfg.scheduler == "step":
            # three stages at 1, 0.1, 0.01 of the rate over the epochs after warm-up
            self.inner = sched.StepLR(optimizer, step_size=max(1, -(-rest // 3)), gamma=0.1)
        elif cfg.scheduler == "cosine":
            self.inner = sched.CosineAnnealingLR(optimizer, T_max=rest, eta_min=cfg.lr * 0.01)
        elif cfg.scheduler == "plateau":
            self.inner = sched.ReduceLROnPlateau(optimizer, mode=mode, factor=0.3, patience=1)
        else:
            self.inner = None
        if self.warmup:
            self._set(self.base_lr / (self.warmup + 1))

    def _set(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self, metric: float | None = None) -> None:
        self.epoch += 1
        if self.epoch < self.warmup:
            self._set(self.base_lr * (self.epoch + 1) / (self.warmup + 1))
            return
        if self.epoch == self.warmup:  # warm-up over: the schedule starts at the base rate
            self._set(self.base_lr)
            return
        if self.inner is None:
            return

        if isinstance(self.inner, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if metric is not None:
                self.inner.step(metric)
        else:
            self.inner.step()

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "inner": self.inner.state_dict() if self.inner is not None else None,
        }


def create_scheduler(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer, mode: Literal["min", "max"] = "max"
) -> EpochScheduler:
    """The config's schedule; `mode` "max" for plateau on validation F1, "min" on a loss."""
    return EpochScheduler(cfg, optimizer, mode=mode)
