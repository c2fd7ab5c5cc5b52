"""`maskopt best`'s table: the top trials of a study and the parameters that matter."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna

from maskopt.errors import ConfigError
from maskopt.outputs import check_file_out
from maskopt.store.locations import find_artifact_store
from maskopt.store.records import (
    ModelStore,
    TrialRecord,
    complete_trials,
    count_states,
    kept_models,
    read_trial,
    trial_config,
    varying_params,
)
from maskopt.store.storage import load_study
from maskopt.trainer.config import save_config

MAX_TABLE_PARAMS = 6  # a table row stays readable; --config-out gives the whole config


@dataclass(frozen=True)
class BestTrials:
    rows: list[TrialRecord]  # the top complete trials, best first
    keys: list[str]  # the parameters worth a column (key_params)
    kept: frozenset[int]  # trials whose fold models are all in the artifact store
    counts: dict[str, int]  # the study's trials by state


def key_params(study: optuna.Study, complete: Sequence[optuna.trial.FrozenTrial]) -> list[str]:
    """The parameters that matter: the most important ones by Optuna's parameter importance
    when it can be computed, else those that vary, else all (at most MAX_TABLE_PARAMS)."""

    varying = varying_params(complete)
    if len(complete) >= 2 and varying:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "some regimes have less than 2 trials"
                ranked = list(optuna.importance.get_param_importances(study))
            return ranked[:MAX_TABLE_PARAMS]
        except (ValueError, RuntimeError):  # e.g. dynamic spaces with no common parameter
            pass
    keys = varying or sorted({k for t in complete for k in t.params})
    return keys[:MAX_TABLE_PARAMS]


def top_trials(
    storage: str, study: str, top: int = 5, artifacts: str | os.PathLike | None = None
) -> BestTrials:
    """`maskopt best`: the study's top trials (best_trials), with its artifact store when
    there is one to read (which trials keep their fold models)."""
    found = load_study(storage, study)
    return best_trials(found, top, find_artifact_store(storage, artifacts, found))


def write_trial_config(storage: str, study: str, trial: int, out: str | os.PathLike) -> Path:
    """`maskopt best --trial N --config-out FILE`: the trial's TrainConfig, in the format the
    file's suffix names (refused before the study is read when `out` is a folder)."""
    out = check_file_out(out, "--config-out")
    save_config(trial_config(load_study(storage, study), trial), out)
    return out


def augment_text(record: TrialRecord) -> str:
    """Where the trial augmented, and when `augment_on: auto` measured it, how much faster that
    was than the other placement: "device 1.8x", "cpu", "-" (not recorded: an older study)."""
    p = record.augment_placement
    if not p:
        return "-"
    chosen = str(p.get("chosen"))
    other = {"cpu": "device", "device": "cpu"}.get(chosen)
    rate, other_rate = p.get(f"{chosen}_images_per_s"), p.get(f"{other}_images_per_s")
    if rate is None or not other_rate:
        return chosen
    return f"{chosen} {rate / other_rate:.1f}x"


def best_trials(study: optuna.Study, top: int = 5, store: ModelStore | None = None) -> BestTrials:
    """The top `top` complete trials, their key parameters, which of them keep their fold
    models in `store` (none known without one), and the study's trials by state."""
    if top < 1:
        raise ConfigError(f"--top must be >= 1, but got {top}.")
    trials = study.get_trials(deepcopy=False)
    complete = complete_trials(trials)
    rows = [read_trial(t) for t in complete[:top]]
    kept = {r.number for r in rows if store is not None and kept_models(store, r)}
    return BestTrials(rows, key_params(study, complete), frozenset(kept), count_states(trials))
