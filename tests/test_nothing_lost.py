"""Nothing a user has is lost: every command that writes, aimed at what it did not write.

Each writing command is run through the CLI in a project folder (notes, photos, a data folder)
with its output aimed at: `.`, an unrelated folder with files, an existing regular file, a path
under a regular file, its own earlier output, and a path whose parent folders are missing.
Refusals are one line and a non-zero exit code, and every file of the project is byte for byte
what it was (nor is anything added). CI runs as root, so nothing here relies on chmod.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from maskopt.cli import app
from maskopt.trainer.config import save_config
from tests.search.test_search_tracking import TINY_SPACE
from tests.study_fixtures import FinishedStudy, build_study, complementary_oof
from tests.trainer.conftest import tiny_cfg

runner = CliRunner(env={"COLUMNS": "200"})

# where each case aims the output (relative to the project folder)
TARGETS = {
    "dot": ".",
    "folder": "photos",
    "file": "notes.txt",
    "under_file": "notes.txt/sub",
    "missing_parent": "new/deeper/out",
}


def project(root: Path) -> Path:
    """A user's project folder: notes, photos and a data folder of their own."""
    proj = root / "proj"
    (proj / "photos").mkdir(parents=True)
    (proj / "photos" / "a.jpg").write_bytes(b"\xff\xd8 not really a jpeg a")
    (proj / "photos" / "b.jpg").write_bytes(b"\xff\xd8 not really a jpeg b")
    (proj / "notes.txt").write_text("my notes\n")
    (proj / "data" / "train").mkdir(parents=True)
    (proj / "data" / "train" / "train.csv").write_text("id,gender,race,age,path\n")
    return proj


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path -> sha256 of its bytes)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def refused(res, before: dict[str, str], proj: Path) -> None:
    assert res.exit_code not in (0, None), res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert "Traceback" not in res.output
    assert snapshot(proj) == before  # nothing changed, nothing added


@dataclass(frozen=True)
class Command:
    args: Callable[[str], list[str]]  # the output path -> the command line
    kind: str  # "folder": an owned folder; "file": a file the user names; "storage"
    ext: str = ""  # a new file's suffix, where the command reads its format from it


@pytest.fixture(scope="module")
def study(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> FinishedStudy:
    """A finished study (untrained tiny models, so fast) for best --export / --config-out."""
    return build_study(tiny_data, tmp_path_factory.mktemp("lost-study"), oof_fn=complementary_oof)


@pytest.fixture(scope="module")
def checkpoint(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lost-ck")
    save_config(tiny_cfg(epochs=1), folder / "cfg.json")
    out = folder / "run"
    res = runner.invoke(app, train_args(folder / "cfg.json", tiny_data, str(out)))
    assert res.exit_code == 0, res.output
    return out / "model.pt"


def train_args(cfg: Path, data: Path, out: str) -> list[str]:
    args = ["train", "--config", str(cfg), "--data", str(data), "--folds", "2"]
    return [*args, "--device", "cpu", "--out", out]


def commands(tiny_data: Path, study: FinishedStudy, checkpoint: Path, proj: Path) -> dict:
    save_config(tiny_cfg(epochs=1), proj.parent / "cfg.json")
    (proj.parent / "tiny.yaml").write_text(TINY_SPACE)
    search = ["search", "--data", str(tiny_data), "--space", str(proj.parent / "tiny.yaml")]
    search += ["--folds", "2", "--trials", "1", "--seed", "0", "--device", "cpu"]
    where = ["--storage", study.url, "--study", study.name]
    return {
        "synth": Command(lambda o: ["synth", o, "--people", "6", "--size", "64x80"], "folder"),
        "train": Command(lambda o: train_args(proj.parent / "cfg.json", tiny_data, o), "folder"),
        "export": Command(
            lambda o: ["best", *where, "--export", "--no-retrain", "--top", "2", "--out", o],
            "folder",
        ),
        "eda": Command(lambda o: ["eda", "--data", str(tiny_data), "--out", o], "file"),
        "predict": Command(
            lambda o: (
                ["predict", str(checkpoint), str(tiny_data / "eval" / "images")]
                + ["--device", "cpu", "--out", o]
            ),
            "file",
        ),
        "config-out": Command(
            lambda o: ["best", *where, "--trial", str(study.numbers[0]), "--config-out", o],
            "file",
            ext=".json",
        ),
        "storage": Command(lambda o: [*search, "--storage", f"sqlite:///{o}"], "storage"),
        "artifacts": Command(
            lambda o: [*search, "--storage", "sqlite:///s.db", "--artifacts", o], "shared"
        ),
        "tensorboard": Command(
            lambda o: [*search, "--storage", "sqlite:///s.db", "--tensorboard", o], "shared"
        ),
    }


NAMES = ["synth", "train", "export", "eda", "predict", "config-out"]
NAMES += ["storage", "artifacts", "tensorboard"]


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("name", NAMES)
def test_an_output_aimed_at_what_the_user_has(
    name, target, tiny_data, study, checkpoint, tmp_path, monkeypatch
) -> None:
    proj = project(tmp_path)
    monkeypatch.chdir(proj)
    cmd = commands(tiny_data, study, checkpoint, proj)[name]
    out = TARGETS[target] + (cmd.ext if target == "missing_parent" else "")
    before = snapshot(proj)
    res = runner.invoke(app, cmd.args(out))
    writes_a_file = cmd.kind == "file" and target in ("file", "missing_parent")
    if name == "config-out" and target == "file":
        writes_a_file = False  # notes.txt: not a config format, so refused (it names .json ...)
    if writes_a_file or (cmd.kind != "storage" and target == "missing_parent"):
        assert res.exit_code == 0, res.output
        after = snapshot(proj)
        assert all(after.get(k) == v for k, v in before.items() if k != out)  # the user's files
        if cmd.kind == "file":
            assert set(after) - set(before) <= {out} and after[out] != before.get(out)
        return
    refused(res, before, proj)
    assert out.rstrip("/") in res.output or "storage URL" in res.output


@pytest.mark.parametrize("name", NAMES)
def test_its_own_earlier_output_is_replaced_or_added_to(
    name, tiny_data, study, checkpoint, tmp_path, monkeypatch
) -> None:
    proj = project(tmp_path)
    monkeypatch.chdir(proj)
    cmd = commands(tiny_data, study, checkpoint, proj)[name]
    out = {"storage": "m.db", "artifacts": "arts", "tensorboard": "tb"}.get(name, "mine") + cmd.ext
    first = runner.invoke(app, cmd.args(out))
    assert first.exit_code == 0, first.output
    user = {k: v for k, v in snapshot(proj).items() if k in project_files()}
    again = runner.invoke(app, cmd.args(out))
    assert again.exit_code == 0, again.output
    assert {k: v for k, v in snapshot(proj).items() if k in project_files()} == user
    assert not [p for p in proj.iterdir() if ".maskopt-" in p.name]  # no staging left


def project_files() -> set[str]:
    return {"photos/a.jpg", "photos/b.jpg", "notes.txt", "data/train/train.csv"}
