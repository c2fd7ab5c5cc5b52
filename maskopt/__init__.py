"""maskopt: find the best face-mask status classifier by hyperparameter search.

The Python API (maskopt.api) is loaded on first use, so that `import maskopt` and
`maskopt --help` stay fast:

    import maskopt
    maskopt.search(trials=20, space="cpu")
    maskopt.export()

`maskopt.search` and `maskopt.export` are also the packages of those names: calling the
package calls the API function (`callable_package`).
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

__version__ = "0.1.0"

_API = (  # what maskopt.api offers; `import maskopt` loads it on first use
    "ExportOptions",
    "Prediction",
    "SearchOptions",
    "TrainOptions",
    "eda",
    "export",
    "predict",
    "read_data",
    "search",
    "synth",
    "train",
)


class _CallablePackage(ModuleType):
    """A package that is also its API function: `maskopt.search(...)` is maskopt.api.search."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        api = importlib.import_module("maskopt.api")
        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


def callable_package(name: str) -> None:
    """Make the package `name` (maskopt.search, maskopt.export) callable as its API function."""
    sys.modules[name].__class__ = _CallablePackage


_PACKAGES = ("search", "export")  # API functions that are packages too


def __getattr__(name: str) -> Any:
    if name in _PACKAGES:
        return importlib.import_module(f"maskopt.{name}")
    if name in _API:
        return getattr(importlib.import_module("maskopt.api"), name)
    raise AttributeError(f"module 'maskopt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
