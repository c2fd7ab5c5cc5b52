"""`maskopt predict`: a checkpoint or a bundle on new photos, or on a data set's eval/."""

from __future__ import annotations

from maskopt.cli import options as o
from maskopt.cli import render
from maskopt.cli.render import friendly


@friendly
def predict(
    checkpoint: o.Source,
    images: o.Images = None,
    out: o.CsvOut = None,
    eval_: o.OnEval = False,
    data: o.EvalData = None,
    crop: o.CheckpointCrop = "center",
    device: o.Device = "auto",
    tta: o.CheckpointTta = False,
    runtime: o.Runtime = "torch",
    student: o.UseStudent = False,
) -> None:
    """Predict mask / gender / age classes of new photos (any size) with a checkpoint or a bundle."""
    from maskopt.bundle.predict import predict as predict_

    pred = predict_(
        checkpoint,
        images or [],
        on_eval=eval_,
        eval_data=data if eval_ else None,
        crop=crop,
        tta=tta,
        device=device,
        runtime=runtime,
        out=out,
        student=student,
    )
    render.predictions(checkpoint, pred, out)
