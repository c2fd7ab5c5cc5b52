"""Search spaces: built-in ones sample valid configs; space files are read and checked."""

from __future__ import annotations

import optuna
import pytest
from typer.testing import CliRunner

from maskopt.cli import app
from maskopt.errors import ConfigError
from maskopt.spaces import get_space, list_spaces
from maskopt.trainer.config import TrainConfig

SPACE_YAML = """
name: small
description: a user space
epochs: 2
params:
  backbone: [resnet10t, mobilenetv3_small_050]
  image_size: 32
  lr: {low: 1.0e-4, high: 1.0e-2, log: true, grid: [0.001, 0.003]}
  batch_size: {choices: [8, 16]}
  loss: [cross_entropy, focal]
  focal_gamma: {low: 1.0, high: 3.0, when: {loss: focal}, grid: [2.0]}
  head_hidden: {value: [32]}
"""


@pytest.mark.parametrize("name", ["default", "cpu"])
def test_builtin_spaces_sample_valid_configs(name):
    space = get_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_losses = set()
    for _ in range(30):
        trial = study.ask()
        cfg = space.suggest(trial)
        assert isinstance(cfg, TrainConfig)
        assert cfg.epochs == space.epochs  # fixed per study, never sampled
        assert "epochs" not in trial.params
        # conditional keys are sampled only under their condition
        assert ("focal_gamma" in trial.params) == (cfg.loss == "focal")
        assert ("label_smoothing" in trial.params) == (cfg.loss == "label_smoothing")
        seen_losses.add(cfg.loss)
        study.tell(trial, 0.5)
    assert len(seen_losses) >= 2


def test_cpu_space_is_small_and_default_is_for_a_gpu():
    cpu, default = get_space("cpu"), get_space("default")
    cpu_cfg, gpu_cfg = cpu.fixed_config(), default.fixed_config()
    assert cpu_cfg.image_size <= 64 and not cpu_cfg.pretrained and cpu.epochs <= 4
    assert gpu_cfg.image_size >= 192 and gpu_cfg.pretrained
    assert {p.name for p in default.params} >= {
        "backbone",
        "lr",
        "batch_size",
        "loss",
        "focal_gamma",
        "label_smoothing",
        "dropout",
        "weight_decay",
        "optimizer",
        "scheduler",
        "head",
        "augment",
        "old_age",
        "mix",
        "mix_alpha",
    }
    # on a GPU each worker measures where augmentation trains faster; CutMix / MixUp are
    # searched there
    assert gpu_cfg.augment_on == "auto" and cpu_cfg.augment_on == "cpu"
    mix = next(p for p in default.params if p.name == "mix")
    assert mix.choices == ("none", "mixup", "cutmix")
    assert cpu_cfg.mix == "none"
    assert [s.name for s in list_spaces()] == ["default", "cpu"]


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_space_file_is_read_and_gives_a_grid(tmp_path, suffix):
    import tomli_w
    import yaml

    data = yaml.safe_load(SPACE_YAML)
    path = tmp_path / f"small{suffix}"
    path.write_text(SPACE_YAML if suffix == ".yaml" else tomli_w.dumps(data))
    space = get_space(str(path))
    assert space.name == "small" and space.epochs == 2
    grid = space.grid()
    assert grid == {
        "backbone": ["resnet10t", "mobilenetv3_small_050"],
        "lr": [0.001, 0.003],
        "batch_size": [8, 16],
        "loss": ["cross_entropy", "focal"],
        "focal_gamma": [2.0],
    }
    # The grid sampler walks every combination; each gives a valid config with the fixed values.
    study = optuna.create_study(sampler=optuna.samplers.GridSampler(grid, seed=0))
    configs = []

    def objective(trial):
        configs.append(space.suggest(trial))
        return 0.0

    study.optimize(objective, n_trials=20)  # the grid sampler stops the study after 16
    assert len(configs) == 16
    assert {(c.backbone, c.lr, c.batch_size, c.loss) for c in configs} == {
        (b, lr, bs, loss)
        for b in grid["backbone"]
        for lr in grid["lr"]
        for bs in grid["batch_size"]
        for loss in grid["loss"]
    }
    assert all(c.head_hidden == (32,) and c.image_size == 32 for c in configs)
    assert all(c.focal_gamma == 2.0 for c in configs if c.loss == "focal")


@pytest.mark.parametrize(
    "params, key",
    [
        ("lr: {low: 0.1, high: 0.01}", "lr"),
        ("lr: {low: 0, high: 0.01, log: true}", "lr"),
        ("optimizer: [adamw, nadam]", "optimizer"),
        ("dropout: {low: 0.0, high: 0.5, spread: 2}", "dropout"),
        ("learning_rate: 0.1", "learning_rate"),
        ("epochs: 3", "epochs"),
        ("focal_gamma: {low: 1.0, high: 2.0, when: {loss: focal}}", "focal_gamma"),
    ],
)
def test_bad_space_file_names_the_key(tmp_path, params, key):
    path = tmp_path / "bad.yaml"
    path.write_text(f"epochs: 2\nparams:\n  {params}\n")
    with pytest.raises(ConfigError) as err:
        get_space(str(path))
    assert repr(key) in str(err.value) and "bad.yaml" in str(err.value)


def test_unknown_space_and_grid_without_values():
    from maskopt.search.samplers import create_sampler

    with pytest.raises(ConfigError, match="'gpu'"):
        get_space("gpu")
    with pytest.raises(ConfigError, match="lr"):
        create_sampler("grid", seed=0, space=get_space("cpu"))


def test_spaces_cli_lists_and_shows():
    runner = CliRunner()
    listed = runner.invoke(app, ["spaces"])
    assert listed.exit_code == 0 and "cpu" in listed.output and "default" in listed.output
    shown = runner.invoke(app, ["spaces", "show", "cpu"])
    assert shown.exit_code == 0
    assert "mobilenetv3_small_050" in shown.output and "when loss = focal" in shown.output
    bad = runner.invoke(app, ["spaces", "show", "nope"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
