"""`maskopt best`: the table, --trial/--config-out, --export, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from maskopt.bundle.manifest import read_manifest
from maskopt.cli import app

runner = CliRunner(env={"COLUMNS": "200"})  # rich reads the width from COLUMNS


def test_best_table(finished_study) -> None:
    res = runner.invoke(app, ["best", "--storage", finished_study.url, "--top", "2"])
    assert res.exit_code == 0, res.output
    assert "top 2 trials of 'maskopt' (3 complete, 1 pruned)" in res.output
    assert "backbone=test_convnext" in res.output and "kept" in res.output
    assert "augment" in res.output  # where each trial augmented ("-": not recorded here)


def test_the_augment_column_says_where_augmentation_ran() -> None:
    import optuna

    from maskopt.store.records import AUGMENT_PLACEMENT, read_trial
    from maskopt.studies.table import augment_text

    study = optuna.create_study(direction="maximize")
    for placement in (
        # auto, measured: how much faster the chosen placement trained than the other
        {"chosen": "device", "cpu_images_per_s": 300.0, "device_images_per_s": 750.0},
        {"chosen": "cpu", "cpu_images_per_s": 520.0, "device_images_per_s": 400.0},
        {"chosen": "cpu", "cpu_images_per_s": None, "device_images_per_s": None},  # unmeasured
        None,  # a study from before the attribute
    ):
        trial = study.ask()
        if placement is not None:
            trial.set_user_attr(AUGMENT_PLACEMENT, placement)
        study.tell(trial, 0.5)
    texts = [augment_text(read_trial(t)) for t in study.get_trials()]
    assert texts == ["device 2.5x", "cpu 1.3x", "cpu", "-"]


def test_config_out_writes_a_loadable_config(finished_study, tmp_path: Path) -> None:
    from maskopt.trainer.config import load_config

    cfg = tmp_path / "cfg.json"
    res = runner.invoke(
        app, ["best", "--storage", finished_study.url, "--trial", "1", "--config-out", str(cfg)]
    )
    assert res.exit_code == 0, res.output
    assert load_config(cfg).backbone == "test_resnet"
    assert json.loads(cfg.read_text())["lr"] == 0.01


def test_errors_are_one_line(finished_study, tmp_path: Path) -> None:
    res = runner.invoke(app, ["best", "--storage", finished_study.url, "--study", "nope"])
    assert res.exit_code == 1
    assert "no study 'nope'" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["best", "--storage", finished_study.url, "--trial", "1"])
    assert res.exit_code == 2 and "--trial and --config-out go together" in res.output
    res = runner.invoke(
        app,
        [
            "best",
            "--storage",
            finished_study.url,
            "--export",
            "--vote",
            "median",
            "--data",
            str(finished_study.data),
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert res.exit_code == 2 and "vote must be one of soft, hard" in res.output


def test_export_prints_scores_tradeoff_and_heldout(complementary_study, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    res = runner.invoke(
        app,
        [
            "best",
            "--storage",
            complementary_study.url,
            "--export",
            "--no-retrain",
            "--out",
            str(out),
            "--data",
            str(complementary_study.data),
            "--device",
            "cpu",
        ],
        terminal_width=200,
    )
    assert res.exit_code == 0, res.output
    m = read_manifest(out)
    chosen = m.choice["options"][m.choice["chosen"]]
    for text in (
        "the export's options, judged on people they were not chosen on",
        "best single",
        "top 2 averaged",
        "ensemble selection",
        f"{chosen['name']} *",  # the chosen option marked
        f"{chosen['name']} (trial 0 x",  # the decision names the members
        "exported: expected macro F1 on new people",
        "over the best single",
        "per-member temperature scaling",
        "in-sample OOF macro F1",
        "trade-off",
        "ensemble + TTA",
        "held-out macro F1 (eval/solution.csv):",
        "[95% CI",
        "trial 0 alone:",
        f"bundle written to {out}",
    ):
        assert text in res.output, text
    assert {0, 1} <= {mm.trial for mm in m.members}
