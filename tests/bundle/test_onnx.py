"""The bundle as one ONNX graph: model.onnx in onnxruntime against the PyTorch path in fp32.

Real tiny models trained for one epoch on the tiny set; two bundles, each exported once:
- soft: a single-head member of two checkpoints (like fold models) and a multi-head member,
  weights 2:1, hflip TTA;
- hard: --vote hard over two members of equal weight (their ties go to the soft vote), one
  of them multi-head at another image size (two inputs).
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from maskopt.bundle.manifest import Manifest, Member, read_manifest, write_manifest
from maskopt.bundle.predict import predict_images
from maskopt.errors import ConfigError, DataError
from tests.extras import need

SIZE, OTHER_SIZE = 32, 40


@pytest.fixture(scope="module")
def checkpoints(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """name -> (config dict, checkpoint path): four tiny models, each trained a few steps (on
    32 images: enough to move the weights and BatchNorm's running statistics, and fast)."""
    from maskopt.data.layout import read_train
    from maskopt.trainer.checkpoint import save_checkpoint
    from maskopt.trainer.config import TrainConfig, config_to_dict
    from maskopt.trainer.loop import fit

    base = dict(epochs=1, batch_size=16, augment=0, image_size=SIZE)
    configs = {
        "resnet_a": TrainConfig(backbone="test_resnet", lr=1e-2, seed=0, **base),
        "resnet_b": TrainConfig(backbone="test_resnet", lr=1e-2, seed=1, **base),
        "convnext_multi": TrainConfig(backbone="test_convnext", lr=3e-3, head="multi", **base),
        "resnet_other_size": TrainConfig(
            backbone="test_resnet", lr=1e-2, head="multi", **{**base, "image_size": OTHER_SIZE}
        ),
    }
    full = read_train(tiny_data, progress=False)
    ds = full.subset(np.linspace(0, len(full.records) - 1, 32).astype(int))
    folder = tmp_path_factory.mktemp("onnx-models")
    out = {}
    for name, cfg in configs.items():
        result = fit(cfg, ds, None, device="cpu")
        out[name] = (
            config_to_dict(cfg),
            save_checkpoint(folder / f"{name}.pt", result.state_dict, cfg),
        )
    return out


def exported_bundle(
    folder: Path, checkpoints: dict, members: list, *, vote: str, tta: bool
) -> Path:
    """A bundle of `members` ([(trial, weight, [checkpoint names], temperature)], a member's
    checkpoints sharing the first one's config) in `folder`, with its model.onnx."""
    need("onnxruntime", "onnx")
    need("onnxscript", "onnx")
    from maskopt.bundle.onnx_graph import export_onnx

    (folder / "models").mkdir(parents=True)
    entries = []
    for trial, weight, names, temperature in members:
        for name in names:
            shutil.copy(checkpoints[name][1], folder / "models" / f"{name}.pt")
        paths = tuple(f"models/{name}.pt" for name in names)
        entries.append(
            Member(trial, weight, checkpoints[names[0]][0], paths, 0.5, False, 1, temperature)
        )
    write_manifest(folder, Manifest("s", vote, tta, "center", tuple(entries), 0.5, "fingerprint"))
    assert export_onnx(folder) == folder / "model.onnx"
    return folder


@pytest.fixture(scope="module")
def soft_bundle(checkpoints: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # the members' temperatures (ensemble.choose_ensemble) go into the graph too
    members = [(3, 2 / 3, ["resnet_a", "resnet_b"], 1.7), (7, 1 / 3, ["convnext_multi"], 0.6)]
    folder = tmp_path_factory.mktemp("soft") / "bundle"
    return exported_bundle(folder, checkpoints, members, vote="soft", tta=True)


@pytest.fixture(scope="module")
def hard_bundle(checkpoints: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # equal weights: wherever the two disagree their votes tie, and the tie-break decides
    members = [(1, 0.5, ["resnet_a"], 1.0), (5, 0.5, ["resnet_other_size"], 1.0)]
    folder = tmp_path_factory.mktemp("hard") / "bundle"
    return exported_bundle(folder, checkpoints, members, vote="hard", tta=False)


def _torch_fp32(folder: Path, images_for, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    monkeypatch.setenv("MASKOPT_CPU_BF16", "0")
    return predict_images(folder, images_for, device="cpu")


@pytest.mark.parametrize("bundle", ["soft_bundle", "hard_bundle"])
def test_onnx_agrees_with_pytorch_fp32_on_the_eval_set(
    bundle: str, request: pytest.FixtureRequest, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from maskopt.bundle.onnx_runtime import predict_onnx
    from maskopt.data.layout import require_eval

    folder: Path = request.getfixturevalue(bundle)
    ev = require_eval(tiny_data)
    expected = _torch_fp32(folder, ev.images, monkeypatch)
    got = predict_onnx(folder, ev.images, batch_size=5)  # uneven batches: a dynamic batch axis
    assert got.shape == (len(ev.image_ids), 18) and got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-4
    assert (got.argmax(1) == expected.argmax(1)).all()
    assert len(np.unique(expected.argmax(1))) > 1  # the models are not constant
    if bundle == "hard_bundle":  # some ties between the two voters, broken the same way
        assert ((got > 0.49) & (got < 0.51)).any(axis=1).any()
    assert np.allclose(got.sum(1), 1, atol=1e-5)


def test_the_graph_records_its_inputs_and_the_bundle(soft_bundle: Path, hard_bundle: Path) -> None:
    import json

    from maskopt.bundle.onnx_runtime import graph_key, onnx_session

    for folder, inputs in [
        (soft_bundle, {"images": [40, 32]}),
        (hard_bundle, {"images_32": [40, 32], "images_40": [50, 40]}),
    ]:
        session = onnx_session(folder / "model.onnx")
        meta = session.get_modelmeta().custom_metadata_map
        assert json.loads(meta["maskopt.inputs"]) == inputs
        assert meta["maskopt.crop"] == "center"
        assert meta["maskopt.graph_key"] == graph_key(read_manifest(folder))
        assert [(i.name, i.type, i.shape[1:]) for i in session.get_inputs()] == [
            (name, "tensor(uint8)", [*hw, 3]) for name, hw in inputs.items()
        ]
        assert [o.name for o in session.get_outputs()] == ["probs"]
    assert json.loads(meta["maskopt.tta"]) is False and meta["maskopt.vote"] == "hard"


def test_a_model_onnx_from_another_ensemble_is_refused(
    soft_bundle: Path, tmp_path: Path, tiny_data: Path
) -> None:
    from maskopt.bundle.onnx_runtime import predict_onnx
    from maskopt.data.layout import require_eval

    copy = tmp_path / "bundle"
    shutil.copytree(soft_bundle, copy)
    manifest = read_manifest(copy)
    members = (manifest.members[0], replace(manifest.members[1], weight=0.5))
    write_manifest(copy, replace(manifest, members=members))
    with pytest.raises(DataError, match="exported from another ensemble") as err:
        predict_onnx(copy, require_eval(tiny_data).images)
    assert "\n" not in str(err.value)
    (copy / "model.onnx").unlink()
    with pytest.raises(DataError, match="has no model.onnx: export it with `maskopt best"):
        predict_onnx(copy, require_eval(tiny_data).images)


def test_images_of_the_wrong_size_are_refused(soft_bundle: Path, tiny_data: Path) -> None:
    from maskopt.bundle.onnx_runtime import predict_onnx
    from maskopt.data.layout import require_eval

    ev = require_eval(tiny_data)
    with pytest.raises(
        DataError, match=r"input 'images' takes uint8 images of shape \(N, 40, 32, 3\)"
    ):
        predict_onnx(soft_bundle, lambda size: ev.images(48))


def test_missing_onnx_packages_are_one_line_naming_the_extra(
    soft_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from maskopt.bundle.onnx_graph import export_onnx
    from maskopt.bundle.onnx_runtime import onnx_session

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ConfigError) as err:
        onnx_session(soft_bundle / "model.onnx")
    assert str(err.value) == (
        "the onnx runtime needs onnxruntime, which is not installed: pip install maskopt[onnx]"
    )
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(ConfigError) as err:
        export_onnx(soft_bundle)
    assert str(err.value) == (
        "ONNX export needs onnxruntime, onnxscript, which are not installed: "
        "pip install maskopt[onnx]"
    )


def test_a_hard_vote_tie_decided_by_the_soft_average_survives_predict_images(
    hard_bundle: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from maskopt.bundle.torch_runtime import member_probs
    from maskopt.data.layout import require_eval
    from maskopt.ensemble.vote import hard_vote, soft_vote

    monkeypatch.setenv("MASKOPT_CPU_BF16", "0")
    manifest = read_manifest(hard_bundle)
    ev = require_eval(tiny_data)
    probs = [
        member_probs(hard_bundle, m, ev.images(int(m.config["image_size"])), tta=False)
        for m in manifest.members
    ]
    a, b = (p.argmax(1) for p in probs)
    tied = np.flatnonzero(a != b)  # two members of equal weight: one vote each
    soft = soft_vote(probs, manifest.weights)
    winner = np.where(soft[tied, a[tied]] > soft[tied, b[tied]], a[tied], b[tied])
    # where the soft winner is the higher class, a tie-break lost to float32 rounding would
    # hand the row to the lower one (argmax takes the first of equal values)
    assert (winner > np.minimum(a[tied], b[tied])).any()
    got = predict_images(hard_bundle, ev.images, device="cpu")
    assert got.dtype == np.float32
    assert (got.argmax(1)[tied] == winner).all()
    assert (got.argmax(1) == hard_vote(probs, manifest.weights).argmax(1)).all()


def test_onnx_images_per_s_times_a_tiny_model(tiny_data: Path) -> None:
    need("onnxruntime", "onnx")
    need("onnxscript", "onnx")
    from maskopt.bundle.onnx_graph import onnx_images_per_s
    from maskopt.data.layout import require_eval
    from maskopt.trainer.config import TrainConfig

    cfg = TrainConfig(backbone="test_resnet", image_size=SIZE, pretrained=False)
    images = require_eval(tiny_data).images(SIZE)[:16]
    ips = onnx_images_per_s(cfg, images, True, threads=1)  # TTA: the larger graph
    assert np.isfinite(ips) and ips > 0


def test_an_ensemble_the_exporter_cannot_take_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    need("onnxruntime", "onnx")
    need("onnxscript", "onnx")
    import torch

    from maskopt.bundle.onnx_graph import OnnxExportError, check_exportable
    from maskopt.trainer.config import TrainConfig

    def refuse(*args, **kwargs):
        raise RuntimeError("no ONNX op for aten::made_up\nmore details")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    cfgs = [TrainConfig(backbone="test_resnet", image_size=s) for s in (SIZE, OTHER_SIZE)]
    with pytest.raises(OnnxExportError) as err:
        check_exportable(cfgs, [0.5, 0.5], vote="hard", tta=True)
    assert str(err.value) == (
        "cannot export the chosen members' models (test_resnet) to ONNX: "
        "RuntimeError: no ONNX op for aten::made_up"
    )
