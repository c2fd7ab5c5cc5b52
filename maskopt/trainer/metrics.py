"""Scores: macro F1 over the 18 classes (the competition metric) and what explains it.

Macro F1 is scikit-learn's `f1_score(average="macro")` over the classes present in
the truth or the prediction, computed here from per-class counts (true positives,
false positives, false negatives) so that a thousand bootstrap resamples are one
matrix product. A multi-fold score is the macro F1 of the pooled out-of-fold
predictions, not a mean of fold scores (stable for rare classes).

Every held-out score comes with a 95% interval from a bootstrap over people: one
person's photos are not independent (the same face, the same age), so resampling
images would make the interval too narrow. Where the people are unknown the
bootstrap is over images, and the interval says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maskopt.data.labels import CLASS_NAMES, NUM_CLASSES, decode

BOOTSTRAP_RESAMPLES = 1000
LEVEL = 0.95


def _counts(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    unit: np.ndarray | None = None,
    n_units: int = 1,
) -> np.ndarray:
    """(U, 3, C) counts of true positives, false positives, false negatives per unit
    (row -> unit in `unit`; all rows one unit without it), by bincount: greedy
    selection and the bootstrap score thousands of predictions."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(
            f"y_true and y_pred must be 1-D of one length, got {y_true.shape} and {y_pred.shape}."
        )
    base = np.zeros(len(y_true), dtype=np.int64) if unit is None else unit * (3 * n_classes)
    hit = y_true == y_pred
    size = n_units * 3 * n_classes
    index = np.concatenate(
        [
            (base + y_true)[hit],  # tp
            (base + n_classes + y_pred)[~hit],  # fp
            (base + 2 * n_classes + y_true)[~hit],  # fn
        ]
    )
    return np.bincount(index, minlength=size).reshape(n_units, 3, n_classes).astype(np.float64)


def f1_from_counts(counts: np.ndarray) -> np.ndarray:
    """Macro F1 from (..., 3, C) summed counts (tp, fp, fn), over the classes present in
    the truth or the prediction (tp + fp + fn > 0); 0 where no class is present."""
    tp, fp, fn = counts[..., 0, :], counts[..., 1, :], counts[..., 2, :]
    denom = 2 * tp + fp + fn
    present = denom > 0
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(denom, dtype=np.float64), where=present)
    n = present.sum(axis=-1)
    return np.divide(f1.sum(axis=-1), n, out=np.zeros(np.shape(n)), where=n > 0)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro F1 over the classes present in `y_true` or `y_pred` (= scikit-learn's)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        return 0.0
    n_classes = int(max(NUM_CLASSES, y_true.max() + 1, y_pred.max() + 1))
    return float(f1_from_counts(_counts(y_true, y_pred, n_classes)[0]))


@dataclass(frozen=True)
class Interval:
    """A score with its bootstrap interval."""

    value: float  # the score on the data as it is
    low: float
    high: float
    unit: str  # what was resampled: "people" or "images"
    n_units: int

    def __str__(self) -> str:
        return (
            f"{self.value:.4f} [95% CI {self.low:.4f}, {self.high:.4f}; "
            f"bootstrap over {self.n_units} {self.unit}]"
        )

    def as_dict(self) -> dict[str, float | str | int]:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "unit": self.unit,
            "n_units": self.n_units,
        }


def _units(n: int, groups: np.ndarray | None) -> tuple[np.ndarray, str]:
    """Row -> resampling unit index, and the unit's name."""
    if groups is None:
        return np.arange(n), "images"
    groups = np.asarray(groups)
    if len(groups) != n:
        raise ValueError(f"groups has {len(groups)} rows, but there are {n} predictions.")
    _, inverse = np.unique(groups, return_inverse=True)
    return inverse.ravel(), "people"


def resample_weights(
    n: int, groups: np.ndarray | None, resamples: int, seed: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """(resamples, U) times each unit is drawn, (N,) row -> unit, and the unit name."""
    unit, name = _units(n, groups)
    n_units = int(unit.max()) + 1 if n else 0
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_units, size=(resamples, n_units))
    flat = (draws + n_units * np.arange(resamples)[:, None]).ravel()
    weights = np.bincount(flat, minlength=resamples * n_units).astype(np.float64)
    weights = weights.reshape(resamples, n_units)
    return weights, unit, name


def resampled_f1(
    y_true: np.ndarray, y_pred: np.ndarray, weights: np.ndarray, unit: np.ndarray
) -> np.ndarray:
    """Macro F1 of each resample: `weights` (R, U) from `resample_weights`."""
    per_unit = _counts(y_true, y_pred, NUM_CLASSES, unit, weights.shape[1])
    return f1_from_counts(np.einsum("ru,uks->rks", weights, per_unit))


def _interval(value: float, samples: np.ndarray, unit: str, n_units: int) -> Interval:
    alpha = (1 - LEVEL) / 2
    low, high = np.quantile(samples, [alpha, 1 - alpha])
    return Interval(float(value), float(low), float(high), unit, n_units)


def bootstrap_f1(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Macro F1 with a 95% percentile interval, resampling people (`groups`) or images."""
    weights, unit, name = resample_weights(len(y_true), groups, resamples, seed)
    samples = resampled_f1(y_true, y_pred, weights, unit)
    return _interval(macro_f1(y_true, y_pred), samples, name, weights.shape[1])


@dataclass(frozen=True)
class Gain:
    """How much predictions `new` beat `base` on the same rows, resampled together."""

    diff: Interval  # F1(new) - F1(base)
    p_positive: float  # share of resamples where the difference is > 0

    def __str__(self) -> str:
        return f"{self.diff.value:+.4f} [95% CI {self.diff.low:+.4f}, {self.diff.high:+.4f}]"


def bootstrap_gain(
    y_true: np.ndarray,
    new: np.ndarray,
    base: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Gain:
    """Paired bootstrap of macro F1(new) - F1(base): both scored on every resample."""
    weights, unit, name = resample_weights(len(y_true), groups, resamples, seed)
    d = resampled_f1(y_true, new, weights, unit) - resampled_f1(y_true, base, weights, unit)
    value = macro_f1(y_true, new) - macro_f1(y_true, base)
    return Gain(_interval(value, d, name, weights.shape[1]), float((d > 0).mean()))


def compute_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict:
    """Everything a person wants to see about predictions `probs` (N, 18) of labels `y_true`.

    Keys: macro_f1, accuracy, class_f1 (18 floats, 0 for classes absent from truth and
    prediction), per_class (name, precision, recall, f1, support for each class), mask_f1,
    gender_f1, age_f1 (macro F1 of each part alone), confusion (18x18 counts, rows = truth).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape != (len(y_true), NUM_CLASSES):
        raise ValueError(
            f"probs must be (N, {NUM_CLASSES}) for N={len(y_true)} labels, got {probs.shape}."
        )
    y_pred = probs.argmax(axis=1)
    labels = np.arange(NUM_CLASSES)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    parts_true, parts_pred = decode(y_true), decode(y_pred)
    mask_f1, gender_f1, age_f1 = (
        macro_f1(t, p) for t, p in zip(parts_true, parts_pred, strict=True)
    )
    return {
        "macro_f1": macro_f1(y_true, y_pred),
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
        "class_f1": [float(v) for v in f1],
        "per_class": [
            {
                "class": int(c),
                "name": CLASS_NAMES[c],
                "precision": float(precision[c]),
                "recall": float(recall[c]),
                "f1": float(f1[c]),
                "support": int(support[c]),
            }
            for c in labels
        ],
        "mask_f1": mask_f1,
        "gender_f1": gender_f1,
        "age_f1": age_f1,
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
