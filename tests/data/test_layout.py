"""Reading the competition layout: records, labels, and every kind of bad input at once."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from maskopt.cli import friendly
from maskopt.data.labels import MASK_FILES
from maskopt.data.layout import read_eval, read_train
from maskopt.errors import ConfigError, DataError

# (id, gender, race, age): one person of each age band and both genders
PEOPLE = [
    ("000001", "female", "Asian", 45),
    ("000002", "male", "Asian", 22),
    ("000003", "female", "Asian", 60),
    ("000004", "male", "Asian", 59),
]


def folder_name(pid: str, gender: str, race: str, age: int) -> str:
    return f"{pid}_{gender}_{race}_{age}"


def make_layout(
    root: Path,
    people=PEOPLE,
    *,
    csv: bool = True,
    size: tuple[int, int] = (48, 64),
    suffix: str = ".jpg",
    eval_images: int = 0,
) -> Path:
    """A data folder in the competition layout with real (noise) JPEGs; returns root."""
    rng = np.random.default_rng(0)
    images = root / "train" / "images"
    rows = ["id,gender,race,age,path"]
    for pid, gender, race, age in people:
        folder = folder_name(pid, gender, race, age)
        (images / folder).mkdir(parents=True)
        rows.append(f"{pid},{gender},{race},{age},{folder}")
        for stem in MASK_FILES:
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(images / folder / f"{stem}{suffix}")
    if csv:
        (root / "train" / "train.csv").write_text("\n".join(rows) + "\n")
    if eval_images:
        (root / "eval" / "images").mkdir(parents=True)
        ids = [f"e{i:03d}.jpg" for i in range(eval_images)]
        for i in ids:
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "eval" / "images" / i)
        (root / "eval" / "info.csv").write_text("ImageID,ans\n" + "".join(f"{i},\n" for i in ids))
    return root


def person_dir(root: Path, index: int) -> Path:
    return root / "train" / "images" / folder_name(*PEOPLE[index])


@pytest.mark.parametrize("csv", [True, False], ids=["train.csv", "folder-names"])
def test_reads_records_labels_groups_strata(tmp_path, csv: bool) -> None:
    ds = read_train(make_layout(tmp_path / "d", csv=csv))
    assert len(ds) == 28 and ds.n_people == 4 and ds.skipped_people == 0
    # sorted by (person folder, file stem)
    keys = [(r.path.parent.name, r.path.stem) for r in ds.records]
    assert keys == sorted(keys)
    assert all(r.path.is_absolute() and r.path.is_file() for r in ds.records)
    first = ds.records[:7]
    assert {r.person for r in first} == {"000001"}
    assert sorted(r.mask for r in first) == [0, 0, 0, 0, 0, 1, 2]
    by_stem = {r.path.stem: r.label() for r in first}
    # female (1), 45 -> band 1: wear 0*6+3+1=4, incorrect 10, normal 16
    assert by_stem == {**{f"mask{i}": 4 for i in range(1, 6)}, "incorrect_mask": 10, "normal": 16}
    labels = ds.labels()
    assert labels.dtype == np.int64 and labels.shape == (28,)
    assert ds.labels()[7:14].tolist() == [r.label() for r in ds.records[7:14]]
    np.testing.assert_array_equal(ds.groups(), np.repeat(np.arange(4), 7))
    # strata: gender*3 + true age band: 45F -> 4, 22M -> 0, 60F -> 5, 59M -> 1
    np.testing.assert_array_equal(ds.strata(), np.repeat([4, 0, 5, 1], 7))


def test_old_age_moves_the_top_band_but_not_the_strata(tmp_path) -> None:
    ds = read_train(make_layout(tmp_path / "d"))
    normal_59_male = [r for r in ds.records if r.person == "000004" and r.mask == 2][0]
    assert normal_59_male.label() == 12 + 0 + 1
    assert normal_59_male.label(old_age=58) == 12 + 0 + 2
    assert (ds.labels(old_age=58) != ds.labels()).sum() == 7
    np.testing.assert_array_equal(ds.strata(), np.repeat([4, 0, 5, 1], 7))


def test_csv_and_folder_names_give_the_same_set(tmp_path) -> None:
    with_csv = read_train(make_layout(tmp_path / "a"))
    without = read_train(make_layout(tmp_path / "b", csv=False))
    assert with_csv.labels().tolist() == without.labels().tolist()
    assert [r.person for r in with_csv.records] == [r.person for r in without.records]
    assert with_csv.fingerprint() == without.fingerprint()  # relative paths, sizes, labels


def test_png_and_jpeg_suffixes_are_read(tmp_path) -> None:
    assert len(read_train(make_layout(tmp_path / "a", suffix=".png"))) == 28
    assert len(read_train(make_layout(tmp_path / "b", suffix=".JPEG"))) == 28


def test_fingerprint_is_stable_and_follows_labels(tmp_path) -> None:
    root = make_layout(tmp_path / "d")
    fp = read_train(root).fingerprint()
    assert fp == read_train(root).fingerprint()
    csv = root / "train" / "train.csv"
    csv.write_text(csv.read_text().replace("000002,male,Asian,22", "000002,male,Asian,33"))
    assert read_train(root).fingerprint() != fp


def _break_three_ways(root: Path) -> None:
    """The issue's example: a corrupt JPEG, a misnamed folder and a missing `normal` file."""
    (person_dir(root, 0) / "mask3.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    person_dir(root, 1).rename(root / "train" / "images" / "000002-male-Asian-22")
    (person_dir(root, 2) / "normal.jpg").unlink()


@pytest.mark.parametrize("csv", [True, False], ids=["train.csv", "folder-names"])
def test_one_error_lists_corrupt_misnamed_and_missing(tmp_path, csv: bool) -> None:
    root = make_layout(tmp_path / "d", csv=csv)
    _break_three_ways(root)
    with pytest.raises(DataError) as info:
        read_train(root)
    err = info.value
    text = str(err)
    assert "mask3.jpg" in text and "corrupt" in text
    assert "000002-male-Asian-22" in text
    assert "missing normal image" in text
    assert len(err.problems) >= 3
    assert "--skip-bad" in text


def test_cli_shows_all_problems_in_one_error_without_traceback(tmp_path) -> None:
    root = make_layout(tmp_path / "d")
    _break_three_ways(root)
    app = typer.Typer()

    @app.command()
    @friendly
    def check(data: Path) -> None:
        read_train(data)

    result = CliRunner().invoke(app, [str(root)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.startswith("error: ")
    for part in ("mask3.jpg", "000002-male-Asian-22", "missing normal image"):
        assert part in result.output


def test_skip_bad_drops_the_bad_people_and_counts_them(tmp_path, caplog) -> None:
    root = make_layout(tmp_path / "d")
    _break_three_ways(root)
    with caplog.at_level("WARNING", logger="maskopt.data.layout"):
        ds = read_train(root, skip_bad=True)
    assert "left out 3 person(s) with problems and 1 folder(s) not in train.csv" in caplog.text
    # person 0 (corrupt), 1 (its folder renamed: not counted twice), 2 (missing normal)
    assert ds.skipped_people == 3
    assert {r.person for r in ds.records} == {"000004"}
    assert len(ds) == 7


def test_truncated_jpeg_is_caught(tmp_path) -> None:
    root = make_layout(tmp_path / "d")
    f = person_dir(root, 3) / "mask1.jpg"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(DataError, match=r"mask1.jpg: truncated JPEG"):
        read_train(root)


def test_bad_folder_names_ages_and_genders(tmp_path) -> None:
    root = make_layout(tmp_path / "d", csv=False)
    images = root / "train" / "images"
    person_dir(root, 0).rename(images / "000001_female_Asian_forty")
    person_dir(root, 1).rename(images / "000002_robot_Asian_22")
    person_dir(root, 2).rename(images / "000003female")
    with pytest.raises(DataError) as info:
        read_train(root)
    text = str(info.value)
    assert "age 'forty' is not a number" in text
    assert "gender 'robot' is not male or female" in text
    assert "000003female: folder name does not parse as {id}_{gender}_{race}_{age}" in text


def test_bad_csv_values_duplicate_ids_and_missing_folders(tmp_path) -> None:
    root = make_layout(tmp_path / "d")
    csv = root / "train" / "train.csv"
    text = csv.read_text()
    text = text.replace("000001,female,Asian,45,", "000001,female,Asian,old,")
    text = text.replace("000004,male", "000002,male")  # id 000002 twice
    text += "000009,male,Asian,30,000009_male_Asian_30\n"  # no such folder
    csv.write_text(text)
    with pytest.raises(DataError) as info:
        read_train(root)
    problems = "\n".join(info.value.problems)
    assert "age 'old' is not a number" in problems
    assert problems.count("duplicate id 000002") == 2
    assert "folder images/000009_male_Asian_30 is missing" in problems


def test_extra_and_doubled_files(tmp_path) -> None:
    root = make_layout(tmp_path / "d")
    shutil.copy(person_dir(root, 0) / "mask1.jpg", person_dir(root, 0) / "mask6.jpg")
    shutil.copy(person_dir(root, 1) / "mask1.jpg", person_dir(root, 1) / "mask1.png")
    (person_dir(root, 2) / ".DS_Store").write_bytes(b"\0")  # OS litter is ignored
    (person_dir(root, 3) / "._mask1.jpg").write_bytes(b"\0")
    with pytest.raises(DataError) as info:
        read_train(root)
    problems = info.value.problems
    assert len(problems) == 2, problems
    assert "extra file mask6.jpg" in problems[0]
    assert "two files for mask1" in problems[1]


def test_missing_folders_are_one_clear_line(tmp_path) -> None:
    with pytest.raises(DataError, match="does not exist") as info:
        read_train(tmp_path / "nowhere")
    assert "\n" not in str(info.value) and "maskopt synth" in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no train/ folder") as info:
        read_train(tmp_path / "empty")
    assert "\n" not in str(info.value)


def test_empty_set_is_an_error(tmp_path) -> None:
    (tmp_path / "d" / "train" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="no usable people"):
        read_train(tmp_path / "d")


def test_all_bad_with_skip_bad_is_still_an_error(tmp_path) -> None:
    root = make_layout(tmp_path / "d", people=PEOPLE[:1])
    (person_dir(root, 0) / "normal.jpg").unlink()
    with pytest.raises(DataError, match=r"no usable people .*\(1 skipped"):
        read_train(root, skip_bad=True)


def test_bad_crop_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="crop"):
        read_train(make_layout(tmp_path / "d"), crop="retinaface")


def test_subset_keeps_records_and_images(tmp_path) -> None:
    ds = read_train(make_layout(tmp_path / "d"), progress=False)
    idx = np.array([3, 10, 20])
    sub = ds.subset(idx)
    assert [r.path for r in sub.records] == [ds.records[i].path for i in idx]
    np.testing.assert_array_equal(sub.labels(), ds.labels()[idx])
    np.testing.assert_array_equal(sub.images(32), ds.images(32)[idx])


def test_read_eval(tmp_path) -> None:
    assert read_eval(make_layout(tmp_path / "a")) is None
    root = make_layout(tmp_path / "b", eval_images=5)
    ev = read_eval(root)
    assert ev is not None and len(ev) == 5 and ev.solution is None
    assert ev.image_ids[0] == "e000.jpg" and ev.paths[0] == root / "eval" / "images" / "e000.jpg"
    assert ev.images(32).shape == (5, 40, 32, 3)
    (root / "eval" / "solution.csv").write_text(
        "ImageID,ans\n" + "".join(f"e{i:03d}.jpg,{17 - i}\n" for i in reversed(range(5)))
    )
    ev = read_eval(root)
    assert ev is not None and ev.solution is not None
    assert ev.solution.tolist() == [17, 16, 15, 14, 13]  # info.csv order
    assert ev.groups is None  # a two-column solution.csv names no people
    (root / "eval" / "images" / "e002.jpg").unlink()
    (root / "eval" / "images" / "e003.jpg").write_bytes(b"junk")
    with pytest.raises(DataError) as info:
        read_eval(root)
    assert info.value.problems == [
        "images/e002.jpg: missing",
        "images/e003.jpg: not a JPEG or PNG image (unreadable or corrupt)",
    ]


def test_solution_person_column_gives_groups(tmp_path) -> None:
    root = make_layout(tmp_path / "d", eval_images=5)
    solution = root / "eval" / "solution.csv"
    people = ["p9", "p1", "p9", "p2", "p1"]  # info.csv order is e000..e004
    rows = [f"e{i:03d}.jpg,{i},{people[i]}\n" for i in reversed(range(5))]
    solution.write_text("ImageID,ans,person\n" + "".join(rows))
    ev = read_eval(root)
    assert ev is not None and ev.groups is not None
    assert ev.groups.tolist() == [0, 1, 0, 2, 1]  # one index per person, info.csv order
    assert ev.solution is not None and ev.solution.tolist() == [0, 1, 2, 3, 4]

    rows[1] = "e003.jpg,3,\n"
    solution.write_text("ImageID,ans,person\n" + "".join(rows))
    with pytest.raises(DataError, match="person is empty for 1 of 5 image"):
        read_eval(root)


def test_reads_the_synthetic_set(tiny_data, tiny_set) -> None:
    import csv

    with open(tiny_data / "train" / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert tiny_set.n_people == len(rows) and len(tiny_set) == 7 * len(rows)
    ages = {r["id"]: int(r["age"]) for r in rows}
    assert all(rec.age == ages[rec.person] for rec in tiny_set.records)
    ev = read_eval(tiny_data)
    assert ev is not None and ev.solution is not None and len(ev.solution) == len(ev)
