"""What every tracking backend shares: the Backend protocol, the metrics logged, how a value
is made loggable and how a backend's failure is told in one line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    pass


log = logging.getLogger("maskopt.search")


METRICS = ("train_loss", "val_loss", "val_f1", "lr")  # of the trainer's history row


STATES = ("COMPLETE", "PRUNED", "FAIL")


class Backend(Protocol):
    """One tracking library. Calls come in order: start, log_epoch*, end (then maybe close);
    `prepare` once, before any worker starts."""

    name: str

    def prepare(self, study: str) -> None: ...
    def start(
        self, study: str, number: int, params: Mapping[str, Any], config: Mapping[str, Any]
    ) -> None: ...
    def log_epoch(self, fold: int, epoch: int, metrics: Mapping[str, float]) -> None: ...
    def end(self, value: float | None, state: str) -> None: ...
    def close(self) -> None: ...


def scalar(value: Any) -> int | float | str | bool:
    """A value TensorBoard hparams and MLflow params take (lists and None as text)."""
    return value if isinstance(value, int | float | str | bool) else str(value)


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__
