"""A search space: for each TrainConfig key, a distribution to sample or a fixed value.

Built-in spaces and space files share one format (a mapping of key -> spec), read by
`parse_params`, so both are checked the same way:

    lr: {low: 1.0e-4, high: 1.0e-2, log: true}     # float (log-uniform with log: true)
    warmup_epochs: {low: 0, high: 2}               # int (both bounds whole numbers)
    backbone: [resnet10t, mobilenetv3_small_050]   # listed values: categorical, and the grid
    batch_size: {choices: [32, 64]}                # the same, spelled out
    image_size: 64                                 # a fixed value
    head_hidden: {value: [256]}                    # a fixed value that is itself a list
    focal_gamma: {low: 1.0, high: 3.0, when: {loss: focal}}   # sampled only when loss is focal
    dropout: {low: 0.0, high: 0.4, grid: [0.0, 0.2]}          # the values --sampler grid tries

Epochs are not sampled: they are fixed per study so a pruning step means the same in
every trial (`epochs:` at the top of a space file, or `--epochs`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from maskopt.errors import ConfigError
from maskopt.trainer.config import KEYS, config_from_dict, config_to_dict

if TYPE_CHECKING:
    import optuna

    from maskopt.trainer.config import TrainConfig

KINDS = ("float", "int", "categorical", "fixed")
SPEC_KEYS = {"low", "high", "log", "step", "choices", "value", "when", "grid", "type"}


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # float / int / categorical / fixed
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()  # categorical
    value: Any = None  # fixed
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # sampled only if every (key in values)
    grid: tuple[Any, ...] = ()  # the values --sampler grid tries (categorical: the choices)

    def describe(self) -> str:
        if self.kind == "fixed":
            text = f"= {self.value!r}"
        elif self.kind == "categorical":
            text = "one of " + ", ".join(map(_show, self.choices))
        else:
            text = f"{self.kind} {self.low}..{self.high}" + (" (log)" if self.log else "")
            if self.step is not None:
                text += f" step {self.step}"
        if self.when:
            text += "   when " + ", ".join(
                f"{k} in {{{', '.join(map(_show, v))}}}" if len(v) > 1 else f"{k} = {_show(v[0])}"
                for k, v in self.when
            )
        return text


def _show(v: Any) -> str:
    return "none" if v is None else str(v)


def _optuna_choice(v: Any) -> Any:
    """Optuna's categorical choices must be None/bool/int/float/str: lists travel as JSON."""
    return json.dumps(v) if isinstance(v, (list, tuple)) else v


def _from_choice(v: Any, choices: tuple[Any, ...]) -> Any:
    for c in choices:
        if _optuna_choice(c) == v and type(_optuna_choice(c)) is type(v):
            return c
    return v


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_param(where: str, name: str, spec: Any) -> Param:
    """One key's spec -> Param; ConfigError naming `where` and the key."""

    def bad(msg: str) -> ConfigError:
        return ConfigError(f"{where}: key {name!r}: {msg}")

    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        return Param(name, "fixed", value=spec)
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise bad(
            f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(SPEC_KEYS))}."
        )
    when = _parse_when(spec.get("when"), bad)
    kind = spec.get("type")
    if kind is not None and kind not in KINDS:
        raise bad(f"type must be one of {', '.join(KINDS)}, but got {kind!r}.")
    if "value" in spec:
        if set(spec) - {"value", "type"}:
            raise bad("a fixed 'value' takes no other fields.")
        return Param(name, "fixed", value=spec["value"])
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise bad(f"choices must be a non-empty list, but got {choices!r}.")
        if set(spec) - {"choices", "when", "type"}:
            raise bad("a list of choices takes only 'when' besides.")
        return Param(name, "categorical", choices=tuple(choices), when=when, grid=tuple(choices))
    if "low" not in spec or "high" not in spec:
        raise bad(
            f"expected a value, a list of choices, or a range with low and high, but got {spec!r}."
        )
    low, high = spec["low"], spec["high"]
    if not (_is_num(low) and _is_num(high)) or low > high:
        raise bad(
            f"low and high must be numbers with low <= high, but got low={low!r}, high={high!r}."
        )
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise bad(f"log must be true or false, but got {log!r}.")
    if log and low <= 0:
        raise bad(f"a log range needs low > 0, but got low={low!r}.")
    if kind is None:
        kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
    if kind not in ("int", "float"):
        raise bad(f"a range is type int or float, but got {kind!r}.")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise bad(f"an int range needs whole-number bounds, but got low={low!r}, high={high!r}.")
    step = spec.get("step")
    if step is not None and (not _is_num(step) or step <= 0 or log):
        raise bad(f"step must be a number > 0 (and no log), but got {step!r}.")
    grid = spec.get("grid", [])
    if not isinstance(grid, list) or not all(_is_num(g) and low <= g <= high for g in grid):
        raise bad(f"grid must be a list of numbers within {low}..{high}, but got {grid!r}.")
    cast = int if kind == "int" else float
    return Param(
        name,
        kind,
        low=cast(low),
        high=cast(high),
        log=log,
        step=step,
        when=when,
        grid=tuple(cast(g) for g in grid),
    )


def _parse_when(when: Any, bad) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if when is None:
        return ()
    if not isinstance(when, dict) or not when:
        raise bad(f"when must map a key to the value(s) it needs, but got {when!r}.")
    return tuple((str(k), tuple(v) if isinstance(v, list) else (v,)) for k, v in when.items())


def parse_params(where: str, params: Any) -> tuple[Param, ...]:
    """A mapping key -> spec, checked against TrainConfig's keys and each other."""

    if not isinstance(params, dict) or not params:
        raise ConfigError(
            f"{where}: 'params' must map TrainConfig keys to specs, but got {params!r}."
        )
    out = []
    for name, spec in params.items():
        if name not in KEYS:
            raise ConfigError(
                f"{where}: key {name!r} is not a TrainConfig key; allowed: {', '.join(KEYS)}."
            )
        if name in ("epochs", "seed"):
            raise ConfigError(
                f"{where}: key {name!r} is fixed per study, not part of a space "
                "(epochs: set 'epochs' at the top or --epochs; seed: --seed)."
            )
        out.append(parse_param(where, name, spec))
    names = [p.name for p in out]
    for p in out:
        for key, _ in p.when:
            if key not in names or names.index(key) > names.index(p.name):
                raise ConfigError(
                    f"{where}: key {p.name!r}: 'when' refers to {key!r}, "
                    "which must be a key listed before it."
                )
    return tuple(out)


@dataclass(frozen=True)
class Space:
    """`suggest(trial) -> TrainConfig` over `params`; unlisted keys keep TrainConfig's defaults."""

    name: str
    description: str
    epochs: int
    params: tuple[Param, ...] = field(default_factory=tuple)
    source: str = "built-in"  # "built-in" or the file it came from

    def suggest(self, trial: optuna.Trial) -> TrainConfig:

        values: dict[str, Any] = {}
        for p in self.params:
            if any(values.get(k) not in allowed for k, allowed in p.when):
                continue  # a conditional key whose condition failed keeps its default
            values[p.name] = _suggest_one(trial, p)
        values["epochs"] = self.epochs
        return config_from_dict(values)

    def fixed_config(self) -> TrainConfig:
        """The config with every sampled key at its first choice / low bound (a quick check)."""

        values: dict[str, Any] = {}
        for p in self.params:
            if any(values.get(k) not in allowed for k, allowed in p.when):
                continue
            values[p.name] = (
                p.value if p.kind == "fixed" else (p.choices[0] if p.choices else p.low)
            )
        values["epochs"] = self.epochs
        return config_from_dict(values)

    def check(self, where: str) -> None:
        """Every listed choice and both ends of every range must make a valid TrainConfig:
        a bad value fails when the space is read, not in trial 37."""

        base = config_to_dict(self.fixed_config())
        for p in self.params:
            if p.kind == "fixed":
                continue
            values = p.choices if p.kind == "categorical" else (p.low, p.high)
            for v in values:
                trial_values = dict(base, **{k: allowed[0] for k, allowed in p.when}, **{p.name: v})
                try:
                    config_from_dict(trial_values)
                except ConfigError as err:
                    raise ConfigError(
                        f"{where}: key {p.name!r}: value {v!r} is not allowed: {err}"
                    ) from None

    def grid(self) -> dict[str, list] | None:
        """Optuna GridSampler's search space; None when some sampled key has no grid."""
        grid: dict[str, list] = {}
        for p in self.params:
            if p.kind == "fixed":
                continue
            if not p.grid:
                return None
            grid[p.name] = [_optuna_choice(v) for v in p.grid]
        return grid

    def missing_grid(self) -> list[str]:
        return [p.name for p in self.params if p.kind != "fixed" and not p.grid]

    def with_epochs(self, epochs: int) -> Space:
        return replace(self, epochs=epochs)

    def describe(self) -> str:
        width = max((len(p.name) for p in self.params), default=0)
        lines = [
            f"{self.name}: {self.description}",
            f"source: {self.source}",
            f"epochs: {self.epochs} (fixed per study; --epochs overrides)",
            "",
        ]
        for p in self.params:
            lines.append(f"  {p.name:<{width}}  {p.describe()}")
        lines.append("")
        lines.append("  other keys: TrainConfig defaults")
        return "\n".join(lines)


def _suggest_one(trial: optuna.Trial, p: Param) -> Any:
    if p.kind == "fixed":
        return p.value
    if p.kind == "categorical":
        picked = trial.suggest_categorical(p.name, [_optuna_choice(c) for c in p.choices])
        return _from_choice(picked, p.choices)
    assert p.low is not None and p.high is not None  # a range always has both (parse_param)
    if p.kind == "int":
        return trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
    return trial.suggest_float(p.name, float(p.low), float(p.high), step=p.step, log=p.log)
