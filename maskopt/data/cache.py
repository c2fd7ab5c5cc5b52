"""The decoded-image cache: decode, crop and resize every photo once, then memory-map it.

Decoding thousands of JPEGs in every epoch of every fold of every trial is where a
search loses most of its time. Here each (image list, crop, size) is decoded once into
one uint8 ``.npy`` file under ``<data>/.maskopt_cache/`` and every later run maps it.

- file name ``{name}_{crop}_{size}_{set id}_{key}.npy``: the set id hashes the relative
  paths (which data set), the key adds each source's size and mtime, the crop, the size
  and PREP_VERSION. A changed source gives a new key and a rebuild, and the stale file
  of that data set, crop and size is removed; a ``.json`` beside it holds the counts.
- atomic: built in a temp file and renamed, so a killed run leaves no half cache.
- a ``filelock.FileLock`` per data set, crop and size: workers starting together build
  it once; the others wait and map the result.
- ``--crop face``: the face boxes are kept too (``{name}_faceboxes_...npy``), so the
  slow face search runs once per data set, not once per image size.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskopt.data.crop import (
    check_crop,
    crop_box,
    decode_image,
    image_shape,
    prepare_image,
    resize_box,
)
from maskopt.errors import DataError, MaskoptError
from maskopt.outputs import atomic_path, atomic_write_text
from maskopt.progress import progress_bar

__all__ = [
    "CacheInfo",
    "cached_images",
    "load_cache",
    "image_shape",
    "prepare_image",
    "default_cache_dir",
]

log = logging.getLogger(__name__)

# Bump when crop.py changes what it produces: old caches then no longer match.
PREP_VERSION = 1
CACHE_DIRNAME = ".maskopt_cache"


@dataclass(frozen=True)
class CacheInfo:
    path: Path  # the .npy file
    n: int  # images in it
    built: bool  # True when this call built it, False when it was reused
    seconds: float  # building time (0 when reused)
    fallbacks: int  # --crop face: images with no face found (centre crop used)


def default_cache_dir(data_root: Path) -> Path:
    return Path(data_root) / CACHE_DIRNAME


def _sources(paths: Sequence[Path]) -> tuple[str, str]:
    """(set id, sources digest): the set id hashes the relative paths (which data set this
    is); the digest adds each file's size and mtime (any change to a source changes it)."""
    root = Path(os.path.commonpath([str(p) for p in paths])) if paths else Path()
    names = hashlib.sha256(str(len(paths)).encode())
    h = hashlib.sha256(str(len(paths)).encode())
    for p in paths:
        st = p.stat()
        # relative paths: moving the whole data folder keeps its cache valid
        rel = p.relative_to(root).as_posix()
        names.update(f"\n{rel}".encode())
        h.update(f"\n{rel}|{st.st_size}|{st.st_mtime_ns}".encode())
    return names.hexdigest()[:8], h.hexdigest()


def _key(sources: str, *parts: object) -> str:
    return hashlib.sha256("|".join(map(str, (PREP_VERSION, sources, *parts))).encode()).hexdigest()[
        :20
    ]


def cache_key(paths: Sequence[Path], image_size: int, crop: str) -> tuple[str, str]:
    """(set id, key) of a cache: the sources' (relative path, size, mtime) + crop + size +
    PREP_VERSION."""
    set_id, sources = _sources([Path(p) for p in paths])
    return set_id, _key(sources, crop, image_size)


# A face box row: left, top, width, height, fell_back (no face: the centre box, 1).
_BOX_COLUMNS = 5


def _decode_one(
    args: tuple[Path, int, str, np.ndarray | None],
) -> tuple[np.ndarray | None, np.ndarray, str | None]:
    """(image, box row, problem) of one file; ``known`` is its box from an earlier build."""
    path, image_size, crop, known = args
    try:
        rgb = decode_image(path)
        if known is not None:  # the face search is the slow part: done once for all sizes
            box, fell_back = (
                (int(known[0]), int(known[1]), int(known[2]), int(known[3])),
                bool(known[4]),
            )
        else:
            box, fell_back = crop_box(rgb, crop)
        image = resize_box(rgb, box, image_size)
    except DataError as err:
        return None, np.zeros(_BOX_COLUMNS, np.int32), str(err)
    return image, np.array([*box, fell_back], np.int32), None


def _save_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_path(path, "--cache") as tmp, open(tmp, "wb") as f:
        np.save(f, array)  # a file object: np.save would add .npy to a name


def _load_boxes(path: Path, n: int) -> np.ndarray | None:
    try:
        boxes = np.load(path)
    except (OSError, ValueError):
        return None
    return boxes if boxes.shape == (n, _BOX_COLUMNS) else None


def _build(
    paths: list[Path],
    image_size: int,
    crop: str,
    target: Path,
    progress: bool,
    known_boxes: np.ndarray | None = None,
) -> np.ndarray:
    """Decode all images into a temp file next to ``target`` and rename it; returns the
    box of each image (N, 5) (left, top, width, height, fell_back)."""
    h, w = image_shape(image_size)
    tmp = target.with_name(f"{target.stem}.tmp{os.getpid()}.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), h, w, 3))
    _reserve(tmp)
    problems: list[str] = []
    boxes = np.zeros((len(paths), _BOX_COLUMNS), np.int32)
    # cv2 decodes and resizes without the GIL, so threads give real parallelism.
    workers = max(1, min(8, os.cpu_count() or 1))
    try:
        with (
            progress_bar(enabled=progress) as bar,
            ThreadPoolExecutor(workers) as pool,
        ):
            task = bar.add_task(f"decoding {len(paths)} images ({crop}, {w}x{h})", total=len(paths))

            def decode_into(i: int) -> str | None:
                # each thread writes its own rows: only a problem travels back, not images
                known = None if known_boxes is None else known_boxes[i]
                image, boxes[i], problem = _decode_one((paths[i], image_size, crop, known))
                if image is not None:
                    out[i] = image
                return problem

            for problem in pool.map(decode_into, range(len(paths))):
                if problem is not None:
                    problems.append(problem)
                bar.advance(task)
        if problems:
            raise DataError(f"{len(problems)} image(s) could not be decoded", problems)
        out.flush()
        # (the map stays open until we return; renaming a mapped file is fine on POSIX)
        fallbacks = int(boxes[:, 4].sum())
        meta = {"n": len(paths), "crop": crop, "image_size": image_size, "fallbacks": fallbacks}
        # meta first: a visible .npy has its meta
        atomic_write_text(target.with_suffix(".json"), json.dumps(meta), "--cache")
        os.replace(tmp, target)  # the memmap was built in place under its temporary name
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return boxes


def _reserve(path: Path) -> None:
    """Allocate the whole file now: a disk that fills up under a memory map kills the
    process with SIGBUS mid-build; here it is a clear error before any work is done."""
    if not hasattr(os, "posix_fallocate"):
        return
    try:
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            return  # e.g. a filesystem without fallocate: carry on as before
        size = path.stat().st_size
        path.unlink(missing_ok=True)
        raise MaskoptError(
            f"not enough disk space for the image cache: it needs {size / 2**30:.2f} GiB in "
            f"{path.parent}; free some space or pass --cache DIR on a larger disk"
        ) from None


def _open(path: Path, n: int, image_size: int) -> np.ndarray | None:
    """The cache as a read-only memmap, or None when it is not there or not the right shape."""
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if arr.shape != (n, *image_shape(image_size), 3) or arr.dtype != np.uint8:
        return None
    return arr


def _fallbacks(path: Path) -> int:
    try:
        return int(json.loads(path.with_suffix(".json").read_text()).get("fallbacks", 0))
    except (OSError, ValueError):
        return 0


def load_cache(
    paths: Sequence[Path | str],
    image_size: int,
    crop: str,
    cache_dir: Path | str,
    progress: bool = True,
    name: str = "images",
) -> tuple[np.ndarray, CacheInfo]:
    """(N, 5W/4, W, 3) uint8 read-only memmap of ``paths`` prepared by ``prepare_image``, and
    how it was obtained. Built on first use (atomic, under a file lock), reused after."""
    from filelock import FileLock, Timeout

    check_crop(crop)
    image_shape(image_size)
    files = [Path(p) for p in paths]
    if not files:
        raise DataError("no images to cache")
    try:
        set_id, sources = _sources(files)
    except FileNotFoundError as err:
        raise DataError(f"an image disappeared since the data was read: {err.filename}") from None
    cache_dir = Path(cache_dir)
    # one file per data set, crop and size; a changed source replaces it (same stem)
    stem = f"{name}_{crop}_{image_size}_{set_id}"
    target = cache_dir / f"{stem}_{_key(sources, crop, image_size)}.npy"
    arr = _open(target, len(files), image_size)
    if arr is not None:
        return arr, CacheInfo(target, len(files), False, 0.0, _fallbacks(target))
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(cache_dir / f"{stem}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("waiting for another process to finish building %s", target.name)
            lock.acquire()
    except OSError as err:
        raise MaskoptError(
            f"cannot write the image cache in {cache_dir} ({err.strerror or err}); "
            "pass --cache DIR with a writable folder"
        ) from None
    try:
        arr = _open(target, len(files), image_size)  # another process built it while we waited
        if arr is not None:
            return arr, CacheInfo(target, len(files), False, 0.0, _fallbacks(target))
        # Holding the lock: any temp file or other key of this stem is stale (a killed
        # run, or sources that changed since). Remove them so the folder does not grow.
        for old in cache_dir.glob(f"{stem}_*"):
            old.unlink(missing_ok=True)
        start = time.perf_counter()
        boxes_path = cache_dir / f"{name}_faceboxes_{set_id}_{_key(sources, 'faceboxes')}.npy"
        known = _load_boxes(boxes_path, len(files)) if crop == "face" else None
        boxes = _build(files, image_size, crop, target, progress, known)
        fallbacks = int(boxes[:, 4].sum())
        if crop == "face" and known is None:
            for old in cache_dir.glob(f"{name}_faceboxes_{set_id}_*.npy"):
                if ".tmp" not in old.name:  # another size's build may be writing its own
                    old.unlink(missing_ok=True)
            _save_atomic(boxes_path, boxes)
        seconds = time.perf_counter() - start
    finally:
        lock.release()
    log.info("built image cache %s: %d images in %.1fs", target, len(files), seconds)
    arr = _open(target, len(files), image_size)
    assert arr is not None, f"cache {target} missing right after it was built"
    return arr, CacheInfo(target, len(files), True, seconds, fallbacks)


def cached_images(
    paths: Sequence[Path | str],
    image_size: int,
    crop: str,
    cache_dir: Path | str,
    progress: bool = True,
) -> np.ndarray:
    """(N, 5W/4, W, 3) uint8 read-only memmap of the prepared images (see `load_cache`)."""
    return load_cache(paths, image_size, crop, cache_dir, progress)[0]
