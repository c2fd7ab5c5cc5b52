"""Scores: macro F1 over the 18 classes (the competition metric) and what explains it.

Macro F1 is scikit-learn's `f1_score(average="macro")` over the classes present in
the truth or the prediction. A multi-fold score is the macro F1 of the pooled
out-of-fold predictions, not a mean of fold scores (stable for rare classes).
"""

from __future__ import annotations

import numpy as np

from maskopt.data.labels import CLASS_NAMES, NUM_CLASSES, decode


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro F1 over the classes present in `y_true` or `y_pred`."""
    from sklearn.metrics import f1_score

    return float(f1_score(np.asarray(y_true), np.asarray(y_pred), average="macro", zero_division=0))


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
