"""Memory between runs: `free_memory` after a model is done with (the garbage collector, then
the GPU's cached blocks), and `frozen_heap` around a long job of many runs.

A process that has imported torch, timm, Optuna and albumentations holds about half a million
Python objects, and every full collection walks them all (about 0.25 s on a CPU core): five
per trial (each fold's close, the objective, the worker) and more that Python starts on its
own came to a tenth of a CPU search's time. Inside `frozen_heap` the objects alive on entry
(imports, the decoded data) are left out of the collections, which then walk only what the
runs made since; on exit they are handed back to the collector.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_depth = 0  # nested frozen_heap blocks: only the outermost freezes and unfreezes


def free_memory() -> None:
    """Collect what the last run left in reference cycles, then give the GPU's cached blocks
    back (if this process has used the GPU)."""
    gc.collect()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Leave the objects alive now out of every garbage collection until the block ends."""
    global _depth
    if _depth == 0:
        gc.collect()  # garbage now is not frozen with the rest
        gc.freeze()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            gc.unfreeze()
