"""The entry point of a spawned worker process (maskopt.search.runner starts them).

Kept free of imports that load torch: the worker's environment (its GPU, its share of cores
and threads, from maskopt.search.gpus.plan_workers) must be set before torch is imported,
which reads OMP_NUM_THREADS once. So this module sets it, then imports the worker.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from maskopt.search.options import SearchOptions


def worker_main(opts: SearchOptions, index: int, env: dict[str, str]) -> None:
    """Run worker `index` of the search in this (fresh) process with `env` set first."""
    os.environ.update(env)
    from maskopt.errors import MaskoptError
    from maskopt.search.worker import MAX_FAILS_IN_A_ROW, run_worker

    try:
        result = run_worker(opts, index)
    except MaskoptError as err:  # a bucket, storage or data that went away after the checks
        raise SystemExit(f"worker {index}: {err}") from None
    if result.failed_in_a_row >= MAX_FAILS_IN_A_ROW:
        raise SystemExit(3)
    if result.interrupted:
        raise SystemExit(130)
