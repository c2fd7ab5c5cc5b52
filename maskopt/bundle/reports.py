"""What an export writes beside the models: the OOF reports (oof_metrics.json,
oof_per_class.csv, oof_confusion.csv) and the eval outputs (submission.csv, eval_probs.npz,
the held-out macro F1s with their intervals).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maskopt.bundle.manifest import Manifest
from maskopt.bundle.torch_runtime import member_probs
from maskopt.data.labels import CLASS_NAMES
from maskopt.data.layout import EVAL_COLUMNS, SUBMISSION
from maskopt.ensemble.vote import combine
from maskopt.trainer.metrics import bootstrap_f1, compute_metrics


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def write_oof_report(folder: Path, labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """oof_metrics.json, oof_per_class.csv and oof_confusion.csv of OOF probabilities."""

    m = compute_metrics(labels, probs)
    (folder / "oof_metrics.json").write_text(json.dumps(m, indent=1) + "\n")
    _write_csv(
        folder / "oof_per_class.csv",
        ["class", "name", "precision", "recall", "f1", "support"],
        [
            [
                r["class"],
                r["name"],
                *(f"{r[k]:.4f}" for k in ("precision", "recall", "f1")),
                r["support"],
            ]
            for r in m["per_class"]
        ],
    )
    _write_csv(
        folder / "oof_confusion.csv",
        ["truth \\ predicted", *CLASS_NAMES],
        [[CLASS_NAMES[i], *row] for i, row in enumerate(m["confusion"])],
    )
    return m


@dataclass(frozen=True)
class EvalScores:
    """The held-out macro F1s of an export, each with its 95% interval (as dicts)."""

    heldout: dict[str, Any] | None  # the bundle's (None without solution.csv)
    members: dict[str, dict[str, Any]]  # each member's alone, by trial number
    student: dict[str, Any] | None = None  # the distilled student's (with --distill)


def write_eval(folder: Path, manifest: Manifest, ev: Any, *, device: str) -> EvalScores:
    """submission.csv and eval_probs.npz (the bundle's, each member's and the student's
    probabilities) for the eval set `ev` (an EvalSet); with its solution, the held-out macro
    F1s with intervals."""

    member_p = [
        member_probs(
            folder, m, ev.images(int(m.config["image_size"])), tta=manifest.tta, device=device
        )
        for m in manifest.members
    ]
    probs = combine(member_p, manifest.weights, vote=manifest.vote)
    labels = probs.argmax(1)  # before any cast: the hard vote's tie-break is tiny
    student = None
    if manifest.student is not None:
        m = manifest.student.member()
        student = member_probs(
            folder, m, ev.images(int(m.config["image_size"])), tta=manifest.tta, device=device
        )
    arrays = {
        "probs": probs.astype(np.float32),
        "image_ids": np.array(ev.image_ids),
        "member_probs": np.stack(member_p),
        "members": np.array([m.trial for m in manifest.members]),
    }
    if student is not None:
        arrays["student_probs"] = student
    np.savez_compressed(folder / "eval_probs.npz", **arrays)  # type: ignore[arg-type]
    _write_csv(
        folder / SUBMISSION,
        EVAL_COLUMNS,
        [[i, int(a)] for i, a in zip(ev.image_ids, labels, strict=True)],
    )
    if ev.solution is None:
        return EvalScores(None, {})
    groups = getattr(ev, "groups", None)
    return EvalScores(
        bootstrap_f1(ev.solution, labels, groups).as_dict(),
        {
            str(m.trial): bootstrap_f1(ev.solution, p.argmax(1), groups).as_dict()
            for m, p in zip(manifest.members, member_p, strict=True)
        },
        None if student is None else bootstrap_f1(ev.solution, student.argmax(1), groups).as_dict(),
    )
