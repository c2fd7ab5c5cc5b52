"""One way to predict: a bundle folder, or a checkpoint (a one-member bundle), on image files
or on a data set's eval/ folder, in PyTorch or (a bundle with model.onnx) onnxruntime.

    pred = predict("bundle", ["photo.jpg", "more/"])        # any size: crop and resize as trained
    pred = predict("runs/cfg/model.pt", eval_data="data")   # <data>/eval, info.csv's order
    pred.rows()     # image, class, mask, gender, age, probability
    pred.heldout    # macro F1 with its 95% interval, when eval/solution.csv is there

A checkpoint is read as a bundle of one member (weight 1, temperature 1) with the crop and TTA
the caller gives; a bundle uses its own.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from maskopt.bundle.manifest import (
    ONNX_FILE,
    STUDENT_ONNX,
    ImagesFor,
    Manifest,
    Member,
    is_bundle,
    read_manifest,
    recorded_data_dir,
)
from maskopt.bundle.onnx_runtime import predict_onnx, require_onnx_model
from maskopt.bundle.torch_runtime import predict_members
from maskopt.data.crop import prepare_image
from maskopt.data.labels import AGE_NAMES, GENDER_NAMES, MASK_NAMES, decode
from maskopt.data.layout import DEFAULT_DATA, IMAGE_SUFFIXES, require_eval
from maskopt.ensemble.vote import check_vote
from maskopt.errors import ConfigError, DataError
from maskopt.outputs import atomic_write_text, check_file_out
from maskopt.trainer.checkpoint import read_checkpoint
from maskopt.trainer.device import resolve_device
from maskopt.trainer.metrics import Interval, bootstrap_f1

RUNTIMES = ("torch", "onnx")  # onnx: the bundle's model.onnx in onnxruntime (onnx_runtime.py)


def check_runtime(runtime: str, folder: Path | None = None, onnx_file: str = ONNX_FILE) -> str:
    """`runtime`, or a one-line error; for onnx with a bundle `folder`, also that onnxruntime
    and folder/`onnx_file` are there, so a missing one fails before any image is read."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, but got {runtime=}.")
    if runtime == "onnx" and folder is not None:
        require_onnx_model(folder, onnx_file)
    return runtime


def predict_images(
    folder: Path,
    images_for: ImagesFor,
    *,
    device: str | torch.device = "cpu",
    manifest: Manifest | None = None,
    runtime: str = "torch",
    onnx_file: str = ONNX_FILE,
) -> np.ndarray:
    """The bundle's combined probabilities, (N, 18) float32; `images_for(size)` gives the
    images. runtime "onnx": the same numbers from model.onnx (`onnx_file`: the student's
    student.onnx) in onnxruntime (CPU)."""
    manifest = manifest or read_manifest(folder)
    check_vote(manifest.vote)
    if check_runtime(runtime, folder, onnx_file) == "onnx":
        return predict_onnx(folder, images_for, manifest=manifest, name=onnx_file)
    return predict_members(folder, manifest, images_for, device=device)


def images_from_paths(paths: Sequence[Path], crop: str) -> ImagesFor:
    """Prepare photos of any size exactly as training did (crop, resize), memoised per size."""
    cache: dict[int, np.ndarray] = {}

    def images_for(size: int) -> np.ndarray:
        if size not in cache:
            cache[size] = np.stack([prepare_image(Path(p), size, crop) for p in paths])
        return cache[size]

    return images_for


def expand_images(items: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, folders as the images inside them (sorted, recursive)."""
    paths: list[Path] = []
    missing = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths += sorted(
                f
                for f in p.rglob("*")
                if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
            )
        elif p.is_file():
            paths.append(p)
        else:
            missing.append(str(p))
    if missing:
        raise DataError("some images do not exist", missing)
    if not paths:
        suffixes = ", ".join(IMAGE_SUFFIXES[:-1]) + " or " + IMAGE_SUFFIXES[-1]
        raise DataError(f"no images found in {', '.join(map(str, items))} (expected {suffixes})")
    return paths


def prediction_rows(images: Sequence[str], probs: np.ndarray) -> list[dict]:
    """One dict an image: image, class, mask, gender, age, probability."""
    rows = []
    for image, p in zip(images, probs, strict=True):
        c = int(p.argmax())
        m, g, a = decode(c)
        rows.append(
            {
                "image": str(image),
                "class": c,
                "mask": MASK_NAMES[m],
                "gender": GENDER_NAMES[g],
                "age": AGE_NAMES[a],
                "probability": float(p[c]),
            }
        )
    return rows


@dataclass(frozen=True)
class Prediction:
    """Predictions: one row per image, in the order given (or info.csv's)."""

    images: list[str]  # file paths, or eval ImageIDs
    probs: np.ndarray  # (N, 18) float32
    solution: np.ndarray | None = None  # true classes (eval/solution.csv), when known
    groups: np.ndarray | None = None  # person of each image (solution.csv), when known
    eval_data: Path | None = None  # the data folder whose eval/ was predicted

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

    def rows(self) -> list[dict]:
        return prediction_rows(self.images, self.probs)


def as_bundle(
    source: str | os.PathLike, *, crop: str = "center", tta: bool = False
) -> tuple[Path, Manifest]:
    """The folder and manifest to predict with: a bundle's own, or for a checkpoint file a
    one-member manifest (made in memory) with `crop` and `tta`."""
    source = Path(source)
    if source.is_dir():
        if not is_bundle(source):
            raise ConfigError(
                f"{source} is a folder but not a bundle (no manifest.json); "
                "give a checkpoint file or a folder written by maskopt best --export."
            )
        return source, read_manifest(source)
    ck = read_checkpoint(source)  # CheckpointError in one line: missing, not a checkpoint, ...
    config = ck["config"]
    member = Member(
        trial=int(ck.get("trial", -1)),
        weight=1.0,
        config=config,
        checkpoints=(source.name,),
        oof_f1=math.nan,
        retrained=True,
        epochs=int(config.get("epochs", 0)),
    )
    return source.parent, Manifest("", "soft", tta, crop, (member,), math.nan, "")


def eval_data_dir(source: str | os.PathLike, data: str | os.PathLike | None) -> Path:
    """The data folder whose eval/ is predicted: `data` when given, else the one a bundle
    records (the folder it was exported from), else ./data."""
    if data is not None:
        return Path(data)
    source = Path(source)
    recorded = recorded_data_dir(read_manifest(source)) if is_bundle(source) else None
    if recorded is None:
        return DEFAULT_DATA
    if not recorded.is_dir():
        raise DataError(
            f"the bundle's data folder {recorded} is gone; pass --data DIR (the folder with eval/)."
        )
    return recorded


def predict(
    source: str | os.PathLike,
    images: Sequence[str | os.PathLike] = (),
    *,
    eval_data: str | os.PathLike | None = None,
    on_eval: bool = False,
    crop: str = "center",
    tta: bool = False,
    device: str = "auto",
    runtime: str = "torch",
    cache_dir: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    student: bool = False,
) -> Prediction:
    """`maskopt predict`: a bundle folder or a checkpoint on `images` (files or folders of
    them), or with `on_eval` (or an `eval_data` folder) on <data>/eval; `crop` and `tta` are a
    checkpoint's (a bundle uses its own). runtime "onnx" needs a bundle with model.onnx. With
    `out`, the predictions are also written there as CSV (the path checked before any work).
    `student`: the bundle's distilled student alone (best --export --distill)."""
    source = Path(source)
    on_eval = on_eval or eval_data is not None
    if on_eval == bool(images):
        raise ConfigError("give IMAGES... or --eval (with --data DIR), not both and not neither.")
    if out is not None:
        check_file_out(out)  # before any prediction
    if check_runtime(runtime) != "torch" and not source.is_dir():
        raise ConfigError(
            f"--runtime {runtime} runs a bundle folder (maskopt best --export --onnx), "
            f"but {source} is a checkpoint file: drop --runtime or give a bundle."
        )
    folder, manifest = as_bundle(source, crop=crop, tta=tta)
    onnx_file = ONNX_FILE
    if student:
        if not source.is_dir():
            raise ConfigError(
                f"--student predicts with a bundle's distilled student, but {source} is a "
                "checkpoint file: give a bundle folder (maskopt best --export --distill)."
            )
        manifest, onnx_file = manifest.student_manifest(), STUDENT_ONNX
    check_runtime(runtime, folder, onnx_file)  # before any image is read
    dev = resolve_device(device)  # a torch.device as given stays as it is (tests use meta)
    if not on_eval:
        paths = expand_images(list(images))
        probs = predict_images(
            folder,
            images_from_paths(paths, manifest.crop),
            device=dev,
            manifest=manifest,
            runtime=runtime,
            onnx_file=onnx_file,
        )
        pred = Prediction([str(p) for p in paths], probs)
    else:
        data_dir = eval_data_dir(source, eval_data)
        cache = None if cache_dir is None else Path(cache_dir)
        ev = require_eval(data_dir, crop=manifest.crop, cache_dir=cache)
        probs = predict_images(
            folder, ev.images, device=dev, manifest=manifest, runtime=runtime, onnx_file=onnx_file
        )
        pred = Prediction(list(ev.image_ids), probs, ev.solution, ev.groups, data_dir)
    if out is not None:
        write_predictions(pred, out)
    return pred


PREDICTION_COLUMNS = ("image", "class", "mask", "gender", "age", "probability")


def write_predictions(pred: Prediction, out: str | os.PathLike) -> Path:
    """`maskopt predict --out FILE`: one CSV row an image (PREDICTION_COLUMNS), atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=PREDICTION_COLUMNS)
    writer.writeheader()
    writer.writerows({**r, "probability": f"{r['probability']:.4f}"} for r in pred.rows())
    return atomic_write_text(out, buf.getvalue())
