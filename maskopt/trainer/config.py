"""`TrainConfig`: every knob one training run (or one Optuna trial) sets.

The key names are the file format: configs travel between users as JSON, YAML or
TOML, and `asdict(cfg)` goes into every checkpoint and every trial. Every value is
checked here, so a bad file fails before any model is built, with the key, the
value and what is allowed in the message.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import timm
import yaml

from maskopt.data.labels import MAX_OLD_AGE, NUM_CLASSES, OLD_AGE, YOUNG_AGE
from maskopt.errors import ConfigError
from maskopt.outputs import atomic_write_text

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "step", "cosine", "plateau")
LOSSES = ("cross_entropy", "focal", "label_smoothing", "f1")
HEADS = ("single", "multi")
AUGMENT_LEVELS = (0, 1, 2, 3)  # maskopt.data.augment.create_augment strengths (0: none)
AUGMENT_ON = ("cpu", "device", "auto")  # albumentations per image in the loader / kornia on
# the batch / the faster of the two, measured where the run trains (maskopt.trainer.placement)
MIXES = ("none", "mixup", "cutmix")  # maskopt.trainer.mix


@dataclass(frozen=True)
class TrainConfig:
    # model
    backbone: str = "resnet10t"  # any timm model name (timm.list_models())
    pretrained: bool = False  # let timm download ImageNet weights (needs the network)
    weights: str | None = None  # local weights file loaded into the backbone (strict=False)
    image_size: int = 64  # width in px; images are portrait (5*W//4, W) like the 384x512 photos
    dropout: float = 0.0  # dropout before each head layer
    head: str = "single"  # single: one 18-way head; multi: mask 3 / gender 2 / age 3 heads
    head_hidden: tuple[int, ...] = ()  # widths of hidden layers in the head (0 or more)
    # optimisation
    batch_size: int = 32  # 32 at 64 px: enough optimizer steps per epoch on small sets
    epochs: int = 10
    optimizer: str = "adamw"  # sgd (momentum 0.9, nesterov) / adam / adamw
    lr: float = 2e-3
    weight_decay: float = 1e-4  # not applied to biases and norm weights
    scheduler: str = "cosine"  # none / step / cosine / plateau (stepped once an epoch)
    warmup_epochs: int = 0  # linear warm-up epochs before the scheduler takes over
    grad_accum: int = 1  # optimizer step every this many batches
    freeze_epochs: int = 0  # epochs with the backbone frozen (only the head trains), then fine-tune
    # loss
    loss: str = "cross_entropy"  # cross_entropy / focal / label_smoothing / f1 (soft macro F1)
    focal_gamma: float = 2.0  # focal loss only; 0 is cross-entropy
    label_smoothing: float = 0.1  # label_smoothing loss only (epsilon)
    class_weights: str | tuple[float, ...] | None = None  # None / "balanced" / 18 floats
    # data
    augment: int = 1  # augmentation strength (0: none; higher: stronger)
    # where `augment` runs: cpu = albumentations per image in the loader processes (what every
    # config trained with before the key existed); device = the same strengths as kornia batch
    # ops on the training device (maskopt.data.device_augment), which keeps a GPU fed when the
    # loader's cores cannot (BENCHMARKS.md, bench:gpu); auto = cpu on a CPU device, elsewhere
    # the faster of the two, measured on a few batches once per process (trainer.placement)
    augment_on: str = "cpu"
    mix: str = "none"  # none / mixup / cutmix: each sample mixed with a partner, on the device
    mix_alpha: float = 1.0  # the mixing share is Beta(mix_alpha, mix_alpha), per sample
    old_age: int = OLD_AGE  # training targets call this age and above "old"; validation: OLD_AGE
    seed: int = 0  # model init, batch order and augmentation
    # speed
    compile: bool = False  # torch.compile the training step's model (a one-off compile per run)

    def __post_init__(self) -> None:
        _validate(self)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _bad(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"config key {key!r}: expected {allowed}, but got {value!r}.")


def _check_int(cfg: TrainConfig, key: str, lo: int, hi: int) -> None:
    v = getattr(cfg, key)
    if not _is_int(v) or not lo <= v <= hi:
        raise _bad(key, v, f"an integer in {lo}..{hi}")


def _check_float(
    cfg: TrainConfig,
    key: str,
    lo: float,
    hi: float,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    v = getattr(cfg, key)
    ok = _is_number(v) and (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)
    if not ok:
        interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise _bad(key, v, f"a number in {interval}")


def _check_choice(cfg: TrainConfig, key: str, choices: tuple) -> None:
    v = getattr(cfg, key)
    if v not in choices or isinstance(v, bool):
        raise _bad(key, v, "one of " + ", ".join(map(repr, choices)))


def check_backbone(name: str) -> None:
    """ConfigError unless timm has a model of that name (with the closest names as a hint)."""

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.7)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see timm.list_models())"
        raise _bad("backbone", name, "a timm model name" + hint)


def _validate(cfg: TrainConfig) -> None:
    if not isinstance(cfg.backbone, str) or not cfg.backbone:
        raise _bad("backbone", cfg.backbone, "a timm model name")
    check_backbone(cfg.backbone)
    if not isinstance(cfg.pretrained, bool):
        raise _bad("pretrained", cfg.pretrained, "true or false")
    if cfg.weights is not None and not (isinstance(cfg.weights, str) and cfg.weights):
        raise _bad("weights", cfg.weights, "a path to a local weights file, or null")
    _check_int(cfg, "image_size", 16, 1024)
    if cfg.image_size % 4:  # images are (5W/4, W): the height must be whole (data.crop.image_shape)
        raise _bad("image_size", cfg.image_size, "a multiple of 4 in 16..1024")
    _check_float(cfg, "dropout", 0.0, 1.0, hi_open=True)
    _check_choice(cfg, "head", HEADS)
    if not isinstance(cfg.head_hidden, tuple) or not all(
        _is_int(w) and 1 <= w <= 65536 for w in cfg.head_hidden
    ):
        raise _bad(
            "head_hidden", cfg.head_hidden, "a list of layer widths in 1..65536 (may be empty)"
        )
    _check_int(cfg, "batch_size", 1, 65536)
    _check_int(cfg, "epochs", 1, 10000)
    _check_choice(cfg, "optimizer", OPTIMIZERS)
    _check_float(cfg, "lr", 0.0, 10.0, lo_open=True)
    _check_float(cfg, "weight_decay", 0.0, 1.0)
    _check_choice(cfg, "scheduler", SCHEDULERS)
    _check_int(cfg, "warmup_epochs", 0, cfg.epochs - 1)
    _check_int(cfg, "grad_accum", 1, 1024)
    _check_int(cfg, "freeze_epochs", 0, cfg.epochs)
    _check_choice(cfg, "loss", LOSSES)
    _check_float(cfg, "focal_gamma", 0.0, 10.0)
    _check_float(cfg, "label_smoothing", 0.0, 1.0, hi_open=True)
    cw = cfg.class_weights
    if not (
        cw is None
        or cw == "balanced"
        or (
            isinstance(cw, tuple)
            and len(cw) == NUM_CLASSES
            and all(_is_number(w) and w >= 0 for w in cw)
            and any(w > 0 for w in cw)
        )
    ):
        raise _bad("class_weights", cw, f"null, 'balanced' or a list of {NUM_CLASSES} weights >= 0")
    _check_choice(cfg, "augment", AUGMENT_LEVELS)
    _check_choice(cfg, "augment_on", AUGMENT_ON)
    _check_choice(cfg, "mix", MIXES)
    _check_float(cfg, "mix_alpha", 0.0, 10.0, lo_open=True)
    _check_int(cfg, "old_age", YOUNG_AGE + 1, MAX_OLD_AGE)
    _check_int(cfg, "seed", 0, 2**32 - 1)
    if not isinstance(cfg.compile, bool):
        raise _bad("compile", cfg.compile, "true or false")


KEYS = tuple(f.name for f in fields(TrainConfig))


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """A checked TrainConfig; missing keys take their defaults, unknown keys are an error."""
    if not isinstance(d, dict):
        raise ConfigError(f"a config must be a mapping of key: value, but got {type(d).__name__}.")
    unknown = sorted(set(d) - set(KEYS))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(KEYS)}."
        )
    values = dict(d)
    # lists arrive from JSON/YAML/TOML; the frozen config holds tuples
    for key in ("head_hidden", "class_weights"):
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    for key in ("lr", "weight_decay", "dropout", "focal_gamma", "label_smoothing", "mix_alpha"):
        if _is_int(values.get(key)):
            values[key] = float(values[key])
    if isinstance(values.get("class_weights"), tuple):
        values["class_weights"] = tuple(
            float(w) if _is_int(w) else w for w in values["class_weights"]
        )
    return TrainConfig(**values)


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain JSON-able dict (tuples as lists), the form that goes into checkpoints and trials."""
    d = asdict(cfg)
    for key in ("head_hidden", "class_weights"):
        if isinstance(d[key], tuple):
            d[key] = list(d[key])
    return d


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml", ".toml"):
        raise ConfigError(
            f"config file {str(path)!r}: expected a .json, .yaml, .yml or .toml file, "
            f"got {suffix!r}."
        )
    return suffix


def read_structured_file(path: Path, suffix: str, what: str) -> Any:
    """Parse a .json / .yaml / .yml / .toml file (config files and space files alike);
    a file that cannot be read or parsed is a ConfigError naming `what` and the path."""
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read {what} {str(path)!r}: {err.strerror}.") from None
    try:
        if suffix == ".json":
            return json.loads(text)
        if suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        import yaml

        return yaml.safe_load(text)
    except Exception as err:  # every parser has its own error type; all mean "does not parse"
        raise ConfigError(f"{what} {str(path)!r} does not parse: {err}") from None


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read a config file (.json / .yaml / .yml / .toml)."""
    path = Path(path)
    data = read_structured_file(path, _suffix(path), "config file")
    if data is None:
        data = {}
    try:
        return config_from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def dump_config(cfg: TrainConfig, suffix: str = ".json") -> str:
    """The text of `cfg` as JSON, YAML or TOML (TOML has no null: None values are left out)."""
    d = config_to_dict(cfg)
    if suffix == ".json":
        return json.dumps(d, indent=2) + "\n"
    if suffix == ".toml":
        import tomli_w

        return tomli_w.dumps({k: v for k, v in d.items() if v is not None})

    return yaml.safe_dump(d, sort_keys=False)


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write `cfg` in the format its suffix names, atomically."""

    path = Path(path)
    text = dump_config(cfg, _suffix(path))
    atomic_write_text(path, text, "--config-out")
