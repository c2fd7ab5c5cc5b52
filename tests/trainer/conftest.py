"""Trainer test helpers: the tiniest real timm model and a 3-fold split of the tiny set."""

from __future__ import annotations

from typing import Any

import pytest

# test_resnet: a real timm ResNet with 0.4 M parameters, a few ms per batch at 32 px
TINY_CFG: dict[str, Any] = dict(
    backbone="test_resnet", image_size=32, batch_size=16, epochs=2, augment=1
)


def tiny_cfg(**changes: Any):
    from maskopt.trainer.config import TrainConfig

    return TrainConfig(**{**TINY_CFG, **changes})


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """One intra-op thread and no loader processes: these models are tiny, and the cores
    are shared with other test processes, where spinning OpenMP threads and worker
    processes would slow everyone down. Tests of workers pass num_workers themselves."""
    import torch

    monkeypatch.setenv("MASKOPT_WORKERS", "0")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_folds(tiny_set):
    from maskopt.trainer.folds import create_folds

    return create_folds(tiny_set.strata(), tiny_set.groups(), 3, seed=0)
