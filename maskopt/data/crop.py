"""The crop and resize that turn a photo into a model input (one function, used everywhere).

`prepare_image` is what the decoded cache stores and what `predict` applies to new
photos, so training and prediction see exactly the same pixels.

- ``center``: the competition's ``CenterCrop((320, 256))`` of a 384x512 photo (2/3 of the
  width, 5/8 of the height), scaled to the photo's size. For other aspect ratios the box
  is narrowed to stay 4:5, so a landscape photo is not squashed.
- ``face``: OpenCV's bundled Haar cascade finds the largest face; the box is padded to
  keep hair and chin (hair carries gender and age) at 4:5; no face -> the centre crop.

Both resize to ``image_shape(W) = (5W/4, W)``, the crop's portrait shape.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from maskopt.errors import ConfigError, DataError

# cv2 is imported inside the functions that use it: importing it edits os.environ
# (LD_LIBRARY_PATH), and importing maskopt changes nothing in the process.
if TYPE_CHECKING:
    import cv2

CROPS = ("center", "face")

# The competition crop: 256 wide x 320 high out of 384 x 512.
_CENTER_W = 256 / 384
_CENTER_H = 320 / 512
_ASPECT = 4 / 5  # width / height of every crop and every model input

# Face box -> crop box: 1.6 face widths wide (about the competition crop for a face of
# usual size); its centre sits 10% of its height above the face centre, so ~0.7 face
# widths of hair stay above the box and ~0.3 below the chin.
_FACE_PAD = 1.6
_FACE_UP = 0.1
_DETECT_SIDE = 160  # detect on a copy whose shorter side is this (speed; faces are large)
_MIN_FACE = 0.2  # ignore "faces" narrower than this fraction of the photo (false hits)

_local = threading.local()  # CascadeClassifier is not thread-safe: one per thread


def image_shape(image_size: int) -> tuple[int, int]:
    """(H, W) of a model input of width ``image_size``: (5W/4, W), e.g. 64 -> (80, 64)."""
    if image_size < 8 or image_size % 4:
        raise ConfigError(
            f"image_size must be a multiple of 4 and at least 8, but got {image_size=}."
        )
    return 5 * image_size // 4, image_size


def check_crop(crop: str) -> str:
    if crop not in CROPS:
        raise ConfigError(f"crop must be one of {', '.join(CROPS)}, but got crop={crop!r}.")
    return crop


def center_box(width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, w, h) of the centre crop; torchvision CenterCrop rounding."""
    cw, ch = width * _CENTER_W, height * _CENTER_H
    if cw / ch > _ASPECT:  # wider than 4:5 (landscape photo): narrow it
        cw = ch * _ASPECT
    else:
        ch = cw / _ASPECT
    cw, ch = max(1, int(round(cw))), max(1, int(round(ch)))
    return int(round((width - cw) / 2.0)), int(round((height - ch) / 2.0)), cw, ch


def _cascade() -> cv2.CascadeClassifier:
    import cv2

    cascade = getattr(_local, "cascade", None)
    if cascade is None:
        cascades = Path(cv2.data.haarcascades)  # type: ignore[attr-defined]
        path = cascades / "haarcascade_frontalface_default.xml"
        cascade = cv2.CascadeClassifier(str(path))
        if cascade.empty():  # opencv 5 wheels ship no cascades (pyproject pins <5)
            raise ConfigError(f"--crop face needs OpenCV's Haar cascade, but {path} is missing.")
        _local.cascade = cascade
    return cascade


def face_box(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    """(left, top, w, h) of the padded 4:5 box around the largest face, or None."""
    import cv2

    height, width = rgb.shape[:2]
    scale = _DETECT_SIDE / min(width, height)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1:
        gray = cv2.resize(
            gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA
        )
    else:
        scale = 1.0
    gray = cv2.equalizeHist(gray)
    min_side = max(16, int(_MIN_FACE * min(gray.shape)))
    faces = _cascade().detectMultiScale(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side)
    )
    if len(faces) == 0:
        return None
    fx, fy, fw, fh = (v / scale for v in max(faces, key=lambda f: f[2] * f[3]))
    bw = _FACE_PAD * fw
    bh = bw / _ASPECT
    cx, cy = fx + fw / 2, fy + fh / 2 - _FACE_UP * bh
    if bw > width or bh > height:  # bigger than the photo: shrink, keeping 4:5
        shrink = min(width / bw, height / bh)
        bw, bh = bw * shrink, bh * shrink
    bw, bh = max(1, int(round(bw))), max(1, int(round(bh)))
    left = int(round(min(max(cx - bw / 2, 0), width - bw)))  # slide inside the photo
    top = int(round(min(max(cy - bh / 2, 0), height - bh)))
    return left, top, bw, bh


Box = tuple[int, int, int, int]  # left, top, width, height


def as_rgb(image: np.ndarray) -> np.ndarray:
    """3-channel RGB from grey (H, W), RGB or RGBA input."""
    import cv2

    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2RGB)
    return image


def crop_box(rgb: np.ndarray, crop: str = "center") -> tuple[Box, bool]:
    """(box to cut, fell_back) for an RGB photo; fell_back: face crop found no face."""
    height, width = rgb.shape[:2]
    if check_crop(crop) == "face":
        box = face_box(rgb)
        if box is not None:
            return box, False
        return center_box(width, height), True
    return center_box(width, height), False


def resize_box(rgb: np.ndarray, box: Box, image_size: int) -> np.ndarray:
    """Cut ``box`` out of ``rgb`` and resize it to image_shape(image_size), uint8."""
    import cv2

    out_h, out_w = image_shape(image_size)
    left, top, bw, bh = box
    patch = rgb[top : top + bh, left : left + bw]
    # INTER_AREA averages when shrinking (no aliasing); linear when enlarging.
    interp = cv2.INTER_AREA if bw >= out_w else cv2.INTER_LINEAR
    out = cv2.resize(patch, (out_w, out_h), interpolation=interp)
    return np.ascontiguousarray(out, dtype=np.uint8)


def crop_and_resize(
    rgb: np.ndarray, image_size: int, crop: str = "center"
) -> tuple[np.ndarray, bool]:
    """(image (H, W, 3) uint8, fell_back): fell_back is True when face crop found no face."""
    image_shape(image_size)  # a bad size fails before the (slow) face search
    rgb = as_rgb(rgb)
    box, fell_back = crop_box(rgb, crop)
    return resize_box(rgb, box, image_size), fell_back


def decode_image(path: str | Path) -> np.ndarray:
    """RGB uint8 (H, W, 3) of an image file; DataError when it cannot be decoded."""
    import cv2

    try:
        buf = np.fromfile(str(path), dtype=np.uint8)  # np.fromfile + imdecode: any path encoding
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is None:
        raise DataError(f"{path}: not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def prepare_image(
    path_or_rgb: str | Path | np.ndarray, image_size: int, crop: str = "center"
) -> np.ndarray:
    """(5W/4, W, 3) uint8 from a file or an RGB array: exactly what the cache stores."""
    rgb = path_or_rgb if isinstance(path_or_rgb, np.ndarray) else decode_image(path_or_rgb)
    return crop_and_resize(rgb, image_size, crop)[0]
