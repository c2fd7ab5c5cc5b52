"""`best --export` and bundle prediction on a real CUDA device (skipped where there is none)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.cuda


def test_best_export_and_bundle_predict_on_cuda(finished_study, tmp_path):
    from maskopt.bundle.predict import predict
    from maskopt.export.export import export_best
    from maskopt.export.options import ExportOptions

    rep = export_best(
        ExportOptions(
            storage=finished_study.url,
            study=finished_study.name,
            data=finished_study.data,
            out=tmp_path / "bundle",
            top=3,
            tta=True,
            device="cuda",
        ),
        progress=False,
    )
    assert (tmp_path / "bundle" / "manifest.json").is_file()
    pred = predict(tmp_path / "bundle", eval_data=finished_study.data, device="cuda")
    assert pred.probs.shape[1] == 18 and rep.members
