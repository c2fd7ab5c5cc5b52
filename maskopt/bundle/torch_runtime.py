"""A bundle's members in PyTorch: each member's checkpoints averaged and tempered, then voted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from maskopt.bundle.manifest import ImagesFor, Manifest, Member
from maskopt.ensemble.temperature import apply_temperature
from maskopt.ensemble.vote import combine
from maskopt.trainer.checkpoint import load_model
from maskopt.trainer.predict import predict_probs


def member_probs(
    folder: Path,
    member: Member,
    images: np.ndarray,
    *,
    tta: bool,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Mean probabilities of a member's checkpoints on prepared images, tempered by its
    temperature, (N, 18) float32."""
    total = None
    for ck in member.checkpoints:
        model, _ = load_model(Path(folder) / ck, device=device)
        p = predict_probs(model, images, device=device, tta=tta).astype(np.float64)
        total = p if total is None else total + p
        del model
    assert total is not None
    mean = (total / len(member.checkpoints)).astype(np.float32)
    return mean if member.temperature == 1.0 else apply_temperature(mean, member.temperature)


def predict_members(
    folder: Path, manifest: Manifest, images_for: ImagesFor, *, device: str | torch.device = "cpu"
) -> np.ndarray:
    """The members' probabilities combined by the manifest's vote, (N, 18) float32;
    `images_for(size)` gives each member the images at its size."""
    probs = [
        member_probs(
            folder, m, images_for(int(m.config["image_size"])), tta=manifest.tta, device=device
        )
        for m in manifest.members
    ]
    return np.asarray(combine(probs, manifest.weights, vote=manifest.vote), dtype=np.float32)
