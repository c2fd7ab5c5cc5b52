"""Optional extras in the tests: skip where one is not installed, fail where they are required.

The tracking, ONNX and S3 tests need packages from maskopt's optional extras (all in
`[dev]`). Where one is missing they skip, unless CI=true or MASKOPT_REQUIRE_EXTRAS=1
(`.ci/run` sets it): there a missing extra fails the test, so these tests cannot stop
running without anyone noticing.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def extras_required() -> bool:
    return (
        os.environ.get("CI", "").lower() == "true"
        or os.environ.get("MASKOPT_REQUIRE_EXTRAS") == "1"
    )


def need(module: str, extra: str) -> ModuleType:
    """Import `module` (from the extra `extra`), or skip / fail the test without it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        message = f"{module} is not installed (pip install maskopt[{extra}]): {err}"
        if extras_required():
            pytest.fail(f"required here (MASKOPT_REQUIRE_EXTRAS / CI): {message}")
        pytest.skip(message)
