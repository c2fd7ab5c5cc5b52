"""The trade-off table times each architecture once: a model's speed is its backbone, head and
input size, not its training (a student of the best single's backbone shares its figures)."""

from __future__ import annotations

import dataclasses

import numpy as np

from maskopt.export import tradeoff
from tests.trainer.conftest import tiny_cfg


def test_each_architecture_runtime_and_tta_is_timed_once(monkeypatch) -> None:
    timed: list[tuple] = []

    def fake(cfg, images, device, tta) -> float:
        timed.append((cfg.backbone, cfg.image_size, tta))
        return 100.0 + len(timed)

    monkeypatch.setattr(tradeoff, "images_per_s", fake)
    speeds = tradeoff.Speeds("cpu")
    images = np.zeros((4, 40, 32, 3), np.uint8)
    best = tiny_cfg(backbone="test_resnet", lr=1e-2)
    retrained = dataclasses.replace(best, lr=3e-3, seed=7, epochs=5)  # same architecture
    other = tiny_cfg(backbone="test_convnext")
    first = speeds.get(best, images, False)
    assert speeds.get(retrained, images, False) == first
    assert speeds.get(other, images, False) != first
    speeds.get(best, images, True)
    speeds.get(dataclasses.replace(best, image_size=best.image_size * 2), images, False)
    assert len(timed) == 4 and len(set(timed)) == 4  # none timed twice
