"""Per-member temperature scaling: softmax(log p / T), T fitted by NLL.

A member's argmax never changes; only how much its vote weighs against the others'.
"""

from __future__ import annotations

import numpy as np

# Temperatures are searched on log T in this range (T < 1 sharpens, T > 1 softens).
_LOG_T = (float(np.log(0.05)), float(np.log(20.0)))


_GOLDEN_STEPS = 18  # the log T bracket (width 6) shrinks to ~1e-3 of a unit


_TINY = 1e-12  # probabilities are floored here before the log


def log_probs(p: np.ndarray) -> np.ndarray:
    """float32 log-probabilities, each row shifted so its top is 0 (softmax ignores it)."""
    z = np.log(np.maximum(np.asarray(p, dtype=np.float32), _TINY))
    return z - z.max(axis=1, keepdims=True)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def apply_temperature(p: np.ndarray, t: float) -> np.ndarray:
    """softmax(log(p) / t) row by row, float32: t > 1 softens, t < 1 sharpens, 1 = as is.

    A member's argmax never changes; only how much its vote weighs against others'.
    """
    if not (np.isfinite(t) and t > 0):
        raise ValueError(f"temperature must be finite and > 0, but got {t=}.")
    return softmax(log_probs(p) / t)


def fit_temperature(p: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the mean NLL of softmax(log(p) / T) on `labels`."""
    return fit_log_temperature(log_probs(p), np.asarray(labels))


def fit_log_temperature(logp: np.ndarray, labels: np.ndarray) -> float:
    """`fit_temperature` on `log_probs(p)`. The NLL is convex in 1/T, so a golden-section
    search over log T finds its minimum; with each row's top at 0 no row max is needed."""
    true = float(logp[np.arange(len(logp)), labels].mean())

    def nll(log_t: float) -> float:
        beta = float(np.exp(-log_t))
        return float(np.log(np.exp(beta * logp).sum(axis=1)).mean()) - beta * true

    lo, hi = _LOG_T
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(_GOLDEN_STEPS):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return float(np.exp((lo + hi) / 2))
