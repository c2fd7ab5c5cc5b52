"""A bundle's model.onnx in onnxruntime (CPU): the session, the check that the graph was made
from this bundle's manifest, and prediction through it (see onnx_graph for what the graph is).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from maskopt.bundle.manifest import ONNX_FILE, ImagesFor, Manifest, read_manifest
from maskopt.data.cache import image_shape
from maskopt.data.labels import NUM_CLASSES
from maskopt.errors import ConfigError, DataError

if TYPE_CHECKING:
    pass


EXTRA = "pip install maskopt[onnx]"


OUTPUT = "probs"


META = "maskopt."  # prefix of the graph's metadata keys


def check_onnx(*, export: bool = False) -> None:
    """ConfigError naming the extra unless onnxruntime (and, to `export`, onnx and onnxscript)
    can be imported: callers check before any work, so a missing extra costs nothing."""

    modules = ("onnxruntime", "onnx", "onnxscript") if export else ("onnxruntime",)
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        what = "ONNX export" if export else "the onnx runtime"
        raise ConfigError(
            f"{what} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
            f"not installed: {EXTRA}"
        )


def graph_key(manifest: Manifest) -> str:
    """A hash of what the graph computes: vote, TTA, crop and each member's weight, size,
    checkpoints and temperature. The same manifest gives the same key (reports and scores do not count)."""
    what = {
        "vote": manifest.vote,
        "tta": manifest.tta,
        "crop": manifest.crop,
        "members": [
            [m.trial, m.weight, int(m.config["image_size"]), list(m.checkpoints)]
            + ([m.temperature] if m.temperature != 1.0 else [])  # older keys stay as they were
            for m in manifest.members
        ],
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def input_sizes(manifest: Manifest) -> dict[str, int]:
    """Input name -> image width W (the input is (N, 5W/4, W, 3)), in the graph's order."""
    sizes = sorted({int(m.config["image_size"]) for m in manifest.members})
    if len(sizes) == 1:
        return {"images": sizes[0]}
    return {f"images_{size}": size for size in sizes}


def require_onnx_model(folder: Path, name: str = ONNX_FILE) -> Path:
    """folder/model.onnx (or `name`: the student's), once onnxruntime and the file are there;
    else one line saying which is missing (ConfigError naming the extra, DataError naming the
    export command)."""
    check_onnx()
    path = Path(folder) / name
    if not path.is_file():
        raise DataError(
            f"bundle {folder} has no {name}: export it with `maskopt best --export --onnx`"
            + (" --distill." if name != ONNX_FILE else ".")
        )
    return path


def onnx_session(path: Path, *, threads: int | None = None) -> Any:
    """An onnxruntime CPU session on the graph at `path` (`threads`: intra-op threads, default
    onnxruntime's); ConfigError naming the extra without onnxruntime."""
    check_onnx()
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist: export it with `maskopt best --export --onnx`.")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def predict_onnx(
    folder: Path,
    images_for: ImagesFor,
    *,
    manifest: Manifest | None = None,
    batch_size: int = 256,
    session: Any = None,
    name: str = ONNX_FILE,
) -> np.ndarray:
    """`bundle.predict_images` through folder/model.onnx (or `name`): (N, 18) float32
    probabilities.

    DataError when model.onnx was made from another manifest, or the images are not the size
    an input takes.
    """

    folder = Path(folder)
    manifest = manifest or read_manifest(folder)
    session = session or onnx_session(require_onnx_model(folder, name))
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get(META + "graph_key") != graph_key(manifest):
        raise DataError(
            f"{folder / name} was exported from another ensemble than {folder}'s manifest; "
            "export it again (maskopt best --export --onnx)."
        )
    arrays = {}
    for name, w in input_sizes(manifest).items():
        images = np.asarray(images_for(w))
        expected = (*image_shape(w), 3)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != expected:
            raise DataError(
                f"input {name!r} takes uint8 images of shape (N, {', '.join(map(str, expected))}), "
                f"but got {images.dtype} {images.shape}."
            )
        arrays[name] = images
    n = {len(a) for a in arrays.values()}
    if len(n) != 1:
        raise DataError(f"the inputs hold different numbers of images: {sorted(n)}.")
    total = n.pop()
    out = np.empty((total, NUM_CLASSES), dtype=np.float32)
    for start in range(0, total, batch_size):
        feed = {
            name: np.ascontiguousarray(a[start : start + batch_size]) for name, a in arrays.items()
        }
        out[start : start + batch_size] = session.run([OUTPUT], feed)[0]
    return out
