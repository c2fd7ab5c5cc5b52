"""Augmentation pipelines: shape-preserving, strength-ordered, never upside down."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from maskopt.data.augment import MEAN, STD, create_augment
from maskopt.errors import ConfigError


def _image(seed: int = 0) -> np.ndarray:
    """80x64 portrait: bright top half (hair, eyes), dark bottom half, plus texture."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 40, (80, 64, 3), dtype=np.uint8)
    img[:40] += 200
    return img


def _names(aug) -> list[str]:
    return aug.transforms


def test_strength_zero_is_none_and_bad_strength_is_a_config_error() -> None:
    assert create_augment(0) is None
    for bad in (-1, 4, "2"):
        with pytest.raises(ConfigError, match="augment must be one of 0, 1, 2, 3"):
            create_augment(bad)  # type: ignore[arg-type]


def test_each_strength_adds_to_the_one_below() -> None:
    names = [_names(create_augment(s)) for s in (1, 2, 3)]
    assert names[0] == ["HorizontalFlip", "Affine"]
    assert names[1][:2] == names[0] and "ColorJitter" in names[1]
    assert names[2][: len(names[1])] == names[1]
    assert {"GaussianBlur", "CoarseDropout"} <= set(names[2])
    assert not any("Vertical" in n for ns in names for n in ns)


@pytest.mark.parametrize("strength", [1, 2, 3])
def test_keeps_shape_dtype_and_changes_pixels(strength: int) -> None:
    aug = create_augment(strength)
    assert aug is not None
    img = _image()
    outs = [aug(img.copy()) for _ in range(20)]
    assert all(o.shape == img.shape and o.dtype == np.uint8 for o in outs)
    assert sum(not np.array_equal(o, img) for o in outs) >= 10  # it does something, often
    # never upside down: the bright half stays on top in every sample
    assert all(o[:30].mean() > o[50:].mean() + 100 for o in outs)


def test_flips_left_right_sometimes() -> None:
    img = _image()
    img[:, :32] = 0  # dark left half
    aug = create_augment(1)
    assert aug is not None
    left_darker = [(o := aug(img))[:, :20].mean() < o[:, 44:].mean() for _ in range(40)]
    assert 5 <= sum(left_darker) <= 35  # both orientations come up


def test_picklable_for_dataloader_workers() -> None:
    aug = create_augment(3)
    copy = pickle.loads(pickle.dumps(aug))
    assert _names(copy) == _names(aug)
    assert copy(_image()).shape == (80, 64, 3)


def test_imagenet_mean_and_std() -> None:
    np.testing.assert_allclose(MEAN, (0.485, 0.456, 0.406))
    np.testing.assert_allclose(STD, (0.229, 0.224, 0.225))


def test_seed_repeats_the_same_augmentations() -> None:
    a, b = create_augment(3, seed=7), create_augment(3, seed=7)
    assert a is not None and b is not None
    img = _image()
    for _ in range(5):
        np.testing.assert_array_equal(a(img), b(img))


class _Repeat:
    """The same image 8 times, augmented in the loader's workers."""

    def __init__(self, aug, seed_each: int | None = None) -> None:
        self.aug = aug
        self.seed_each = seed_each

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> np.ndarray:
        if self.seed_each is not None:  # a caller that seeds every item itself
            self.aug.set_random_seed(self.seed_each + i)
        return self.aug(_image())


def _batches(dataset: _Repeat, workers: int) -> list[np.ndarray]:
    from torch.utils.data import DataLoader

    loader: DataLoader = DataLoader(dataset, batch_size=4, num_workers=workers)  # type: ignore[arg-type]
    return [batch.numpy() for batch in loader]


def test_dataloader_workers_draw_different_augmentations() -> None:
    import torch

    aug = create_augment(3, seed=0)
    torch.manual_seed(0)
    first, second = _batches(_Repeat(aug), 2)  # one batch from each worker
    assert not np.array_equal(first, second)  # a copied RNG would make them identical
    torch.manual_seed(0)
    np.testing.assert_array_equal(_batches(_Repeat(aug), 2)[0], first)  # a seeded run repeats


def test_explicit_seeding_in_a_worker_is_kept() -> None:
    aug = create_augment(3)
    seeded = _batches(_Repeat(aug, seed_each=100), 2)
    alone = _batches(_Repeat(aug, seed_each=100), 0)
    for got, want in zip(seeded, alone, strict=True):
        np.testing.assert_array_equal(got, want)  # same seeds -> same images, any worker
