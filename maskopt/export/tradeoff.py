"""What hflip TTA and more members cost and buy: OOF macro F1 against images/s.

TTA is measured on OOF with each trial's kept fold models (each on its own validation
images), speed per config with a randomly initialised model (weights do not change
speed), once per architecture in an export (`Speeds`: a member and the student of one
backbone, head and size share their figures). An image goes through every model of an
option, so an option's images/s combines its members' as 1 / sum(models / images_per_s).
Everything here returns values; nothing changes the candidates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from maskopt import timing
from maskopt.bundle.onnx_graph import onnx_images_per_s
from maskopt.ensemble.temperature import apply_temperature
from maskopt.ensemble.vote import combine
from maskopt.trainer.checkpoint import load_model, read_checkpoint
from maskopt.trainer.metrics import macro_f1
from maskopt.trainer.models import create_model
from maskopt.trainer.predict import predict_probs

if TYPE_CHECKING:
    from maskopt.data.layout import TrainSet
    from maskopt.export.candidates import Candidate
    from maskopt.trainer.config import TrainConfig

THROUGHPUT_IMAGES = 128  # images timed per model for the images/s column


@dataclass(frozen=True)
class TradeOff:
    """One row of the trade-off table."""

    name: str
    oof_f1: float | None  # None: could not be measured (no kept fold models for TTA)
    images_per_s: float | None  # PyTorch on the export's device
    models: int  # forward passes per image: models x (2 with TTA)
    onnx_images_per_s: float | None = None  # onnxruntime on the CPU (with --onnx)


def tta_oof(
    c: Candidate,
    data: TrainSet,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    checkpoints: Sequence[Path],
    device: str,
) -> np.ndarray:
    """OOF probabilities with hflip TTA: each fold model on its own validation images."""

    images = data.images(c.config.image_size)
    out = np.zeros_like(c.oof)
    for k, ck in enumerate(checkpoints):
        fold = read_checkpoint(ck).get("fold", k)
        _, val_idx = folds[int(fold)]
        model, _ = load_model(ck, device=device)
        out[val_idx] = predict_probs(model, images[val_idx], device=device, tta=True)
        del model
    return out


def architecture(cfg: TrainConfig) -> tuple:
    """What a model's inference speed depends on: backbone, head and input size."""
    return (cfg.backbone, cfg.head, cfg.head_hidden, cfg.image_size)


class Speeds:
    """Images/s by architecture, runtime and TTA, each measured once (the speed of a randomly
    initialised model does not depend on its training)."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self._seen: dict[tuple, float] = {}

    def get(self, cfg: TrainConfig, images: np.ndarray, tta: bool, *, onnx: bool = False) -> float:
        key = (architecture(cfg), tta, onnx)
        if key not in self._seen:
            self._seen[key] = (
                onnx_images_per_s(cfg, images, tta)
                if onnx
                else images_per_s(cfg, images, self.device, tta)
            )
        return self._seen[key]


def images_per_s(cfg: TrainConfig, images: np.ndarray, device: Any, tta: bool) -> float:
    """Inference throughput of one (randomly initialised) model of this config, on `device`
    (timing.images_per_s: bounded in time however slow the model)."""
    model = create_model(dataclasses.replace(cfg, pretrained=False, weights=None), device)
    return timing.images_per_s(
        lambda x: predict_probs(model, x, device=device, tta=tta), np.asarray(images)
    )


def tradeoff_table(
    best: Candidate,
    ensemble: Sequence[Candidate],
    weights: Sequence[float],
    models_per_member: dict[int, int],
    tta: dict[int, np.ndarray],
    temperature: dict[int, float],
    data: TrainSet,
    vote: str,
    speeds: Speeds,
    onnx: bool = False,
) -> list[TradeOff]:
    """OOF macro F1 against inference images/s: the best single trial and the ensemble (if
    any), each with and without TTA (`tta`: TTA OOF probabilities by trial number;
    `temperature`: each ensemble member's, applied before the vote as the bundle does)."""

    labels = data.labels()
    speed: dict[tuple[int, bool], float] = {}
    ort: dict[tuple[int, bool], float] = {}
    for c in {c.number: c for c in [best, *ensemble]}.values():
        imgs = np.asarray(data.images(c.config.image_size)[:THROUGHPUT_IMAGES])
        for t in (False, True):
            speed[(c.number, t)] = speeds.get(c.config, imgs, t)
            if onnx:
                ort[(c.number, t)] = speeds.get(c.config, imgs, t, onnx=True)

    def ips(table: dict, group: Sequence[Candidate], t: bool) -> float | None:
        if not table:
            return None
        return 1.0 / sum(models_per_member[c.number] / table[(c.number, t)] for c in group)

    def f1(
        group: Sequence[Candidate], ws: Sequence[float], ts: dict[int, float], with_tta: bool
    ) -> float | None:
        if with_tta and any(c.number not in tta for c in group):
            return None
        probs = [
            apply_temperature(tta[c.number] if with_tta else c.oof, ts.get(c.number, 1.0))
            for c in group
        ]
        return macro_f1(labels, combine(probs, ws, vote=vote).argmax(1))

    def rows(
        name: str, group: Sequence[Candidate], ws: Sequence[float], ts: dict[int, float]
    ) -> list[TradeOff]:
        n = sum(models_per_member[c.number] for c in group)
        return [
            TradeOff(
                name, f1(group, ws, ts, False), ips(speed, group, False), n, ips(ort, group, False)
            ),
            TradeOff(
                f"{name.split(' (')[0]} + TTA",
                f1(group, ws, ts, True),
                ips(speed, group, True),
                2 * n,
                ips(ort, group, True),
            ),
        ]

    # a single model's labels do not depend on its temperature
    out = rows(f"best single (trial {best.number})", [best], [1.0], {})
    if ensemble:
        out += rows(f"ensemble ({len(ensemble)} trials)", ensemble, weights, temperature)
    return out


def student_row(
    cfg: TrainConfig, data: TrainSet, speeds: Speeds, tta: bool, *, onnx: bool = False
) -> TradeOff:
    """The distilled student's row: no OOF F1 (it trained on every image: its held-out F1 is
    in the manifest's student), its images/s, one model (two passes with TTA)."""
    imgs = np.asarray(data.images(cfg.image_size)[:THROUGHPUT_IMAGES])
    return TradeOff(
        f"student (distilled, {cfg.backbone})" + (" + TTA" if tta else ""),
        None,
        speeds.get(cfg, imgs, tta),
        2 if tta else 1,
        speeds.get(cfg, imgs, tta, onnx=True) if onnx else None,
    )
