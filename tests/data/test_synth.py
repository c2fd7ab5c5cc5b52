"""The synthetic generator writes the exact competition layout, reproducibly."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from maskopt.cli import app
from maskopt.data.labels import MASK_FILES, age_band, encode
from maskopt.data.layout import read_eval
from maskopt.data.synth import make_people, parse_size, synthesize
from maskopt.errors import ConfigError

SIZE = (48, 64)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "data"
    return out, synthesize(out, people=12, eval_people=6, seed=5, size=SIZE, progress=False)


def test_layout_is_exact(small: tuple[Path, dict]) -> None:
    out, summary = small
    rows = _rows(out / "train" / "train.csv")
    assert list(rows[0]) == ["id", "gender", "race", "age", "path"]
    assert len(rows) == 12 == summary.people
    folders = sorted(p.name for p in (out / "train" / "images").iterdir())
    assert folders == sorted(r["path"] for r in rows)
    for r in rows:
        assert r["path"] == f"{r['id']}_{r['gender']}_{r['race']}_{r['age']}"
        assert r["gender"] in ("male", "female") and r["age"].isdigit()
        files = sorted(p.name for p in (out / "train" / "images" / r["path"]).iterdir())
        assert files == sorted(f"{stem}.jpg" for stem in MASK_FILES)
        img = cv2.imread(str(out / "train" / "images" / r["path"] / "normal.jpg"))
        assert img.shape == (SIZE[1], SIZE[0], 3)  # height x width
    info = _rows(out / "eval" / "info.csv")
    assert list(info[0]) == ["ImageID", "ans"] and all(r["ans"] == "" for r in info)
    assert len(info) == 6 * 7 == summary.eval_images
    assert sorted(p.name for p in (out / "eval" / "images").iterdir()) == sorted(
        r["ImageID"] for r in info
    )


def test_solution_is_consistent(small: tuple[Path, dict]) -> None:
    out, _ = small
    info = [r["ImageID"] for r in _rows(out / "eval" / "info.csv")]
    solution = _rows(out / "eval" / "solution.csv")
    assert [r["ImageID"] for r in solution] == info
    labels = np.array([int(r["ans"]) for r in solution])
    assert labels.min() >= 0 and labels.max() < 18
    # Each eval person gives 5 worn, 1 incorrect, 1 not-worn photo.
    assert np.bincount(labels // 6, minlength=3).tolist() == [30, 6, 6]
    # Opaque, shuffled ids: the order is not grouped by person (7 equal mask states in a row).
    assert any(labels[i] // 6 != labels[i + 1] // 6 for i in range(6))


def test_solution_names_each_images_person(small: tuple[Path, dict]) -> None:
    out, summary = small
    solution = _rows(out / "eval" / "solution.csv")
    assert list(solution[0]) == ["ImageID", "ans", "person"]
    photos = Counter(r["person"] for r in solution)
    assert sorted(photos) == sorted(summary.eval_ids) and set(photos.values()) == {7}
    # A person's seven photos share gender and age band (class mod 6) and show 5/1/1 masks.
    for pid in photos:
        labels = [int(r["ans"]) for r in solution if r["person"] == pid]
        assert len({c % 6 for c in labels}) == 1
        assert sorted(c // 6 for c in labels) == [0, 0, 0, 0, 0, 1, 2]

    ev = read_eval(out, progress=False)
    assert ev is not None and ev.groups is not None and ev.groups.dtype == np.int64
    assert len(np.unique(ev.groups)) == summary.eval_people == 6
    person = {r["ImageID"]: r["person"] for r in solution}
    for g in np.unique(ev.groups):
        assert len({person[ev.image_ids[i]] for i in np.flatnonzero(ev.groups == g)}) == 1


def test_train_labels_match_what_was_written(small: tuple[Path, dict]) -> None:
    out, summary = small
    counts = np.zeros(18, int)
    for r in _rows(out / "train" / "train.csv"):
        gender = 1 if r["gender"] == "female" else 0
        for mask in MASK_FILES.values():
            counts[encode(mask, gender, age_band(int(r["age"])))] += 1
    assert counts.tolist() == summary.classes


def test_eval_people_are_other_people(small: tuple[Path, dict]) -> None:
    out, summary = small
    assert not set(summary.train_ids) & set(summary.eval_ids)
    train = {h for k, h in _digests(out / "train").items() if k.endswith(".jpg")}
    evals = {h for k, h in _digests(out / "eval").items() if k.endswith(".jpg")}
    assert not train & evals


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    a = _digests(
        Path(
            synthesize(
                tmp_path / "a", people=3, eval_people=2, seed=1, size=SIZE, progress=False
            ).out
        )
    )
    b = _digests(
        Path(
            synthesize(
                tmp_path / "b", people=3, eval_people=2, seed=1, size=SIZE, progress=False
            ).out
        )
    )
    c = _digests(
        Path(
            synthesize(
                tmp_path / "c", people=3, eval_people=2, seed=2, size=SIZE, progress=False
            ).out
        )
    )
    assert a == b
    assert a != c


def test_any_number_of_drawing_threads_writes_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """People are drawn a few at a time by a thread per core and written in order."""
    digests = []
    for cores in (1, 3):
        monkeypatch.setattr("os.cpu_count", lambda cores=cores: cores)
        out = synthesize(
            tmp_path / str(cores), people=9, eval_people=4, seed=3, size=SIZE, progress=False
        ).out
        digests.append(_digests(Path(out)))
    assert digests[0] == digests[1] and len(digests[0]) == (9 + 4) * 7 + 4  # + csvs, marker


def test_class_mix_follows_the_real_set() -> None:
    people = make_people(2700, seed=0, split=0, first_id=1)
    female = np.mean([p.gender for p in people])
    bands = np.bincount([age_band(p.age) for p in people], minlength=3) / len(people)
    assert female == pytest.approx(0.61, abs=0.01)
    assert bands == pytest.approx([0.47, 0.46, 0.07], abs=0.01)
    ages = np.array([p.age for p in people])
    assert (
        ages.min() >= 18 and (ages[ages >= 60] == 60).mean() > 0.7
    )  # most old people are exactly 60
    # A moderate rendered sample gets the same mix (quota, not luck).
    small = make_people(150, seed=3, split=0, first_id=1)
    assert sum(p.gender for p in small) in (91, 92)  # 61% of 150, per-cell rounding
    assert sum(age_band(p.age) == 2 for p in small) in (10, 11)


def test_photos_of_a_person_vary(small: tuple[Path, dict]) -> None:
    out, _ = small
    folder = next((out / "train" / "images").iterdir())
    a = cv2.imread(str(folder / "mask1.jpg")).astype(float)
    b = cv2.imread(str(folder / "mask2.jpg")).astype(float)
    assert np.abs(a - b).mean() > 2  # pose, light and noise differ between photos


def test_bad_sizes_are_config_errors() -> None:
    assert parse_size("384x512") == (384, 512)
    for bad in ("384", "axb", "384x512x3", "10x512"):
        with pytest.raises(ConfigError, match="384x512|at least"):
            parse_size(bad)


def test_cli_synth_and_bad_size(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["synth", str(tmp_path / "d"), "--people", "2", "--eval-people", "1", "--size", "48x64"],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "d" / "train" / "train.csv").exists()
    result = runner.invoke(app, ["synth", str(tmp_path / "e"), "--size", "big"])
    assert result.exit_code == 2
    assert "WIDTHxHEIGHT" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "e").exists()
