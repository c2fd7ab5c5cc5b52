"""maskopt.timing: a throughput figure bounded in time, however slow the thing timed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from maskopt.timing import images_per_s


def test_a_slow_model_is_timed_on_fewer_images_not_for_longer() -> None:
    seen: list[int] = []

    def slow(batch: np.ndarray) -> None:  # 5 ms an image: 1000 images would take 5 s a run
        seen.append(len(batch))
        time.sleep(0.005 * len(batch))

    start = time.perf_counter()
    rate = images_per_s(slow, np.zeros((1000, 2, 2, 3), np.uint8), budget_s=0.3, repeats=3)
    took = time.perf_counter() - start
    assert took < 1.0  # the budget, the warm-up and slack; not 15 s
    assert rate == pytest.approx(200, rel=0.3)
    assert seen[0] == 8 and len(seen) == 4 and 8 <= seen[1] < 1000


def test_a_fast_model_is_timed_on_all_the_images() -> None:
    seen: list[int] = []
    rate = images_per_s(lambda b: seen.append(len(b)), np.zeros((50, 2)), budget_s=0.3)
    assert seen == [8, 50, 50, 50] and rate > 0
