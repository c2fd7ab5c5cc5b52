"""Prediction: probabilities over 18 classes for prepared images, optionally with TTA,
and the `maskopt predict CHECKPOINT IMAGES...` path for new photos of any size."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from maskopt.data.labels import AGE_NAMES, GENDER_NAMES, MASK_NAMES, decode
from maskopt.errors import DataError

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


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
    import torch

    from maskopt.trainer.device import (
        amp_dtype,
        check_placement,
        norm_tensors,
        resolve_device,
        to_input,
    )

    dev = resolve_device(device)
    check_placement(model, dev, "predict_probs")
    mean, std = norm_tensors(dev)
    dtype = amp_dtype(dev)
    index = np.arange(len(images_uint8)) if rows is None else np.asarray(rows)
    out = np.empty((len(index), 18), dtype=np.float32)
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


def expand_images(items: list[str | os.PathLike]) -> list[Path]:
    """Files as given, folders as the images inside them (sorted, recursive)."""
    paths: list[Path] = []
    missing = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths += sorted(
                f
                for f in p.rglob("*")
                if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
            )
        elif p.is_file():
            paths.append(p)
        else:
            missing.append(str(p))
    if missing:
        raise DataError("some images do not exist", missing)
    if not paths:
        raise DataError(
            f"no images found in {', '.join(map(str, items))} (expected .jpg, .jpeg or .png)"
        )
    return paths


def prediction_rows(paths: list[Path], probs: np.ndarray) -> list[dict]:
    """One dict a image: image, class, mask, gender, age, probability."""
    rows = []
    for path, p in zip(paths, probs, strict=True):
        c = int(p.argmax())
        m, g, a = decode(c)
        rows.append(
            {
                "image": str(path),
                "class": c,
                "mask": MASK_NAMES[m],
                "gender": GENDER_NAMES[g],
                "age": AGE_NAMES[a],
                "probability": float(p[c]),
            }
        )
    return rows


def predict_files(
    checkpoint: str | os.PathLike,
    images: Sequence[str | os.PathLike],
    *,
    crop: str = "center",
    device: str | torch.device = "auto",
    tta: bool = False,
) -> list[dict]:
    """Predict new photos (any size) with one checkpoint; they get the training crop and resize."""
    from maskopt.data.cache import prepare_image
    from maskopt.trainer.checkpoint import load_model
    from maskopt.trainer.device import resolve_device

    dev = resolve_device(device)
    model, cfg = load_model(checkpoint, device=dev)
    paths = expand_images(list(images))
    batch = np.stack([prepare_image(p, cfg.image_size, crop) for p in paths])
    return prediction_rows(paths, predict_probs(model, batch, device=dev, tta=tta))


def predict_eval(
    checkpoint: str | os.PathLike,
    data_dir: str | os.PathLike,
    *,
    crop: str = "center",
    device: str | torch.device = "auto",
    tta: bool = False,
) -> tuple[list[str], np.ndarray, np.ndarray | None, np.ndarray | None]:
    """A checkpoint on ``<data_dir>/eval``: image ids (info.csv order), probabilities (N, 18),
    and solution.csv's classes and people (`EvalSet.groups`) when there."""
    from maskopt.data.layout import require_eval
    from maskopt.trainer.checkpoint import load_model
    from maskopt.trainer.device import resolve_device

    ev = require_eval(Path(data_dir), crop=crop)
    dev = resolve_device(device)
    model, cfg = load_model(checkpoint, device=dev)
    probs = predict_probs(model, ev.images(cfg.image_size), device=dev, tta=tta)
    return list(ev.image_ids), probs, ev.solution, ev.groups
