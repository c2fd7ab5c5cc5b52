"""Losses on log-probabilities (N, 18), so both head types share them.

Each takes optional per-class weights; a weighted loss is the weighted mean over the
batch (as `nll_loss` does), so focal with gamma 0 equals cross-entropy exactly.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import torch

from maskopt.data.labels import NUM_CLASSES

if TYPE_CHECKING:
    from maskopt.trainer.config import TrainConfig


def _weighted_mean(per_item, target, weight):
    if weight is None:
        return per_item.mean()
    w = weight[target]
    return (per_item * w).sum() / w.sum().clamp_min(1e-12)


def _reduce(per_item_fn, logp, target, weight, target_b, lam):
    """The (weighted) batch mean of `per_item_fn(logp, target)`; with a partner target (CutMix /
    MixUp, see maskopt.trainer.mix) each sample counts as lam of itself and 1 - lam of its
    partner, each part weighted by its class weight. lam = 1 is exactly the unmixed loss."""
    per_item = per_item_fn(logp, target)
    if target_b is None:
        return _weighted_mean(per_item, target, weight)
    lam = lam.to(per_item.dtype)
    w_a = lam if weight is None else lam * weight[target]
    w_b = 1 - lam if weight is None else (1 - lam) * weight[target_b]
    total = (w_a * per_item + w_b * per_item_fn(logp, target_b)).sum()
    return total / (w_a + w_b).sum().clamp_min(1e-12)


def _nll(logp, target):
    return -logp.gather(1, target[:, None]).squeeze(1)


def cross_entropy(logp, target, weight=None, *, target_b=None, lam=None):
    return _reduce(_nll, logp, target, weight, target_b, lam)


def focal(logp, target, weight=None, gamma: float = 2.0, *, target_b=None, lam=None):
    """-(1 - p_t)^gamma log p_t: easy examples count less (Lin et al. 2017)."""

    def per_item(logp, target):
        logp_t = logp.gather(1, target[:, None]).squeeze(1)
        return -((1 - logp_t.exp()).clamp_min(0) ** gamma) * logp_t

    return _reduce(per_item, logp, target, weight, target_b, lam)


def label_smoothing(logp, target, weight=None, epsilon: float = 0.1, *, target_b=None, lam=None):
    """Cross-entropy against (1 - epsilon) one-hot + epsilon uniform."""

    def per_item(logp, target):
        return (1 - epsilon) * _nll(logp, target) - epsilon * logp.mean(dim=1)

    return _reduce(per_item, logp, target, weight, target_b, lam)


def soft_f1(logp, target, weight=None, *, target_b=None, lam=None):
    """1 - soft macro F1 over the batch (probabilities in place of hard counts).

    Classes absent from both the batch's targets and its predicted mass contribute
    nothing measurable, so only classes present in the targets are averaged. With a
    partner target the counts use soft targets, lam * own + (1 - lam) * partner.
    """

    p = logp.exp()
    onehot = torch.nn.functional.one_hot(target, NUM_CLASSES).to(p.dtype)
    if target_b is not None:
        share = lam.to(p.dtype)[:, None]
        onehot_b = torch.nn.functional.one_hot(target_b, NUM_CLASSES).to(p.dtype)
        onehot = share * onehot + (1 - share) * onehot_b
    tp = (p * onehot).sum(0)
    fp = (p * (1 - onehot)).sum(0)
    fn = ((1 - p) * onehot).sum(0)
    f1 = 2 * tp / (2 * tp + fp + fn + 1e-8)
    present = onehot.sum(0) > 0
    w = present.to(p.dtype) if weight is None else weight * present
    return 1 - (f1 * w).sum() / w.sum().clamp_min(1e-12)


def class_weights(cfg: TrainConfig, train_labels: np.ndarray) -> np.ndarray | None:
    """None, the config's 18 weights, or "balanced": n / (18 * count) over the training part."""
    if cfg.class_weights is None:
        return None
    if cfg.class_weights == "balanced":
        counts = np.bincount(np.asarray(train_labels), minlength=NUM_CLASSES).astype(np.float64)
        # a class missing from the training part never appears as a target: its weight is moot
        return (len(train_labels) / (NUM_CLASSES * np.maximum(counts, 1))).astype(np.float32)
    return np.asarray(cfg.class_weights, dtype=np.float32)


def create_loss(cfg: TrainConfig, weight: torch.Tensor | None = None):
    """loss(logp (N, 18), target (N,), *, target_b=None, lam=None) -> scalar, as the config's
    `loss` names it (target_b, lam: the partners and shares of a mixed batch)."""

    if cfg.loss == "cross_entropy":
        return functools.partial(cross_entropy, weight=weight)
    if cfg.loss == "focal":
        return functools.partial(focal, weight=weight, gamma=cfg.focal_gamma)
    if cfg.loss == "label_smoothing":
        return functools.partial(label_smoothing, weight=weight, epsilon=cfg.label_smoothing)
    if cfg.loss == "f1":
        return functools.partial(soft_f1, weight=weight)
    raise AssertionError(f"unvalidated loss {cfg.loss!r}")


# -- knowledge distillation (Hinton et al. 2015): `maskopt best --export --distill` -------------

DISTILL_T = 2.0  # the temperature that softens the teacher's and the student's probabilities
DISTILL_ALPHA = 0.5  # the soft targets' share of the loss; the config's loss on the labels the rest


def soften(probs: np.ndarray, t: float = DISTILL_T) -> np.ndarray:
    """softmax(log p / t) row by row, float32: the teacher's probabilities made softer (t > 1),
    so the student also learns how the teacher ranks the wrong classes."""
    z = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None)) / t
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def distill_loss(logp: torch.Tensor, soft: torch.Tensor, t: float = DISTILL_T) -> torch.Tensor:
    """KL(soft || softmax(logp / t)) x t^2, the batch mean: `soft` holds the teacher's softened
    probabilities (`soften`); t^2 keeps its gradients the size of a hard loss's (Hinton)."""
    student = torch.log_softmax(logp / t, dim=1)
    kl = (soft * (torch.log(soft.clamp_min(1e-12)) - student)).sum(dim=1)
    return kl.mean() * t * t
