from __future__ import annotations

import dataclasses

import pytest

from maskopt.errors import ConfigError
from maskopt.trainer.config import (
    KEYS,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)

ISSUE_KEYS = (
    "backbone pretrained weights image_size batch_size epochs optimizer lr weight_decay scheduler "
    "warmup_epochs loss focal_gamma label_smoothing class_weights dropout head head_hidden "
    "freeze_epochs augment grad_accum old_age seed"
).split()
GPU_KEYS = ["augment_on", "mix", "mix_alpha", "compile"]  # issue 8; defaults train as before


def test_keys_are_exactly_the_documented_ones():
    assert sorted(KEYS) == sorted(ISSUE_KEYS + GPU_KEYS)


def test_a_config_from_before_the_gpu_keys_loads_and_trains_as_it_did(tmp_path):
    """Every key added for the GPU path defaults to what training did before it existed."""
    old = {k: v for k, v in config_to_dict(TrainConfig(lr=0.01)).items() if k not in GPU_KEYS}
    cfg = config_from_dict(old)
    assert (cfg.augment_on, cfg.mix, cfg.compile) == ("cpu", "none", False)
    new = config_from_dict(
        {"augment_on": "device", "mix": "cutmix", "mix_alpha": 1, "compile": True}
    )
    assert new.mix_alpha == 1.0 and isinstance(new.mix_alpha, float)
    path = tmp_path / "c.toml"
    save_config(new, path)
    assert load_config(path) == new


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml", ".toml"])
@pytest.mark.parametrize(
    "cfg",
    [
        TrainConfig(),
        TrainConfig(
            head="multi",
            head_hidden=(32, 16),
            class_weights="balanced",
            loss="focal",
            weights="w.pt",
            old_age=58,
            optimizer="sgd",
            scheduler="plateau",
            warmup_epochs=2,
        ),
        TrainConfig(class_weights=tuple(float(i + 1) for i in range(18)), loss="f1"),
    ],
)
def test_config_round_trips(tmp_path, cfg, suffix):
    path = tmp_path / f"cfg{suffix}"
    save_config(cfg, path)
    assert load_config(path) == cfg
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_dict_round_trip_and_int_floats():
    cfg = config_from_dict({"lr": 1, "head_hidden": [8], "class_weights": [1] * 18})
    assert cfg.lr == 1.0 and cfg.head_hidden == (8,) and cfg.class_weights == (1.0,) * 18
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert dataclasses.asdict(cfg)["head_hidden"] == (8,)


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="learning_rate"):
        config_from_dict({"learning_rate": 0.1})


@pytest.mark.parametrize(
    "key,value",
    [
        ("lr", 0.0),
        ("lr", -1),
        ("batch_size", 0),
        ("batch_size", 2.5),
        ("epochs", True),
        ("optimizer", "rmsprop"),
        ("scheduler", "cyclic"),
        ("loss", "mse"),
        ("head", "triple"),
        ("head_hidden", [0]),
        ("dropout", 1.0),
        ("class_weights", [1.0] * 17),
        ("class_weights", "inverse"),
        ("augment", 9),
        ("old_age", 30),
        ("focal_gamma", -1),
        ("label_smoothing", 1.0),
        ("image_size", 8),
        ("image_size", 66),  # not a multiple of 4: the height 5W/4 would not be whole
        ("pretrained", "yes"),
        ("grad_accum", 0),
        ("backbone", "resnet10tt"),
        ("augment_on", "gpu"),
        ("mix", "both"),
        ("mix_alpha", 0.0),
        ("compile", "yes"),
    ],
)
def test_bad_value_names_key_and_value(key, value):
    with pytest.raises(ConfigError) as err:
        config_from_dict({key: value})
    assert repr(key) in str(err.value) and "expected" in str(err.value)


def test_epoch_dependent_limits():
    with pytest.raises(ConfigError, match="warmup_epochs"):
        config_from_dict({"epochs": 3, "warmup_epochs": 3})
    with pytest.raises(ConfigError, match="freeze_epochs"):
        config_from_dict({"epochs": 3, "freeze_epochs": 4})
    assert config_from_dict({"epochs": 3, "freeze_epochs": 3}).freeze_epochs == 3


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(ConfigError, match="resnet10t"):
        TrainConfig(backbone="resnet10tt")


def test_bad_files(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="does not parse"):
        load_config(bad)
    with pytest.raises(ConfigError, match=".ini"):
        load_config(tmp_path / "c.ini")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    y = tmp_path / "c.yaml"
    y.write_text("lr: 0.01\nbatch_size: -3\n")
    with pytest.raises(ConfigError, match="batch_size"):
        load_config(y)
