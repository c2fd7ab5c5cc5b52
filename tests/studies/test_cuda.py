"""`best --export` and bundle prediction on a real CUDA device (skipped where there is none)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.cuda


def test_best_export_and_bundle_predict_on_cuda(finished_study, tmp_path):
    from maskopt.studies.bundle import predict_eval
    from maskopt.studies.export import export_best

    rep = export_best(
        storage_url=finished_study.url,
        study_name=finished_study.name,
        data_dir=finished_study.data,
        out=tmp_path / "bundle",
        top=3,
        tta=True,
        device="cuda",
        progress=False,
    )
    assert (tmp_path / "bundle" / "manifest.json").is_file()
    pred = predict_eval(tmp_path / "bundle", finished_study.data, device="cuda")
    assert pred.probs.shape[1] == 18 and rep.members
