"""maskopt's Python API: the job of the command line, from a notebook or a script.

    import maskopt

    maskopt.synth("data", people=150)                          # or your own data in ./data
    data = maskopt.read_data("data")                           # a TrainSet: labels, people, images
    summary = maskopt.search(trials=20, space="cpu", folds=3)  # SearchOptions' fields
    report = maskopt.export(top=5)                            # ExportOptions' fields
    pred = maskopt.predict("bundle", on_eval=True)             # .probs, .rows(), .heldout

Each function takes the same options as its command (the option dataclass, or its fields as
keyword arguments) and returns what the command prints, as objects. Errors are
`maskopt.errors.MaskoptError`s with the command's one-line message.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from maskopt.bundle.predict import Prediction as Prediction
from maskopt.bundle.predict import predict as predict
from maskopt.data.eda import EdaSummary, write_eda
from maskopt.data.layout import DEFAULT_DATA, TrainSet, read_train
from maskopt.data.synth import SynthSummary, synthesize
from maskopt.export.export import ExportReport, export_best
from maskopt.export.options import ExportOptions
from maskopt.search.options import SearchOptions
from maskopt.search.runner import SearchSummary, run_search
from maskopt.trainer.options import TrainOptions
from maskopt.trainer.run import RunResult
from maskopt.trainer.run import train as train_run


def _options(cls: Any, opts: Any, changes: dict[str, Any]) -> Any:
    base = opts if opts is not None else cls()
    return dataclasses.replace(base, **changes) if changes else base


def read_data(
    data: str | os.PathLike = DEFAULT_DATA,
    *,
    crop: str = "center",
    cache: str | os.PathLike | None = None,
    skip_bad: bool = False,
) -> TrainSet:
    """The training set of a data folder in the competition layout, validated (every problem
    listed in one DataError); its images are decoded into the cache on first use."""
    return read_train(
        Path(data), skip_bad=skip_bad, crop=crop, cache_dir=None if cache is None else Path(cache)
    )


def synth(out: str | os.PathLike = DEFAULT_DATA, **kwargs: Any) -> SynthSummary:
    """`maskopt synth`: people=, eval_people=, seed=, size=(width, height) or "WxH"."""
    return synthesize(Path(out), **kwargs)


def eda(
    data: str | os.PathLike = DEFAULT_DATA, out: str | os.PathLike = "eda.html", **kwargs: Any
) -> EdaSummary:
    """`maskopt eda`: the HTML report at `out` and its numbers."""
    return write_eda(data, out, **kwargs)


def search(opts: SearchOptions | None = None, /, **changes: Any) -> SearchSummary:
    """`maskopt search`: run (or resume) the study until it holds `trials` finished trials."""
    return run_search(_options(SearchOptions, opts, changes), show_progress=False)


def export(opts: ExportOptions | None = None, /, **changes: Any) -> ExportReport:
    """`maskopt best --export`: choose, retrain and write the bundle to `out`."""
    return export_best(_options(ExportOptions, opts, changes), progress=False)


def train(config: str | os.PathLike | TrainOptions, /, **changes: Any) -> RunResult:
    """`maskopt train`: a config file (or TrainOptions) on one fold, or with full=True all the
    data; the run folder's results."""
    opts = config if isinstance(config, TrainOptions) else TrainOptions(Path(config))
    return train_run(_options(TrainOptions, opts, changes))
