"""`maskopt synth` and `maskopt eda`: the data before any training."""

from __future__ import annotations

from pathlib import Path

from maskopt.cli import options as o
from maskopt.cli import render
from maskopt.cli.render import friendly
from maskopt.data.layout import DEFAULT_DATA
from maskopt.data.synth import PEOPLE, SIZE


@friendly
def synth(
    out: o.SynthOut = DEFAULT_DATA,
    people: o.People = PEOPLE,
    eval_people: o.EvalPeople = None,
    seed: o.SynthSeed = 0,
    size: o.Size = "x".join(map(str, SIZE)),
) -> None:
    """Write a synthetic data set in the competition layout (with eval/solution.csv)."""
    from maskopt.data.synth import synthesize

    render.synth_summary(
        synthesize(out, people=people, eval_people=eval_people, seed=seed, size=size)
    )


@friendly
def eda(
    data: o.Data = DEFAULT_DATA,
    out: o.ReportOut = Path("eda.html"),
    skip_bad: o.SkipBad = False,
) -> None:
    """Class mix, image sizes, duplicate photos and label checks; one HTML report."""
    from maskopt.data.eda import write_eda

    render.eda_summary(write_eda(data, out, skip_bad=skip_bad))
