"""Prediction: probabilities over 18 classes for prepared images, optionally with mirror TTA.
(Predicting files or an eval set with a checkpoint or a bundle: maskopt.bundle.predict.)"""

from __future__ import annotations

import numpy as np
import torch

from maskopt.data.labels import NUM_CLASSES
from maskopt.trainer.device import (
    amp_dtype,
    check_placement,
    norm_tensors,
    resolve_device,
    to_input,
)


def predict_probs(
    model: torch.nn.Module,
    images_uint8: np.ndarray,
    *,
    device: str | torch.device = "cpu",
    tta: bool = False,
    batch_size: int = 256,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """(N, 18) float32 probabilities of NHWC uint8 images (or of `images_uint8[rows]`).

    TTA averages the probabilities of each image and its mirror image (the only flip
    training uses). The model's train/eval mode is restored afterwards.
    """

    dev = resolve_device(device)
    check_placement(model, dev, "predict_probs")
    mean, std = norm_tensors(dev)
    dtype = amp_dtype(dev)
    index = np.arange(len(images_uint8)) if rows is None else np.asarray(rows)
    out = np.empty((len(index), NUM_CLASSES), dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        with (
            torch.inference_mode(),
            torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None),
        ):
            for start in range(0, len(index), batch_size):
                batch = torch.from_numpy(
                    np.ascontiguousarray(images_uint8[index[start : start + batch_size]])
                )
                if dev.type == "cuda":
                    batch = batch.pin_memory()
                x = to_input(batch, dev, mean, std)
                p = model(x).float().exp()
                if tta:
                    p = (p + model(x.flip(3)).float().exp()) / 2
                out[start : start + len(batch)] = p.cpu().numpy()
    finally:
        model.train(was_training)
    return out
