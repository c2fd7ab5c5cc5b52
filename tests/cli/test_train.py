"""`maskopt train` and `maskopt predict` through Typer's CliRunner on the tiny set."""

from __future__ import annotations

import csv
import json

from typer.testing import CliRunner

from maskopt.cli import app
from maskopt.trainer.config import save_config
from tests.trainer.conftest import tiny_cfg

runner = CliRunner()


def test_train_fold_then_predict(tiny_data, tmp_path):
    save_config(tiny_cfg(), tmp_path / "cfg.toml")
    out = tmp_path / "run"
    res = runner.invoke(
        app,
        [
            "train",
            "--config",
            str(tmp_path / "cfg.toml"),
            "--data",
            str(tiny_data),
            "--folds",
            "3",
            "--fold",
            "1",
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "epoch   2/2" in res.output and "best macro F1" in res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fold"] == 1 and metrics["n_folds"] == 3 and len(metrics["history"]) == 2
    assert metrics["best_f1"] == metrics["validation"]["macro_f1"]
    assert metrics["config"]["backbone"] == "test_resnet"
    assert (out / "model.pt").is_file() and (out / "config.json").is_file()
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))

    photos = sorted((tiny_data / "eval" / "images").iterdir())[:3]
    res = runner.invoke(
        app, ["predict", str(out / "model.pt"), *map(str, photos), "--device", "cpu"]
    )
    assert res.exit_code == 0, res.output
    assert "3 predictions" in res.output
    res = runner.invoke(
        app,
        [
            "predict",
            str(out / "model.pt"),
            str(tiny_data / "eval" / "images"),
            "--out",
            str(tmp_path / "preds.csv"),
            "--tta",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader((tmp_path / "preds.csv").open()))
    assert len(rows) == len(list((tiny_data / "eval" / "images").iterdir()))
    assert set(rows[0]) == {"image", "class", "mask", "gender", "age", "probability"}
    assert all(0 <= int(r["class"]) < 18 and 0 < float(r["probability"]) <= 1 for r in rows)


def test_train_full(tiny_data, tiny_set, tmp_path):
    """On all the data; `augment_on: auto` trains (on the CPU it resolves to cpu)."""
    (tmp_path / "cfg.json").write_text(
        json.dumps({**tiny_cfg().__dict__, "epochs": 1, "head_hidden": [], "augment_on": "auto"})
    )
    res = runner.invoke(
        app,
        [
            "train",
            "--config",
            str(tmp_path / "cfg.json"),
            "--data",
            str(tiny_data),
            "--full",
            "--out",
            str(tmp_path / "full"),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert metrics["full"] and metrics["best_f1"] is None and metrics["n_train"] == len(tiny_set)
    assert metrics["config"]["augment_on"] == "auto" and metrics["history"][0]["train_loss"] > 0


def _fails(args, code):
    res = runner.invoke(app, args)
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    return res.output


def test_bad_input_ends_in_one_line(tiny_data, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbone: resnet10tt\n")
    out = _fails(["train", "--config", str(bad), "--data", str(tiny_data)], 2)
    assert "backbone" in out and "resnet10tt" in out
    big = tmp_path / "big.json"
    save_config(tiny_cfg(batch_size=5000), big)
    out = _fails(
        [
            "train",
            "--config",
            str(big),
            "--data",
            str(tiny_data),
            "--out",
            str(tmp_path / "b"),
            "--device",
            "cpu",
        ],
        2,
    )
    assert "batch_size" in out
    assert (
        not (tmp_path / "b" / "model.pt").exists()
        and not (tmp_path / "b" / "metrics.json").exists()
    )
    ok = tmp_path / "ok.json"
    save_config(tiny_cfg(), ok)
    assert "fold" in _fails(
        [
            "train",
            "--config",
            str(ok),
            "--data",
            str(tiny_data),
            "--fold",
            "5",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "c"),
        ],
        2,
    )
    assert "device" in _fails(
        [
            "train",
            "--config",
            str(ok),
            "--data",
            str(tiny_data),
            "--device",
            "tpu",
            "--out",
            str(tmp_path / "d"),
        ],
        2,
    )
    _fails(["predict", str(tmp_path / "nothing.pt"), str(ok)], 1)
