"""EDA on the tiny synthetic set: the report, the counts, duplicates and label checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from maskopt.cli import app
from maskopt.data.eda import label_flags, mask_state_probs, run_eda
from maskopt.data.layout import read_train


@pytest.fixture
def data_copy(tiny_data: Path, tmp_path: Path) -> Path:
    """A copy of the tiny set that a test may spoil."""
    out = tmp_path / "data"
    shutil.copytree(tiny_data, out, ignore=shutil.ignore_patterns(".maskopt_cache"))
    return out


def _people(root: Path) -> list[Path]:
    return sorted(p for p in (root / "train" / "images").iterdir() if p.is_dir())


def test_report_has_the_charts_and_the_counts(tiny_set, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    s = run_eda(tiny_set, out)
    page = out.read_text()
    for chart in ("classes", "labels", "ages", "sizes", "checks"):
        assert f'id="chart-{chart}"' in page
    assert page.count("Plotly.newPlot") == 5
    assert "plotly.js" in page.lower() and "<script src=" not in page  # plotly.js inline
    labels = tiny_set.labels()
    n = len(tiny_set.records)
    assert s.images == n == 7 * s.people
    assert s.classes == np.bincount(labels, minlength=18).tolist()
    assert s.mask == [5 * s.people, s.people, s.people]
    assert sum(s.gender) == sum(s.age) == n
    assert sum(s.people_gender) == sum(s.people_age) == s.people
    assert s.sizes == {"96x128": n} and s.formats == {"JPEG": n}
    assert s.duplicates == []  # every synthetic photo is its own
    assert np.array(s.mask_check_confusion).sum() == n


def test_a_copied_image_is_a_duplicate_group(data_copy: Path, tmp_path: Path) -> None:
    a, b = _people(data_copy)[2], _people(data_copy)[5]
    # Re-encoded at another quality: the bytes differ, the picture is the same.
    Image.open(a / "mask2.jpg").save(b / "mask3.jpg", quality=70)
    s = run_eda(read_train(data_copy), tmp_path / "r.html")
    assert [f"{a.name}/mask2.jpg", f"{b.name}/mask3.jpg"] in s.duplicates
    assert len(s.duplicates) == 1
    assert f"{b.name}/mask3.jpg" in (tmp_path / "r.html").read_text()


def test_a_mask_photo_filed_as_normal_is_flagged(data_copy: Path, tmp_path: Path) -> None:
    person = _people(data_copy)[3]
    shutil.copyfile(person / "mask1.jpg", person / "normal.jpg")
    s = run_eda(read_train(data_copy), tmp_path / "r.html")
    mine = [f for f in s.flags if f.folder == person.name]
    assert any(f.file == "normal.jpg" for f in mine), s.flags
    assert any("mask1.jpg" in f.check for f in mine)


def test_the_mask_model_flags_a_normal_photo_that_shows_a_mask(tiny_set) -> None:
    # Not a copy this time: the normal photo's descriptor is a worn-mask one plus noise, so
    # only the model (not the duplicate check) can tell.
    from maskopt.data.eda import read_image_info

    records = tiny_set.records
    faces = np.stack([read_image_info(r.path).face for r in records])
    masks = np.array([r.mask for r in records])
    groups = tiny_set.groups()
    clean = mask_state_probs(faces, masks, groups)
    assert clean is not None and clean.shape == (len(records), 3)
    assert (clean.argmax(1) == masks).mean() > 0.8  # the model reads mask states at all
    # The victim: the first person whose mask1 photo the model reads as a worn mask.
    stems = [r.path.stem for r in records]
    first = next(i for i, s in enumerate(stems) if s == "mask1" and clean[i, 0] > 0.9)
    victim = groups[first]
    rows = {r.path.stem: i for i, r in enumerate(records) if groups[i] == victim}
    assert label_flags([records[rows["normal"]]], clean[[rows["normal"]]]) == []
    rng = np.random.default_rng(0)
    faces[rows["normal"]] = faces[rows["mask1"]] + rng.normal(0, 0.05, faces.shape[1])
    probs = mask_state_probs(faces, masks, groups)
    flagged = {(f.person, f.file) for f in label_flags(records, probs)}
    assert (records[rows["normal"]].person, "normal.jpg") in flagged


def test_cli_eda(tiny_data: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "eda.html"
    result = runner.invoke(app, ["eda", "--data", str(tiny_data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and "images per class" in result.output
    result = runner.invoke(app, ["eda", "--data", str(tmp_path / "nothing"), "--out", str(out)])
    assert result.exit_code == 1
    assert "does not exist" in result.output and "Traceback" not in result.output
