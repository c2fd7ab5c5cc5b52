"""Device augmentation and CutMix / MixUp on a real CUDA device (skipped where there is none;
scripts/device_check.sh runs them): they train there, and a seed draws the same on the GPU as
on the CPU (the random parameters come from torch's CPU generator)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.trainer.conftest import tiny_cfg

pytestmark = pytest.mark.cuda


def test_device_augmentation_and_cutmix_train_on_cuda(tiny_set, tiny_folds):
    from maskopt.trainer.loop import FoldRun

    cfg = tiny_cfg(epochs=1, augment=3, augment_on="device", mix="cutmix", loss="focal")
    with FoldRun(cfg, tiny_set, *tiny_folds[0], device="cuda") as run:
        row = run.run_epoch()
    assert np.isfinite(row["train_loss"]) and 0.0 <= row["val_f1"] <= 1.0


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mixing_draws_the_same_on_cuda_as_on_the_cpu(kind):
    from maskopt.trainer.mix import mix_batch

    x = torch.rand(16, 3, 40, 32, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16)
    out = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(5)
        out[device] = mix_batch(x.to(device), y.to(device), kind, 1.0)
    assert torch.equal(out["cpu"].target_b, out["cuda"].target_b.cpu())
    assert torch.allclose(out["cpu"].lam, out["cuda"].lam.cpu())
    assert torch.allclose(out["cpu"].x, out["cuda"].x.cpu(), atol=1e-5)


def test_device_augment_draws_the_same_on_cuda_as_on_the_cpu():
    from maskopt.data.device_augment import create_device_augment

    aug = create_device_augment(3)
    x = torch.rand(16, 3, 40, 32, generator=torch.Generator().manual_seed(0))
    out = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(7)
        out[device] = aug(x.to(device)).cpu()
    # same parameters; the kernels round differently
    assert (out["cpu"] - out["cuda"]).abs().mean() < 1e-3


def test_auto_measures_both_placements_on_cuda_and_trains_with_the_faster(
    tiny_set, tiny_folds, monkeypatch
):
    import maskopt.trainer.placement as placement
    from maskopt.trainer.loop import FoldRun

    monkeypatch.setattr(placement, "_MEASURED", {})
    cfg = tiny_cfg(epochs=1, augment=2, augment_on="auto")
    got = placement.resolve_augment_on(cfg, tiny_set, torch.device("cuda"), num_workers=1)
    assert got.measured and got.cpu_images_per_s > 0 and got.device_images_per_s > 0
    faster = "device" if got.device_images_per_s > got.cpu_images_per_s else "cpu"
    assert got.chosen == faster
    with FoldRun(cfg, tiny_set, *tiny_folds[0], device="cuda", num_workers=1) as run:
        assert run.augment_on == got.chosen  # the pool took the cached measurement
        row = run.run_epoch()
    assert np.isfinite(row["train_loss"])
