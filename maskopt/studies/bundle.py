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

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from maskopt.errors import ConfigError, DataError
from maskopt.outputs import Owned, atomic_write_text
from maskopt.studies.ensemble import apply_temperature, check_vote, combine
from maskopt.trainer.metrics import Interval, bootstrap_f1

MANIFEST = "manifest.json"
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
            "submission.csv",
            "eval_probs.npz",
            ONNX_FILE,
        }
    ),
    made_by="maskopt best --export",
)
FORMAT = 2  # bump when the manifest changes in a way old readers cannot follow
RUNTIMES = ("torch", "onnx")  # onnx: the bundle's model.onnx in onnxruntime (onnx_bundle.py)


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

    @property
    def weights(self) -> list[float]:
        return [m.weight for m in self.members]


def library_versions() -> dict[str, str]:
    """Versions of the libraries a bundle depends on (recorded for reproducibility)."""
    import optuna
    import timm
    import torch

    import maskopt

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
        manifest = Manifest(**{**raw, "members": members})
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
    if manifest.vote not in ("soft", "hard"):
        problems.append(f"vote is {manifest.vote!r}, expected soft or hard")
    if problems:
        raise DataError(f"bundle {folder} is incomplete or damaged", problems)
    return manifest


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def write_oof_report(folder: Path, labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """oof_metrics.json, oof_per_class.csv and oof_confusion.csv of OOF probabilities."""
    from maskopt.data.labels import CLASS_NAMES
    from maskopt.trainer.metrics import compute_metrics

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


def write_eval(folder: Path, manifest: Manifest, ev: Any, *, device: str) -> EvalScores:
    """submission.csv and eval_probs.npz (the bundle's and each member's probabilities) for
    the eval set `ev` (an EvalSet); with its solution, the held-out macro F1s with intervals."""
    from maskopt.trainer.metrics import bootstrap_f1

    member_p = [
        member_probs(
            folder, m, ev.images(int(m.config["image_size"])), tta=manifest.tta, device=device
        )
        for m in manifest.members
    ]
    probs = combine(member_p, manifest.weights, vote=manifest.vote)
    labels = probs.argmax(1)  # before any cast: the hard vote's tie-break is tiny
    np.savez_compressed(
        folder / "eval_probs.npz",
        probs=probs.astype(np.float32),
        image_ids=np.array(ev.image_ids),
        member_probs=np.stack(member_p),
        members=np.array([m.trial for m in manifest.members]),
    )
    _write_csv(
        folder / "submission.csv",
        ["ImageID", "ans"],
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
    )


ImagesFor = Callable[[int], np.ndarray]  # image_size -> (N, H, W, 3) uint8


def check_runtime(runtime: str, folder: Path | None = None) -> str:
    """`runtime`, or a one-line error; for onnx with a bundle `folder`, also that onnxruntime
    and folder/model.onnx are there, so a missing one fails before any image is read."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, but got {runtime=}.")
    if runtime == "onnx" and folder is not None:
        from maskopt.studies.onnx_bundle import require_onnx_model

        require_onnx_model(folder)
    return runtime


def member_probs(
    folder: Path, member: Member, images: np.ndarray, *, tta: bool, device: str = "cpu"
) -> np.ndarray:
    """Mean probabilities of a member's checkpoints on prepared images, tempered by its
    temperature, (N, 18) float32."""
    from maskopt.trainer.checkpoint import load_model
    from maskopt.trainer.predict import predict_probs

    total = None
    for ck in member.checkpoints:
        model, _ = load_model(Path(folder) / ck, device=device)
        p = predict_probs(model, images, device=device, tta=tta).astype(np.float64)
        total = p if total is None else total + p
        del model
    assert total is not None
    mean = (total / len(member.checkpoints)).astype(np.float32)
    return mean if member.temperature == 1.0 else apply_temperature(mean, member.temperature)


def predict_images(
    folder: Path,
    images_for: ImagesFor,
    *,
    device: str = "cpu",
    manifest: Manifest | None = None,
    runtime: str = "torch",
) -> np.ndarray:
    """The bundle's combined probabilities, (N, 18) float32; `images_for(size)` gives the
    images. runtime "onnx": the same numbers from model.onnx in onnxruntime (CPU)."""
    manifest = manifest or read_manifest(folder)
    check_vote(manifest.vote)
    if check_runtime(runtime, folder) == "onnx":
        from maskopt.studies.onnx_bundle import predict_onnx

        return predict_onnx(folder, images_for, manifest=manifest)
    probs = [
        member_probs(
            folder, m, images_for(int(m.config["image_size"])), tta=manifest.tta, device=device
        )
        for m in manifest.members
    ]
    return np.asarray(combine(probs, manifest.weights, vote=manifest.vote), dtype=np.float32)


def images_from_paths(paths: Sequence[Path], crop: str) -> ImagesFor:
    """Prepare photos of any size exactly as training did (crop, resize), memoised per size."""
    from maskopt.data.crop import prepare_image

    cache: dict[int, np.ndarray] = {}

    def images_for(size: int) -> np.ndarray:
        if size not in cache:
            cache[size] = np.stack([prepare_image(Path(p), size, crop) for p in paths])
        return cache[size]

    return images_for


def predict_paths(
    folder: Path, paths: Sequence[Path], *, device: str = "cpu", runtime: str = "torch"
) -> np.ndarray:
    """The bundle's combined probabilities for image files, (N, 18) float32."""
    manifest = read_manifest(folder)
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise DataError("some images do not exist", missing)
    return predict_images(
        folder,
        images_from_paths(paths, manifest.crop),
        device=device,
        manifest=manifest,
        runtime=runtime,
    )


@dataclass(frozen=True)
class Prediction:
    """A bundle's predictions: one row per image, in the order given (or info.csv's)."""

    images: list[str]  # file paths, or eval ImageIDs
    probs: np.ndarray  # (N, 18) float32
    solution: np.ndarray | None = None  # true classes (eval/solution.csv), when known
    groups: np.ndarray | None = None  # person of each image (solution.csv), when known

    @cached_property
    def heldout(self) -> Interval | None:
        """Held-out macro F1 with its 95% interval, resampling people (images when the
        people are unknown); None without a solution."""
        if self.solution is None:
            return None
        return bootstrap_f1(self.solution, self.probs.argmax(1), self.groups)

    @property
    def heldout_f1(self) -> float | None:
        return None if self.heldout is None else self.heldout.value


def predict_files(
    folder: Path, images: Sequence[Path], *, device: str = "auto", runtime: str = "torch"
) -> Prediction:
    """The bundle on image files or folders of images (any size: the bundle's crop and resize)."""
    from maskopt.trainer.predict import expand_images

    paths = expand_images(list(images))
    probs = predict_paths(folder, paths, device=device, runtime=runtime)
    return Prediction([str(p) for p in paths], probs)


def predict_eval(
    folder: Path,
    data_dir: Path,
    *,
    device: str = "auto",
    cache_dir: Path | None = None,
    runtime: str = "torch",
) -> Prediction:
    """The bundle on `<data_dir>/eval` (info.csv order), with solution.csv's classes when there."""
    from maskopt.data.layout import require_eval

    manifest = read_manifest(folder)
    check_runtime(runtime, folder)  # before the eval set is read
    ev = require_eval(data_dir, crop=manifest.crop, cache_dir=cache_dir)
    probs = predict_images(folder, ev.images, device=device, manifest=manifest, runtime=runtime)
    return Prediction(list(ev.image_ids), probs, ev.solution, ev.groups)


def recorded_data_dir(manifest: Manifest) -> Path | None:
    """The data folder the bundle was exported from (its eval set is the held-out one), or
    None when the manifest does not record one."""
    data = manifest.data
    return Path(data) if data else None
