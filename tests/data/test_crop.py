"""The crop + resize every image goes through (cache, training, prediction)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from maskopt.data.crop import (
    center_box,
    crop_and_resize,
    decode_image,
    face_box,
    image_shape,
    prepare_image,
)
from maskopt.errors import ConfigError, DataError


def _photo(width: int = 384, height: int = 512, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_image_shape_is_portrait_5_by_4() -> None:
    assert image_shape(64) == (80, 64)
    assert image_shape(224) == (280, 224)
    for bad in (0, 6, 50, -4):
        with pytest.raises(ConfigError, match="image_size"):
            image_shape(bad)


def test_center_crop_matches_torchvision_on_competition_photo() -> None:
    from torchvision.transforms import CenterCrop

    rgb = _photo()
    left, top, w, h = center_box(384, 512)
    assert (w, h) == (256, 320)
    expected = np.asarray(CenterCrop((320, 256))(Image.fromarray(rgb)))
    np.testing.assert_array_equal(rgb[top : top + h, left : left + w], expected)


@pytest.mark.parametrize("size", [(385, 515), (96, 128), (1920, 1080), (500, 500)])
def test_center_crop_scales_and_stays_4_by_5(size: tuple[int, int]) -> None:
    from torchvision.transforms import CenterCrop

    width, height = size
    rgb = _photo(width, height)
    left, top, w, h = center_box(width, height)
    assert abs(w / h - 0.8) < 0.02, (w, h)
    assert w <= round(width * 2 / 3) and h <= round(height * 5 / 8)
    # same placement as torchvision for that crop size (height first)
    expected = np.asarray(CenterCrop((h, w))(Image.fromarray(rgb)))
    np.testing.assert_array_equal(rgb[top : top + h, left : left + w], expected)


def test_prepare_image_from_file_equals_from_array(tmp_path) -> None:
    rgb = _photo()
    path = tmp_path / "p.png"  # lossless: the file decodes to exactly `rgb`
    Image.fromarray(rgb).save(path)
    out = prepare_image(path, 64)
    assert out.shape == (80, 64, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, prepare_image(rgb, 64))
    # a centre crop of a 384x512 photo shrunk 4x: the mean colour survives the resize
    left, top, w, h = center_box(384, 512)
    assert abs(out.mean() - rgb[top : top + h, left : left + w].mean()) < 1.0


def test_prepare_image_handles_grey_and_alpha(tmp_path) -> None:
    grey = np.full((128, 96), 200, dtype=np.uint8)
    assert prepare_image(grey, 32).shape == (40, 32, 3)
    rgba = np.dstack([_photo(96, 128), np.full((128, 96), 255, np.uint8)])
    np.testing.assert_array_equal(prepare_image(rgba, 32), prepare_image(rgba[..., :3], 32))
    Image.fromarray(grey).save(tmp_path / "g.jpg")
    assert (prepare_image(tmp_path / "g.jpg", 32) > 190).all()  # decoded as RGB, not garbage


def test_decode_image_rejects_garbage(tmp_path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError, match="not a readable image"):
        decode_image(bad)
    with pytest.raises(DataError, match="cannot read"):
        decode_image(tmp_path / "missing.jpg")


def test_unknown_crop_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="crop must be one of center, face"):
        prepare_image(_photo(), 64, crop="mtcnn")


def test_face_crop_falls_back_to_center_without_a_face() -> None:
    noise = _photo(seed=3)
    assert face_box(noise) is None
    out, fell_back = crop_and_resize(noise, 64, "face")
    assert fell_back
    np.testing.assert_array_equal(out, prepare_image(noise, 64, "center"))


@pytest.fixture(scope="module")
def synth_photos(tmp_path_factory) -> list[np.ndarray]:
    """Synthetic faces at the competition's size; the Haar cascade finds some of them."""
    from maskopt.data.synth import synthesize

    out = tmp_path_factory.mktemp("faces") / "data"
    synthesize(out, people=4, eval_people=0, seed=0, size=(384, 512), progress=False)
    return [decode_image(p) for p in sorted((out / "train" / "images").rglob("*.jpg"))]


def test_face_crop_box_is_padded_4_by_5_inside_the_photo(synth_photos) -> None:
    boxes = [face_box(rgb) for rgb in synth_photos]
    found = [b for b in boxes if b is not None]
    assert found, "the cascade found no face in any synthetic photo"
    for left, top, w, h in found:
        assert abs(w / h - 0.8) < 0.01
        assert left >= 0 and top >= 0 and left + w <= 384 and top + h <= 512
        assert w >= 0.3 * 384  # padded well beyond eyes and mouth
    for rgb, box in zip(synth_photos, boxes, strict=True):
        out, fell_back = crop_and_resize(rgb, 64, "face")
        assert fell_back == (box is None)
        if box is not None:
            assert not np.array_equal(out, prepare_image(rgb, 64, "center"))
