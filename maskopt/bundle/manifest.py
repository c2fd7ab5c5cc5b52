"""The export bundle: a folder that holds an ensemble and everything needed to use it.

    DIR/manifest.json       the one record of what was exported: members (trial, weight,
                            config, checkpoints, OOF F1), vote, TTA, crop, the data (folder,
                            fingerprint), how the members were chosen, the trade-off table,
                            the held-out scores with their intervals, library versions
    DIR/models/*.pt         trainer checkpoints (one per member, or its fold models)
    DIR/oof_*.{json,csv}    the exported combination's OOF metrics, per-class F1, confusion
    DIR/submission.csv      eval predictions (ImageID,ans), with eval_probs.npz (the
                            bundle's and each member's probabilities)
    DIR/plots.html          the study's plots

A bundle is built in a hidden sibling folder and swapped into place whole at the end
(`maskopt.outputs.replace_dir`), and the manifest is the last file written: an interrupted
export leaves the old bundle as it was, never a bundle that looks complete. Only an earlier
bundle (its manifest, and nothing but the files below) is ever replaced.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import timm
import torch

import maskopt
from maskopt.data.layout import SUBMISSION
from maskopt.errors import DataError
from maskopt.outputs import Owned, atomic_write_text

MANIFEST = "manifest.json"
STUDENT_DIR = "student"  # the distilled student's checkpoint (`best --export --distill`)
STUDENT_ONNX = "student.onnx"


ONNX_FILE = "model.onnx"


# What an export writes: a folder holding these names and a manifest is a bundle, which a
# later export may replace; anything else there is the user's (maskopt.outputs).
BUNDLE = Owned(
    what="bundle",
    marks=(MANIFEST,),
    entries=frozenset(
        {
            MANIFEST,
            "models",
            "oof_metrics.json",
            "oof_per_class.csv",
            "oof_confusion.csv",
            "plots.html",
            SUBMISSION,
            "eval_probs.npz",
            ONNX_FILE,
            STUDENT_DIR,
            STUDENT_ONNX,
        }
    ),
    made_by="maskopt best --export",
)


FORMAT = 2  # bump when the manifest changes in a way old readers cannot follow


@dataclass(frozen=True)
class Member:
    """One voter: a trial's config and the checkpoints whose probabilities it averages."""

    trial: int  # trial number in the study
    weight: float  # voting weight (weights of a bundle sum to 1)
    config: dict[str, Any]  # asdict(TrainConfig) it was trained with
    checkpoints: tuple[str, ...]  # paths relative to the bundle folder
    oof_f1: float  # the trial's out-of-fold macro F1
    retrained: bool  # True: one model retrained on all data; False: the trial's fold models
    epochs: int  # epochs of the retrained model (the trial's config epochs for fold models)
    temperature: float = 1.0  # its probabilities are softmax(log p / T) before the vote


@dataclass(frozen=True)
class Student:
    """One model distilled from an ensemble (`best --export --distill`): trained on all the
    training images with the teacher's out-of-fold probabilities as soft targets."""

    config: dict[str, Any]  # asdict(TrainConfig) it was trained with
    checkpoint: str  # relative to the bundle folder (STUDENT_DIR/model.pt)
    epochs: int
    teacher: str  # the option it learnt from ("top 3 averaged", "ensemble selection", ...)
    teacher_trials: tuple[int, ...]  # the teacher's members
    teacher_weights: tuple[float, ...]
    temperature: float  # the distillation temperature (trainer.losses.DISTILL_T)
    alpha: float  # the soft targets' share of the loss (trainer.losses.DISTILL_ALPHA)
    heldout: dict[str, Any] | None = None  # its eval macro F1 and 95% interval
    images_per_s: float | None = None  # its inference rate (PyTorch, the export's device)

    def member(self) -> Member:
        """The student as a bundle member (weight 1): what predicts with it."""
        return Member(
            trial=-1,
            weight=1.0,
            config=self.config,
            checkpoints=(self.checkpoint,),
            oof_f1=math.nan,  # trained on every image: it has no out-of-fold predictions
            retrained=True,
            epochs=self.epochs,
        )


@dataclass(frozen=True)
class Manifest:
    """The one record of an export; `maskopt best --export` prints it, `predict` reads it."""

    study: str
    vote: str  # "soft" or "hard"
    tta: bool  # horizontal-flip test-time augmentation at prediction
    crop: str  # face crop the data was read with
    members: tuple[Member, ...]
    oof_f1: float  # the combination's OOF macro F1 (in-sample: its members were chosen on it)
    data_fingerprint: str
    data: str = ""  # the data folder the study was searched on (predict --eval's default)
    skip_bad: bool = False  # whether that search left out people with bad images
    choice: dict[str, Any] = field(default_factory=dict)  # how the members were chosen
    candidates: list[dict[str, Any]] = field(default_factory=list)  # trial, value, oof_f1, ...
    tradeoff: list[dict[str, Any]] = field(default_factory=list)  # the trade-off table's rows
    heldout: dict[str, Any] | None = None  # the bundle's eval macro F1 and 95% interval
    heldout_members: dict[str, dict[str, Any]] = field(default_factory=dict)  # by trial
    notes: list[str] = field(default_factory=list)
    storage: str = ""  # the study's storage URL
    created: str = ""  # UTC, ISO 8601
    versions: dict[str, str] = field(default_factory=dict)
    format: int = FORMAT
    student: Student | None = None  # with --distill; older bundles have none

    @property
    def weights(self) -> list[float]:
        return [m.weight for m in self.members]

    def student_manifest(self) -> Manifest:
        """The student alone as a one-member manifest (predict --student, student.onnx);
        DataError when the bundle has none."""
        if self.student is None:
            raise DataError(
                "this bundle holds no student: export it with `maskopt best --export --distill`."
            )
        return replace(self, vote="soft", members=(self.student.member(),), student=None)


def library_versions() -> dict[str, str]:
    """Versions of the libraries a bundle depends on (recorded for reproducibility)."""

    return {
        "maskopt": maskopt.__version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "optuna": optuna.__version__,
        "numpy": np.__version__,
    }


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """Write DIR/manifest.json (atomically: temp file + rename)."""
    return atomic_write_text(
        Path(folder) / MANIFEST, json.dumps(asdict(manifest), indent=2, sort_keys=False) + "\n"
    )


def is_bundle(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def read_manifest(folder: Path) -> Manifest:
    """Read and check a bundle's manifest; DataError says what is missing or wrong."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise DataError(f"{folder} is not a maskopt bundle: {MANIFEST} is missing.")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON: {err}.") from None
    problems: list[str] = []
    if raw.get("format") == 1:  # 0.1's bundles: the same members, reports kept in `info`
        info = raw.pop("info", {}) or {}
        raw.update(format=FORMAT, data=info.get("data", ""), notes=info.get("notes", []))
    if raw.get("format") != FORMAT:
        problems.append(f"format is {raw.get('format')!r}, this maskopt reads format {FORMAT}")
    try:
        members = tuple(
            Member(**{**m, "checkpoints": tuple(m["checkpoints"])}) for m in raw.get("members", [])
        )
        student = raw.get("student")
        if student is not None:
            student = Student(
                **{
                    **student,
                    "teacher_trials": tuple(student["teacher_trials"]),
                    "teacher_weights": tuple(student["teacher_weights"]),
                }
            )
        manifest = Manifest(**{**raw, "members": members, "student": student})
    except (TypeError, KeyError) as err:
        raise DataError(f"{path} does not describe a bundle: {err}.") from None
    if not manifest.members:
        problems.append("it lists no members")
    for m in manifest.members:
        if not m.checkpoints:
            problems.append(f"member trial {m.trial} has no checkpoints")
        for ck in m.checkpoints:
            if not (folder / ck).is_file():
                problems.append(f"member trial {m.trial}: checkpoint {ck} is missing")
    if manifest.student is not None and not (folder / manifest.student.checkpoint).is_file():
        problems.append(f"the student's checkpoint {manifest.student.checkpoint} is missing")
    if manifest.vote not in ("soft", "hard"):
        problems.append(f"vote is {manifest.vote!r}, expected soft or hard")
    if problems:
        raise DataError(f"bundle {folder} is incomplete or damaged", problems)
    return manifest


ImagesFor = Callable[[int], np.ndarray]  # image_size -> (N, H, W, 3) uint8


def recorded_data_dir(manifest: Manifest) -> Path | None:
    """The data folder the bundle was exported from (its eval set is the held-out one), or
    None when the manifest does not record one."""
    data = manifest.data
    return Path(data) if data else None
