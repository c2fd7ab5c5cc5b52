"""Checkpoints round-trip; prediction of new photos of any size goes through the training crop."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from maskopt.bundle.predict import expand_images, predict
from maskopt.data.cache import prepare_image
from maskopt.errors import DataError
from maskopt.trainer.checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint
from maskopt.trainer.models import create_model
from maskopt.trainer.predict import predict_probs
from tests.trainer.conftest import tiny_cfg


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    cfg = tiny_cfg(head="multi", head_hidden=(8,))
    torch.manual_seed(0)
    model = create_model(cfg)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, model.state_dict(), cfg, fold=2, best_f1=0.5)
    return path, model.eval(), cfg


def test_checkpoint_round_trip(checkpoint, tiny_set):
    path, model, cfg = checkpoint
    ckpt = read_checkpoint(path)
    assert ckpt["fold"] == 2 and ckpt["best_f1"] == 0.5 and ckpt["config"]["head_hidden"] == [8]
    assert "maskopt_version" in ckpt
    loaded, loaded_cfg = load_model(path)
    assert loaded_cfg == cfg and not loaded.training
    images = tiny_set.images(cfg.image_size)[:10]
    assert np.allclose(predict_probs(loaded, images), predict_probs(model, images), atol=1e-6)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_bad_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_model(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a maskopt checkpoint"):
        load_model(tmp_path / "other.pt")


def test_tta_averages_the_mirror_image(checkpoint, tiny_set):
    _, model, cfg = checkpoint
    images = np.asarray(tiny_set.images(cfg.image_size)[:6])
    plain = predict_probs(model, images, batch_size=4)
    mirror = predict_probs(model, images[:, :, ::-1].copy(), batch_size=4)
    tta = predict_probs(model, images, tta=True, batch_size=4)
    assert np.allclose(tta, (plain + mirror) / 2, atol=1e-5)
    assert np.allclose(tta.sum(1), 1, atol=1e-5)
    rows = np.array([5, 1])
    assert np.allclose(predict_probs(model, images, rows=rows), plain[rows], atol=1e-6)


def test_predict_files_of_any_size(checkpoint, tmp_path, tiny_set):
    path, model, cfg = checkpoint
    # one training photo as is, and the same photo enlarged 3x: the crop and resize match the cache
    src = tiny_set.records[0].path
    rgb = cv2.cvtColor(cv2.imread(str(src)), cv2.COLOR_BGR2RGB)
    big = tmp_path / "photos" / "big.png"
    big.parent.mkdir()
    cv2.imwrite(
        str(big), cv2.resize(rgb, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)[..., ::-1]
    )
    rows = predict(path, [src, big.parent], device="cpu").rows()
    assert [r["image"] for r in rows] == [str(src), str(big)]
    expected = predict_probs(model, prepare_image(src, cfg.image_size)[None])[0]
    assert rows[0]["class"] == int(expected.argmax())
    assert rows[0]["probability"] == pytest.approx(float(expected.max()), abs=1e-5)
    assert set(rows[0]) == {"image", "class", "mask", "gender", "age", "probability"}


def test_expand_images_errors(tmp_path):
    with pytest.raises(DataError, match="do not exist"):
        expand_images([tmp_path / "missing.jpg"])
    with pytest.raises(DataError, match="no images"):
        expand_images([tmp_path])
