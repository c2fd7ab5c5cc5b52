"""The kornia batch pipeline (augment_on: device): shapes, seeding, per-sample variety, no
vertical flip, and the same steps as the albumentations pipeline of each strength."""

from __future__ import annotations

import pytest
import torch

from maskopt.data.augment import create_augment
from maskopt.data.device_augment import box_mask, coarse_dropout, create_device_augment
from maskopt.errors import ConfigError

H, W = 40, 32  # portrait like the real images


def _batch(n: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, H, W, generator=g)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_strength_zero_is_none_and_bad_strength_is_a_config_error():
    assert create_device_augment(0) is None
    with pytest.raises(ConfigError, match="augment=4"):
        create_device_augment(4)


def test_each_strength_mirrors_the_albumentations_steps():
    names = {1: ["HorizontalFlip", "Affine"]}
    names[2] = names[1] + ["RandomBrightnessContrast", "ColorJitter"]
    names[3] = names[2] + ["GaussianBlur", "CoarseDropout"]
    kornia = {
        "RandomHorizontalFlip": "HorizontalFlip",
        "RandomAffine": "Affine",
        "ColorJiggle": "RandomBrightnessContrast",  # additive brightness, scaled contrast
        "ColorJitter": "ColorJitter",
        "RandomGaussianBlur": "GaussianBlur",
        "CoarseDropout": "CoarseDropout",
    }
    for strength in (1, 2, 3):
        cpu = create_augment(strength)
        assert cpu is not None and cpu.transforms == names[strength]  # type: ignore[attr-defined]
        device = create_device_augment(strength)
        assert device is not None
        assert [kornia[t] for t in device.transforms] == names[strength]


@pytest.mark.parametrize("strength", [1, 2, 3])
def test_keeps_shape_dtype_range_and_changes_pixels(strength):
    aug = create_device_augment(strength)
    x = _batch()
    torch.manual_seed(0)
    out = aug(x)
    assert out.shape == x.shape and out.dtype == torch.float32 and out.device == x.device
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.equal(out, x)
    assert torch.equal(x, _batch())  # the input is left as it was


def test_torch_seed_repeats_and_another_seed_differs():
    aug = create_device_augment(3)
    x = _batch()
    outs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        outs.append(aug(x))
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])


def test_every_sample_draws_its_own_parameters():
    """One image repeated 32 times: per-sample parameters give (nearly) 32 different results,
    and the horizontal flip hits some samples but not all."""
    aug = create_device_augment(1)
    x = _batch(1).expand(32, -1, -1, -1).contiguous()
    torch.manual_seed(0)
    out = aug(x)
    distinct = {tuple(o.flatten()[:64].tolist()) for o in out}
    assert len(distinct) >= 24  # affine has p 0.7, flip 0.5: identical draws are rare
    flip = create_device_augment(1)._seq[0]  # RandomHorizontalFlip
    torch.manual_seed(0)
    flipped = flip(x)
    hits = [torch.equal(f, x[0].flip(-1)) for f in flipped]
    assert 4 <= sum(hits) <= 28


def test_never_flips_vertically():
    """A bright top half stays the brighter half in every sample, at every strength."""
    x = torch.zeros(64, 3, H, W)
    x[:, :, : H // 2] = 0.9
    x[:, :, H // 2 :] = 0.1
    for strength in (1, 2, 3):
        torch.manual_seed(strength)
        out = create_device_augment(strength)(x)
        top = out[:, :, : H // 2].mean(dim=(1, 2, 3))
        bottom = out[:, :, H // 2 :].mean(dim=(1, 2, 3))
        assert bool((top > bottom).all()), strength


def test_coarse_dropout_blacks_out_one_to_four_small_holes_in_about_half():
    x = torch.ones(400, 3, 80, 64)
    torch.manual_seed(0)
    out = coarse_dropout(x)
    black = (out == 0).all(dim=1)  # (N, H, W): a hole blacks all three channels
    share = black.flatten(1).float().mean(1)
    hit = share > 0
    assert 0.4 < float(hit.float().mean()) < 0.6
    # up to 4 holes of at most 12.5 % x 12.5 % (rounded to whole pixels): at most 4 * 10 * 8
    assert float(share.max()) <= 4 * 10 * 8 / (80 * 64)
    assert float(share[hit].min()) >= 4 * 3 / (80 * 64)  # at least one 4x3 hole


def test_box_mask_marks_exactly_the_boxes():
    m = box_mask(
        torch.tensor([0, 2]), torch.tensor([2, 5]), torch.tensor([1, 0]), torch.tensor([3, 4]), 6, 5
    )
    assert m.shape == (2, 1, 6, 5) and m.dtype == torch.bool
    assert int(m[0].sum()) == 2 * 2 and bool(m[0, 0, 0:2, 1:3].all())
    assert int(m[1].sum()) == 3 * 4 and bool(m[1, 0, 2:5, 0:4].all())
