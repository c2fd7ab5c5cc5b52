"""Augmentation pipelines by strength, on HWC uint8 images (albumentations 2.x).

0: none; 1: horizontal flip + small shift/scale/rotate; 2: + colour jitter and
brightness/contrast; 3: + blur and coarse dropout. Never vertical flips: faces are
upright at an entrance camera. Normalisation (MEAN/STD) is not here: the trainer
applies it to the uint8 batch on the device, which is cheaper than per image.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from maskopt.errors import ConfigError

MEAN = (0.485, 0.456, 0.406)  # ImageNet, RGB, for images scaled to 0..1
STD = (0.229, 0.224, 0.225)
STRENGTHS = (0, 1, 2, 3)


class Augment:
    """Picklable HWC uint8 -> HWC uint8 callable (DataLoader workers get a copy).

    albumentations' Compose carries its own RNG, which a forked or spawned worker inherits
    unchanged: every worker would then draw the same augmentations. So the first call in a
    new process reseeds from ``torch.initial_seed()`` (the DataLoader sets it to
    base_seed + worker_id: distinct per worker, repeatable when torch is seeded), unless
    ``set_random_seed`` was called in that process (a caller seeding each batch itself).
    """

    def __init__(self, strength: int, compose: Any) -> None:
        self.strength = strength
        self._compose = compose
        self._pid = os.getpid()  # the process whose seeding the RNG reflects

    def set_random_seed(self, seed: int | None) -> None:
        self._compose.set_random_seed(seed)
        self._pid = os.getpid()

    @property
    def transforms(self) -> list[str]:
        return [type(t).__name__ for t in self._compose.transforms]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if os.getpid() != self._pid:
            torch = sys.modules.get("torch")
            self.set_random_seed(torch.initial_seed() % 2**32 if torch else None)
        return self._compose(image=image)["image"]

    def __repr__(self) -> str:
        return f"Augment(strength={self.strength}, {self._compose!r})"


def check_strength(strength: int) -> int:
    """`strength` if it is one of STRENGTHS, else a ConfigError naming it."""
    if strength not in STRENGTHS or isinstance(strength, bool):
        raise ConfigError(f"augment must be one of 0, 1, 2, 3, but got augment={strength!r}.")
    return strength


def create_augment(
    strength: int, seed: int | None = None
) -> Callable[[np.ndarray], np.ndarray] | None:
    """The pipeline of ``strength`` 0..3 (None for 0: nothing to do); ``seed`` makes it repeat."""
    if check_strength(strength) == 0:
        return None
    # albumentations looks for a newer version on the network when first imported, unless told
    # not to (a search must neither wait for nor depend on the network).
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A
    import cv2

    # Reflect at the border: a black wedge after a rotation would be a cue no real photo has.
    steps: list = [
        A.HorizontalFlip(p=0.5),
        A.Affine(
            translate_percent=(-0.06, 0.06),
            scale=(0.9, 1.1),
            rotate=(-10, 10),
            border_mode=cv2.BORDER_REFLECT_101,
            p=0.7,
        ),
    ]
    if strength >= 2:
        # Lighting and camera colour differ between entrances; hue stays small so skin
        # and mask colours keep their meaning.
        steps += [
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
            A.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.2, hue=0.03, p=0.5),
        ]
    if strength >= 3:
        steps += [
            A.GaussianBlur(blur_limit=(3, 5), p=0.2),
            # Small holes (up to 1/8 of a side): occlusion robustness without erasing
            # the whole mask, which would change the label.
            A.CoarseDropout(
                num_holes_range=(1, 4),
                hole_height_range=(0.05, 0.125),
                hole_width_range=(0.05, 0.125),
                fill=0,
                p=0.5,
            ),
        ]
    return Augment(strength, A.Compose(steps, seed=seed))
