"""Voting: the members' (N, 18) probabilities combined into one, soft (weighted mean) or hard
(weighted share of argmax votes, ties broken by the soft mean).

Pure functions on numpy arrays. A "member" is one model's (N, 18) probabilities over the same
images in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from maskopt.errors import ConfigError

VOTES = ("soft", "hard")


# Hard votes tie often (two members, two classes); the soft average breaks the tie,
# scaled so it can never outvote a single whole vote: with weights counts / T, vote shares
# differ by at least 1/T and the tie-break by less than TIE_BREAK (soft averages lie in
# [0, 1]), so any T <= 1000 votes is safe (greedy selection makes at most `rounds`). Large
# enough to survive float32 (bundle predictions, model.onnx): near a tied share <= 0.5 the
# float32 step is 6e-8, so ties whose soft averages differ by more than 6e-5 keep their winner.
TIE_BREAK = 1e-3


Weights = Sequence[float] | np.ndarray | None


def check_members(probs: Sequence[np.ndarray], weights: Weights) -> np.ndarray:
    if len(probs) == 0:
        raise ValueError("need at least one member's probabilities, but got none.")
    shape = np.shape(probs[0])
    if len(shape) != 2:
        raise ValueError(f"probabilities must be (N, classes), but got shape {shape}.")
    for i, p in enumerate(probs):
        if np.shape(p) != shape:
            raise ValueError(f"member {i} has shape {np.shape(p)}, but member 0 has {shape}.")
    w = np.ones(len(probs)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(probs),):
        raise ValueError(f"need one weight per member ({len(probs)}), but got {w.shape}.")
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all 0, but got {w.tolist()}.")
    return w / w.sum()


def check_vote(vote: str) -> str:
    if vote not in VOTES:
        raise ConfigError(f"vote must be one of {', '.join(VOTES)}, but got {vote=}.")
    return vote


def soft_vote(probs: Sequence[np.ndarray], weights: Weights = None) -> np.ndarray:
    """Weighted mean of the members' probabilities, (N, C) float32."""
    w = check_members(probs, weights)
    out = np.zeros(np.shape(probs[0]), dtype=np.float64)
    for wi, p in zip(w, probs, strict=True):
        if wi > 0:
            out += wi * np.asarray(p, dtype=np.float64)
    return out.astype(np.float32)


def one_hot(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p)
    out = np.zeros(p.shape, dtype=np.float64)
    out[np.arange(len(p)), p.argmax(axis=1)] = 1.0
    return out


def hard_vote(probs: Sequence[np.ndarray], weights: Weights = None) -> np.ndarray:
    """Weighted share of the members' votes (each votes for its argmax), (N, C) float64.

    Rows sum to 1. Ties between classes with equal vote share go to the class with
    the higher soft-voted probability (see TIE_BREAK for why that survives float32).
    """
    w = check_members(probs, weights)
    shares = np.zeros(np.shape(probs[0]), dtype=np.float64)
    for wi, p in zip(w, probs, strict=True):
        if wi > 0:
            shares += wi * one_hot(p)
    soft = soft_vote(probs, w).astype(np.float64)
    return (shares + TIE_BREAK * soft) / (1.0 + TIE_BREAK)


def combine(probs: Sequence[np.ndarray], weights: Weights = None, vote: str = "soft") -> np.ndarray:
    """Soft or hard vote, by name."""
    return soft_vote(probs, weights) if check_vote(vote) == "soft" else hard_vote(probs, weights)
