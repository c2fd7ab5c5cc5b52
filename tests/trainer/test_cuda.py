"""The trainer and prediction on a real CUDA device (skipped where there is none).

`scripts/device_check.sh` runs these on a GPU machine; on the CPU the placement tests in
test_device_placement.py stand in for them.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.trainer.conftest import tiny_cfg

pytestmark = pytest.mark.cuda


def test_fit_trains_and_validates_on_cuda(tiny_set, tiny_folds):
    import torch

    from maskopt.trainer.loop import FoldRun

    train_idx, val_idx = tiny_folds[0]
    with FoldRun(tiny_cfg(epochs=1), tiny_set, train_idx, val_idx, device="cuda") as run:
        assert next(run.model.parameters()).device.type == "cuda"
        row = run.run_epoch()
        assert np.isfinite(row["train_loss"]) and 0.0 <= row["val_f1"] <= 1.0
        result = run.result()
    assert all(v.device == torch.device("cpu") for v in result.state_dict.values())
    assert result.val_probs is not None and np.allclose(result.val_probs.sum(1), 1, atol=1e-3)


def test_cuda_and_cpu_predictions_agree(tmp_path, tiny_set):
    from maskopt.trainer.checkpoint import load_model, save_checkpoint
    from maskopt.trainer.models import create_model
    from maskopt.trainer.predict import predict_probs

    cfg = tiny_cfg()
    path = save_checkpoint(tmp_path / "m.pt", create_model(cfg).state_dict(), cfg)
    images = np.asarray(tiny_set.images(cfg.image_size)[:16])
    on_cpu = predict_probs(load_model(path, "cpu")[0], images, device="cpu", tta=True)
    on_gpu = predict_probs(load_model(path, "cuda")[0], images, device="cuda", tta=True)
    # bf16 autocast on the GPU: close, not equal
    assert np.abs(on_cpu - on_gpu).max() < 0.05


def test_export_speed_timing_runs_on_cuda():
    from maskopt.export.tradeoff import images_per_s

    ips = images_per_s(tiny_cfg(), np.zeros((32, 40, 32, 3), np.uint8), "cuda", tta=True)
    assert ips > 0
