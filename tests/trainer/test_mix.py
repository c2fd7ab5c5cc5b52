"""CutMix and MixUp on the batch, the losses with mixed targets, and fits that use them
(with the kornia device augmentation and with torch.compile)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskopt.trainer.losses import create_loss
from maskopt.trainer.mix import mix_batch
from tests.trainer.conftest import tiny_cfg

LOSSES = ["cross_entropy", "focal", "label_smoothing", "f1"]


def _batch(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 20, 16, generator=g), torch.arange(n) % 18


def test_mixup_blends_each_sample_with_its_partner_at_its_own_share():
    x, y = _batch()
    torch.manual_seed(0)
    m = mix_batch(x, y, "mixup", 1.0)
    assert m.x.shape == x.shape and m.lam.shape == (12,) and m.target_b.shape == (12,)
    assert bool(((m.lam >= 0) & (m.lam <= 1)).all()) and len(set(m.lam.tolist())) == 12
    # each partner is a sample of the batch: find it by its label (labels are distinct here)
    partner = x[m.target_b]
    lam = m.lam.view(-1, 1, 1, 1)
    assert torch.allclose(m.x, lam * x + (1 - lam) * partner, atol=1e-6)


def test_cutmix_pastes_a_box_and_lam_is_the_share_of_own_pixels():
    x, y = _batch()
    torch.manual_seed(1)
    m = mix_batch(x, y, "cutmix", 1.0)
    partner = x[m.target_b]
    own = (m.x == x).all(dim=1)  # (N, H, W) pixels kept from the sample itself
    pasted = (m.x == partner).all(dim=1)
    assert bool((own | pasted).all())  # every pixel comes from one of the two
    for i in range(len(x)):
        if int(m.target_b[i]) == int(y[i]):  # paired with itself: all pixels are "own"
            continue
        assert float(own[i].float().mean()) == pytest.approx(float(m.lam[i]), abs=1e-6)
        rows, cols = torch.nonzero(~own[i], as_tuple=True)
        if len(rows):  # the pasted part is one box
            box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert int(box) == len(rows)


def test_mixing_keeps_channels_last_and_repeats_with_the_seed():
    x, y = _batch()
    x = x.contiguous(memory_format=torch.channels_last)
    for kind in ("mixup", "cutmix"):
        torch.manual_seed(3)
        a = mix_batch(x, y, kind, 0.4)
        torch.manual_seed(3)
        b = mix_batch(x, y, kind, 0.4)
        assert a.x.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(a.x, b.x) and torch.equal(a.lam, b.lam)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("weighted", [False, True])
def test_mixed_loss_is_the_plain_loss_at_the_ends(loss, weighted):
    logp = torch.randn(10, 18, generator=torch.Generator().manual_seed(0)).log_softmax(1)
    a, b = torch.arange(10), torch.arange(10) + 5
    weight = torch.linspace(0.5, 2.0, 18) if weighted else None
    fn = create_loss(tiny_cfg(loss=loss), weight)
    ones, zeros = torch.ones(10), torch.zeros(10)
    assert torch.allclose(fn(logp, a, target_b=b, lam=ones), fn(logp, a), atol=1e-6)
    assert torch.allclose(fn(logp, a, target_b=b, lam=zeros), fn(logp, b), atol=1e-6)
    half = fn(logp, a, target_b=b, lam=torch.full((10,), 0.5))
    assert torch.isfinite(half)


def test_mixed_cross_entropy_is_cross_entropy_on_soft_targets():
    logp = torch.randn(8, 18, generator=torch.Generator().manual_seed(1)).log_softmax(1)
    a, b = torch.arange(8), torch.arange(8).flip(0) + 3
    lam = torch.linspace(0.1, 0.9, 8)
    soft = lam[:, None] * torch.eye(18)[a] + (1 - lam[:, None]) * torch.eye(18)[b]
    fn = create_loss(tiny_cfg(loss="cross_entropy"))
    expected = -(soft * logp).sum(1).mean()
    assert torch.allclose(fn(logp, a, target_b=b, lam=lam), expected, atol=1e-6)
    # label smoothing is linear in the target as well
    ls = create_loss(tiny_cfg(loss="label_smoothing", label_smoothing=0.2))
    smooth = 0.8 * soft + 0.2 / 18
    assert torch.allclose(ls(logp, a, target_b=b, lam=lam), -(smooth * logp).sum(1).mean())


@pytest.mark.parametrize(
    "changes",
    [
        {"mix": "cutmix", "augment_on": "device", "augment": 3, "loss": "focal"},
        {"mix": "mixup", "mix_alpha": 0.4, "loss": "f1", "class_weights": "balanced"},
    ],
)
def test_a_fit_with_mixing_trains_and_repeats(tiny_set, tiny_folds, changes):
    from maskopt.trainer.loop import fit

    cfg = tiny_cfg(epochs=2, **changes)
    runs = [fit(cfg, tiny_set, tiny_folds[0], device="cpu") for _ in range(2)]
    for r in runs:
        assert all(np.isfinite(h["train_loss"]) for h in r.history)
        assert r.val_probs is not None and r.best_f1 is not None
    assert [h["train_loss"] for h in runs[0].history] == [h["train_loss"] for h in runs[1].history]
    plain = fit(tiny_cfg(epochs=2), tiny_set, tiny_folds[0], device="cpu")
    assert plain.history[0]["train_loss"] != runs[0].history[0]["train_loss"]


def test_device_augmentation_replaces_the_loaders(tiny_set, tiny_folds):
    """augment_on: device hands the loader's batches over unaugmented and augments them in the
    training process; interleaved runs still train as they would alone."""
    from maskopt.trainer.loop import FoldRun

    cfg = tiny_cfg(augment=2, augment_on="device", epochs=2)
    with FoldRun(cfg, tiny_set, *tiny_folds[0], device="cpu") as run:
        assert run.batch_augment is not None and run.loader.dataset.augment is None
        raw = next(iter(run.loader))[0]
        rows = next(iter(run.sampler))[2]
        assert torch.equal(raw, torch.from_numpy(np.asarray(tiny_set.images(32)[rows])))
    alone = FoldRun(cfg, tiny_set, *tiny_folds[0], device="cpu")
    a = [alone.run_epoch()["train_loss"] for _ in range(2)]
    alone.close()
    r0 = FoldRun(cfg, tiny_set, *tiny_folds[0], device="cpu")
    r1 = FoldRun(cfg, tiny_set, *tiny_folds[1], device="cpu")
    b = []
    for _ in range(2):
        b.append(r0.run_epoch()["train_loss"])
        r1.run_epoch()
    r0.close()
    r1.close()
    assert a == b
