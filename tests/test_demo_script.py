"""scripts/demo.sh (make demo) and make clean replace or remove only a folder an earlier demo
wrote (its marker); a folder or file with anything else is refused in one line, untouched.
(The demo's run itself is `make demo`, minutes long: not run here.)"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_demo_refuses_what_no_demo_wrote(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "project"
    if kind == "folder":
        target.mkdir()
        (target / "notes.txt").write_text("mine")
    else:
        target.write_text("mine")
    res = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh"), str(target)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "no earlier demo wrote" in res.stderr
    kept = target / "notes.txt" if kind == "folder" else target
    assert kept.read_text() == "mine"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_clean_removes_only_a_demo(tmp_path: Path) -> None:
    mine, demo = tmp_path / "mine", tmp_path / "demo"
    for folder in (mine, demo):
        folder.mkdir()
        (folder / "data").write_text("x")
    (demo / ".maskopt-demo").touch()
    venv = tmp_path / "venv"  # make clean removes VENV too: point it at a throwaway folder
    said = {}
    for folder in (mine, demo):
        venv.mkdir()
        res = subprocess.run(
            ["make", "-s", "-C", str(ROOT), "clean", f"DEMO={folder}", f"VENV={venv}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        assert not venv.exists()
        said[folder] = res.stdout
    assert (mine / "data").read_text() == "x"
    assert said[mine] == f"clean: {mine} kept: no demo wrote it\n"
    assert not demo.exists() and said[demo] == ""
