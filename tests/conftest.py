"""Shared fixtures: a tiny synthetic data set made once per test session.

Tests run on the CPU in seconds: a handful of people at a small photo size.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

# the local S3 endpoint (s3_server, s3_bucket) and finished studies (finished_study, ...)
pytest_plugins = ("tests.s3_server", "tests.study_fixtures")

TINY_PEOPLE = 24
TINY_EVAL_PEOPLE = 8
TINY_SIZE = (96, 128)  # width x height, portrait like the real 384x512


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` skip where torch sees no CUDA device."""
    if not any(item.get_closest_marker("cuda") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none here)")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _brief_timings():
    """Each export times its trade-off rows; no test checks those figures closely (test_timing
    checks the timing itself), so they run on a short budget here."""
    from maskopt import timing

    saved, timing.BUDGET_S = timing.BUDGET_S, 0.2
    yield
    timing.BUDGET_S = saved


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic data folder in the competition layout (train + eval + solution.csv)."""
    from maskopt.data.synth import synthesize

    out = tmp_path_factory.mktemp("tiny") / "data"
    synthesize(
        out,
        people=TINY_PEOPLE,
        eval_people=TINY_EVAL_PEOPLE,
        seed=0,
        size=TINY_SIZE,
        progress=False,
    )
    return out


@pytest.fixture(scope="session")
def tiny_set(tiny_data: Path):
    """The tiny data set read back (its decoded cache lives inside the data folder)."""
    from maskopt.data.layout import read_train

    return read_train(tiny_data)
