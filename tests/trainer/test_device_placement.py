"""Device discipline, checked on the CPU: every path that builds or loads a model puts it on
the requested device, and a model left elsewhere is refused in one line naming both devices.

No GPU is needed to see a misplaced model: PyTorch's `meta` device stands in for "not the
CPU". Building and moving a model to `meta` works; running one does not (autocast and
`.cpu()` refuse it), so the prediction paths below run with `predict_probs` replaced by a
spy that records where the model was and what device it was asked to use. Before the one
placement rule (`trainer.device.place_model`), `best --export`'s speed timing built its model
on the CPU and handed it to a CUDA prediction: the spy sees exactly that.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskopt.trainer.device import DevicePlacementError, model_device, resolve_device
from tests.trainer.conftest import tiny_cfg

META = torch.device("meta")


def _all_on(model: torch.nn.Module, device: torch.device) -> bool:
    tensors = [*model.parameters(), *model.buffers()]
    return bool(tensors) and all(t.device.type == device.type for t in tensors)


def test_create_model_returns_the_model_on_the_device():
    from maskopt.trainer.models import create_model

    assert _all_on(create_model(tiny_cfg(), META), META)
    assert _all_on(create_model(tiny_cfg()), torch.device("cpu"))


def test_create_model_initialises_the_same_weights_wherever_it_is_placed():
    from maskopt.trainer.models import create_model

    torch.manual_seed(3)
    a = create_model(tiny_cfg(), "cpu").state_dict()
    torch.manual_seed(3)
    b = create_model(tiny_cfg(), torch.device("cpu")).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_load_model_returns_the_model_on_the_device(tmp_path):
    from maskopt.trainer.checkpoint import load_model, save_checkpoint
    from maskopt.trainer.models import create_model

    cfg = tiny_cfg()
    path = save_checkpoint(tmp_path / "m.pt", create_model(cfg).state_dict(), cfg)
    model, _ = load_model(path, device=META)
    assert _all_on(model, META)
    assert not model.training


def test_a_resolved_device_is_taken_as_it_is():
    assert resolve_device(META) == META
    assert resolve_device(torch.device("cpu")).type == "cpu"


def test_predict_probs_refuses_a_model_on_another_device_naming_both():
    from maskopt.trainer.models import create_model
    from maskopt.trainer.predict import predict_probs

    model = create_model(tiny_cfg())  # on the CPU
    images = np.zeros((2, 40, 32, 3), np.uint8)
    with pytest.raises(DevicePlacementError) as err:
        predict_probs(model, images, device=META)
    text = str(err.value)
    assert "the model is on cpu" in text and "inputs go to meta" in text
    assert "\n" not in text


def test_the_fit_loop_refuses_a_model_moved_off_its_device(tiny_set, tiny_folds):
    from maskopt.trainer.loop import FoldRun

    train_idx, val_idx = tiny_folds[0]
    with FoldRun(tiny_cfg(), tiny_set, train_idx, val_idx, device="cpu") as run:
        assert model_device(run.model) == torch.device("cpu")
        run.model.to(META)  # what a caller forgetting the placement rule would leave
        with pytest.raises(DevicePlacementError, match="training: the model is on meta"):
            run.run_epoch()


def test_the_fit_loop_builds_its_model_on_the_device(tiny_set, tiny_folds):
    from maskopt.trainer.loop import FoldRun

    train_idx, val_idx = tiny_folds[0]
    with FoldRun(tiny_cfg(), tiny_set, train_idx, val_idx, device=META) as run:
        assert _all_on(run.model, META)
        assert run.mean.device.type == "meta"


# -- every prediction path, on a device that is not the CPU ---------------------------------


@pytest.fixture
def spy(monkeypatch):
    """Replace predict_probs, in every module of maskopt that holds it, with a recorder."""
    import importlib
    import pkgutil
    import sys

    import maskopt
    import maskopt.trainer.predict as predict_module

    for m in pkgutil.walk_packages(maskopt.__path__, "maskopt."):
        if not m.name.endswith("__main__"):
            importlib.import_module(m.name)
    holders = [
        mod
        for name, mod in sys.modules.items()
        if name.startswith("maskopt.")
        and getattr(mod, "predict_probs", None) is predict_module.predict_probs
    ]

    calls: list[tuple[torch.device | None, torch.device]] = []

    def fake(model, images_uint8, *, device="cpu", tta=False, batch_size=256, rows=None):
        calls.append((model_device(model), resolve_device(device)))
        n = len(images_uint8) if rows is None else len(rows)
        return np.full((n, 18), 1 / 18, np.float32)

    for mod in holders:
        monkeypatch.setattr(mod, "predict_probs", fake)
    return calls


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from maskopt.trainer.checkpoint import save_checkpoint
    from maskopt.trainer.models import create_model

    cfg = tiny_cfg()
    path = tmp_path_factory.mktemp("ck") / "model.pt"
    return save_checkpoint(path, create_model(cfg).state_dict(), cfg, fold=0)


def _assert_on_meta(calls):
    assert calls, "the path predicted nothing"
    for have, want in calls:
        assert want == META
        assert have == want, f"model on {have}, prediction asked for {want}"


def test_export_speed_timing_uses_a_model_on_the_device(spy):
    from maskopt.export.tradeoff import images_per_s

    images_per_s(tiny_cfg(), np.zeros((4, 40, 32, 3), np.uint8), META, tta=True)
    _assert_on_meta(spy)


def test_export_tta_measurement_uses_models_on_the_device(spy, tiny_set, checkpoint):
    from maskopt.export.candidates import Candidate
    from maskopt.export.tradeoff import tta_oof
    from maskopt.trainer.folds import create_folds

    folds = create_folds(tiny_set.strata(), tiny_set.groups(), 2, 0)
    cand = Candidate(
        number=0,
        value=0.0,
        config=tiny_cfg(),
        oof=np.zeros((len(tiny_set), 18), np.float32),
        oof_f1=0.0,
        fold_models=("a",),
        fold_best_epoch=(1,),
    )
    tta_oof(cand, tiny_set, folds, [checkpoint], META)
    _assert_on_meta(spy)


def test_bundle_members_predict_on_the_device(spy, checkpoint, tmp_path):
    from maskopt.bundle.manifest import Member
    from maskopt.bundle.torch_runtime import member_probs
    from maskopt.trainer.config import config_to_dict

    folder = tmp_path / "bundle"
    (folder / "models").mkdir(parents=True)
    (folder / "models" / "m.pt").write_bytes(checkpoint.read_bytes())
    member = Member(
        trial=0,
        weight=1.0,
        config=config_to_dict(tiny_cfg()),
        checkpoints=("models/m.pt",),
        oof_f1=0.0,
        retrained=True,
        epochs=2,
    )
    member_probs(folder, member, np.zeros((3, 40, 32, 3), np.uint8), tta=False, device=META)
    _assert_on_meta(spy)


def test_checkpoint_predictions_are_made_on_the_device(spy, checkpoint, tiny_data):
    from maskopt.bundle.predict import predict

    photo = next((tiny_data / "eval" / "images").iterdir())
    predict(checkpoint, [photo], device=META)
    pred = predict(checkpoint, eval_data=tiny_data, device=META)
    assert len(pred.images) == len(pred.probs)
    _assert_on_meta(spy)
