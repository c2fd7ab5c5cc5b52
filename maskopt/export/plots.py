"""A study's plots as one self-contained HTML page (plotly.js inlined once, works offline).

Uses optuna.visualization: optimisation history, parameter importances, parallel
coordinates, intermediate values. A plot that cannot be drawn for this study (too few
complete trials, no parameter that varies) is listed with the reason instead.
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from maskopt.outputs import atomic_write_text
from maskopt.store.records import varying_params


@dataclass(frozen=True)
class PlotsResult:
    path: Path
    made: list[str] = field(default_factory=list)  # titles of the plots drawn
    skipped: dict[str, str] = field(default_factory=dict)  # title -> why not


def _importance_skip(study: optuna.Study) -> str | None:

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return f"needs at least 2 complete trials, the study has {len(complete)}"
    if not varying_params(complete):
        return "no parameter takes more than one value in the complete trials"
    return None


def study_figures(study: optuna.Study) -> tuple[list[tuple[str, Any]], dict[str, str]]:
    """(title, plotly figure) for each plot that can be drawn, and title -> reason for the rest."""
    # imported here: plotly's import edits the process's warning filters (through urllib3),
    # and importing maskopt changes nothing global
    import optuna.visualization as vis

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    plots: list[tuple[str, Callable[[], Any], str | None]] = [
        (
            "Optimisation history",
            lambda: vis.plot_optimization_history(study),
            None if complete else "no complete trials",
        ),
        (
            "Parameter importances",
            lambda: vis.plot_param_importances(study),
            _importance_skip(study),
        ),
        (
            "Parallel coordinates",
            lambda: vis.plot_parallel_coordinate(study),
            None
            if complete and varying_params(complete)
            else "no complete trial with varying parameters",
        ),
        (
            "Intermediate values",
            lambda: vis.plot_intermediate_values(study),
            None
            if any(t.intermediate_values for t in study.get_trials(deepcopy=False))
            else "no trial reported intermediate values",
        ),
    ]
    made: list[tuple[str, Any]] = []
    skipped: dict[str, str] = {}
    for title, draw, reason in plots:
        if reason is not None:
            skipped[title] = reason
            continue
        try:
            with warnings.catch_warnings():
                # importance estimators warn about sparse regimes on small studies: noise here
                warnings.simplefilter("ignore")
                made.append((title, draw()))
        except (ValueError, RuntimeError) as err:  # optuna's own guards, e.g. one distinct value
            skipped[title] = str(err).splitlines()[0]
    return made, skipped


def write_plots(study: optuna.Study, out_html: Path, *, title: str | None = None) -> PlotsResult:
    """Write the study's plots to `out_html` (one self-contained page)."""
    made, skipped = study_figures(study)
    title = title or f"maskopt study {study.study_name}"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for i, (name, fig) in enumerate(made):
        parts.append(f"<h2>{html.escape(name)}</h2>")
        # plotly.js inlined with the first figure only: one offline page, not 4 x 4 MB
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    if skipped:
        parts.append("<h2>Not drawn</h2><ul>")
        parts += [f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in skipped.items()]
        parts.append("</ul>")
    parts.append("</body></html>")
    out_html = atomic_write_text(out_html, "\n".join(parts))
    return PlotsResult(path=out_html, made=[n for n, _ in made], skipped=skipped)
