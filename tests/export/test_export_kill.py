"""SIGKILL during `maskopt best --export` over an existing bundle: the old bundle stays readable
by `predict`, and the next export neither trips over what the killed one left nor keeps it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from maskopt.bundle.manifest import read_manifest
from maskopt.cli import app
from maskopt.export.export import export_best
from maskopt.export.options import ExportOptions
from tests.study_fixtures import build_study, complementary_oof

runner = CliRunner()


@pytest.mark.slow
def test_a_killed_export_leaves_the_old_bundle(tiny_data: Path, tmp_path: Path) -> None:
    study = build_study(tiny_data, tmp_path / "study", oof_fn=complementary_oof)
    out = tmp_path / "bundle"
    export_best(
        ExportOptions(storage=study.url, study=study.name, out=out, device="cpu"), progress=False
    )
    old = (out / "manifest.json").read_bytes()

    cmd = [sys.executable, "-m", "maskopt.cli", "best", "--export", "--storage", study.url]
    cmd += ["--study", study.name, "--out", str(out), "--device", "cpu"]
    env = {**os.environ, "MASKOPT_WORKERS": "0"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".bundle.maskopt-new-*")):  # the new bundle is being built
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        assert time.monotonic() < deadline, "the export never started building"
        time.sleep(0.01)
    time.sleep(0.5)  # well into the work
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)

    assert (out / "manifest.json").read_bytes() == old
    read_manifest(out)  # whole: every checkpoint it lists is there
    res = runner.invoke(app, ["predict", str(out), "--eval", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "held-out macro F1" in res.output

    res = runner.invoke(
        app,
        ["best", "--export", "--storage", study.url, "--study", study.name]
        + ["--out", str(out), "--device", "cpu", "--no-retrain"],
    )
    assert res.exit_code == 0, res.output
    assert read_manifest(out).members[0].retrained is False  # the new one
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".bundle")) == []
