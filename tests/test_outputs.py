"""maskopt.outputs: what a command may write over, and how it replaces its own output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from maskopt.outputs import (
    OutputError,
    Owned,
    atomic_write_text,
    check_file_out,
    check_out_dir,
    check_shared_dir,
    mark_dir,
    replace_dir,
)

KIND = Owned(
    what="thing", marks=("thing.json",), entries=frozenset({"thing.json", "part"}), made_by="t"
)


def make_thing(folder: Path, text: str = "old") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "thing.json").write_text(text)
    return folder


def test_an_owned_folder_may_be_absent_empty_or_its_own_kind(tmp_path: Path) -> None:
    assert check_out_dir(tmp_path / "new" / "deeper", KIND) == tmp_path / "new" / "deeper"
    (tmp_path / "empty").mkdir()
    check_out_dir(tmp_path / "empty", KIND)
    check_out_dir(make_thing(tmp_path / "mine"), KIND)


@pytest.mark.parametrize(
    "setup, says",
    [
        (lambda p: (p.mkdir(), (p / "notes.txt").write_text("x")), "notes.txt, which t did not"),
        (lambda p: (make_thing(p), (p / "mine.txt").write_text("x")), "mine.txt, which t did not"),
        (lambda p: (p.mkdir(), (p / "part").mkdir()), "part/ but no thing.json"),
        (lambda p: p.write_text("a file"), "it is a file"),
    ],
)
def test_anything_else_is_refused_in_one_line(tmp_path: Path, setup, says) -> None:
    target = tmp_path / "out"
    setup(target)
    with pytest.raises(OutputError, match=says) as err:
        check_out_dir(target, KIND)
    assert "\n" not in str(err.value) and str(target) in str(err.value)


def test_under_a_file_and_the_current_folder_are_refused(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file, so nothing can be written under it"):
        check_out_dir(tmp_path / "f" / "sub" / "deeper", KIND)
    with pytest.raises(OutputError, match="nothing can be written under it"):
        check_file_out(tmp_path / "f" / "report.html")
    monkeypatch.chdir(make_thing(tmp_path / "here"))
    with pytest.raises(OutputError, match="the current folder"):
        check_out_dir(".", KIND)


def test_replace_dir_swaps_the_new_folder_in_whole(tmp_path: Path) -> None:
    out = make_thing(tmp_path / "out", "old")
    with replace_dir(out, KIND) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.maskopt-new-")
        assert (out / "thing.json").read_text() == "old"  # the old one is whole meanwhile
        make_thing(tmp, "new")
    assert (out / "thing.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging, no old copy


def test_a_failed_replacement_leaves_the_old_folder_as_it_was(tmp_path: Path) -> None:
    out = make_thing(tmp_path / "out", "old")
    with pytest.raises(KeyboardInterrupt):
        with replace_dir(out, KIND) as tmp:
            make_thing(tmp, "half")
            raise KeyboardInterrupt
    assert (out / "thing.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with pytest.raises(RuntimeError):  # a first build that fails leaves nothing
        with replace_dir(tmp_path / "other", KIND):
            raise RuntimeError("boom")
    assert not (tmp_path / "other").exists()


def test_a_killed_builders_staging_folder_is_swept_by_the_next_run(tmp_path: Path) -> None:
    out = make_thing(tmp_path / "out")
    dead = tmp_path / ".out.maskopt-new-abc123"
    make_thing(dead, "half")
    (dead / ".maskopt-pid").write_text("999999999")  # no such process
    alive = tmp_path / ".out.maskopt-new-def456"
    make_thing(alive, "building")
    (alive / ".maskopt-pid").write_text(str(os.getpid()))
    (tmp_path / ".out.maskopt-old-xyz").mkdir()
    (tmp_path / ".other.maskopt-old-xyz").mkdir()  # another output's: not ours to touch
    with replace_dir(out, KIND) as tmp:
        make_thing(tmp, "new")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".other.maskopt-old-xyz", ".out.maskopt-new-def456", "out"]


def test_a_file_the_user_names_is_replaced_atomically_but_never_a_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "report.html"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two" and sorted(p.name for p in path.parent.iterdir()) == [
        "report.html"
    ]
    with pytest.raises(OutputError, match="it is a folder"):
        atomic_write_text(tmp_path / "a", "x", "--out")
    assert path.read_text() == "two"


def test_a_shared_folder_is_maskopts_when_marked_or_known(tmp_path: Path) -> None:
    folder = tmp_path / "arts"
    check_shared_dir(folder, flag="--artifacts", marker=".m", what="artifacts")  # absent
    (folder / "user").mkdir(parents=True)
    with pytest.raises(OutputError, match="--artifacts .*arts: refused: it holds user/"):
        check_shared_dir(folder, flag="--artifacts", marker=".m", what="artifacts")
    check_shared_dir(
        folder, flag="--artifacts", marker=".m", what="artifacts", known=lambda: [str(folder)]
    )
    mark_dir(folder, ".m")
    check_shared_dir(folder, flag="--artifacts", marker=".m", what="artifacts")
