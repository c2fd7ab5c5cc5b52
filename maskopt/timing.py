"""The one throughput timing: warm up, then the fastest of a few runs, bounded in time.

Other processes only ever slow a run down, so the fastest of several is the truest figure.
A slow model must not make the timing itself slow (an export times several models, each
with and without TTA): the number of images timed shrinks so that all the runs together take
about `budget_s`, however slow the model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

WARMUP = 8  # images in the warm-up run (allocations, cuDNN's kernel choice, ORT's plan)
BUDGET_S = 1.5  # seconds the timed runs of one figure take, about
REPEATS = 3


def images_per_s(
    run: Callable[[np.ndarray], Any],
    images: np.ndarray,
    *,
    budget_s: float | None = None,
    repeats: int = REPEATS,
) -> float:
    """Images per second of `run(batch)` on `images`: one warm-up run on a few images (which
    also measures a first rate), then the fastest of `repeats` runs on as many of the images
    as fit in `budget_s` (default BUDGET_S) altogether (at least the warm-up's)."""
    budget_s = BUDGET_S if budget_s is None else budget_s
    images = np.asarray(images)
    first = images[: min(WARMUP, len(images))]
    start = time.perf_counter()
    run(first)
    per_image = (time.perf_counter() - start) / max(len(first), 1)
    n = int(budget_s / repeats / max(per_image, 1e-9))
    batch = images[: max(len(first), min(len(images), n))]
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run(batch)
        best = min(best, time.perf_counter() - start)
    return len(batch) / max(best, 1e-9)
