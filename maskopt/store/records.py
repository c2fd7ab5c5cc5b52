"""The study format: what `maskopt search` keeps in an Optuna study, and the one way to read it.

Every key below is written by the search (maskopt.search) and read through this module by
everything else (`maskopt best`, `studies`, the export, the search's own summary), so a key
is spelled once. Values are JSON.

Study user attributes, the study's settings. The process that creates the study writes
them once, FOLD_SEED last: a study holding FOLD_SEED holds all of them (see
maskopt.search.study). MUST_MATCH are the ones a resumed or joining search must share,
because trials are only comparable on the same folds and steps.

Trial user attributes. A trial records its worker first (WORKER: host, pid, process start),
its config as soon as it is sampled, and the rest as it goes. Fold models are files in the
artifact store that maskopt owns (they are not Optuna artifacts, so optuna-dashboard lists
only what is kept for good, the OOF probabilities): MODEL_ARTIFACTS lists their ids on the
RUNNING trial before any is written, and whether they still exist is answered by the store
(`kept_models`), never by the list, which a finished trial can no longer change.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from optuna.artifacts.exceptions import ArtifactNotFound

from maskopt.errors import StudyError
from maskopt.trainer.config import config_from_dict

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from maskopt.trainer.config import TrainConfig

# -- study user attributes --------------------------------------------------------------------

DATA_FINGERPRINT = "data_fingerprint"  # TrainSet.fingerprint() of the data searched on
N_FOLDS = "n_folds"  # k of the k-fold CV
SPACE = "space"  # the search space's name
EPOCHS = "epochs"  # epochs per fold (a step's meaning for the pruner)
CROP = "crop"  # center | face
REPORT = "report"  # what a pruning step is: "epoch", or "fold" (wilcoxon)
N_IMAGES = "n_images"  # images in the data (informative)
DATA_DIR = "data_dir"  # the data folder, absolute (informative: `best --export`'s default)
SKIP_BAD = "skip_bad"  # whether --skip-bad dropped people (informative)
ARTIFACTS_DIR = "artifacts_dir"  # the artifact folder or s3:// URL (a hint; --artifacts overrides)
TENSORBOARD_DIR = "tensorboard_dir"  # the creator's TensorBoard folder, absolute (a hint)
FOLD_SEED = "fold_seed"  # seed of the folds; written last, so it marks complete settings

STUDY_KEYS = (
    DATA_FINGERPRINT,
    N_FOLDS,
    SPACE,
    EPOCHS,
    CROP,
    REPORT,
    N_IMAGES,
    DATA_DIR,
    SKIP_BAD,
    ARTIFACTS_DIR,
    TENSORBOARD_DIR,
    FOLD_SEED,
)
# Settings a search must share with the study it resumes or joins, and how to name each.
MUST_MATCH = {
    DATA_FINGERPRINT: "data (files or labels differ)",
    N_FOLDS: "--folds",
    SPACE: "--space",
    EPOCHS: "--epochs",
    CROP: "--crop",
    REPORT: "reporting schedule (--pruner wilcoxon reports per fold, the others per epoch)",
}

# -- trial user attributes --------------------------------------------------------------------

WORKER = "worker"  # {"host", "pid", "start"}: the process running the trial
CONFIG = "config"  # JSON string of the trial's TrainConfig (config_to_dict)
FOLD_F1 = "fold_f1"  # best validation macro F1 per fold (partial when pruned)
FOLD_BEST_EPOCH = "fold_best_epoch"  # 1-based epoch of each fold's best
CLASS_F1 = "class_f1"  # 18 per-class F1 of the pooled out-of-fold predictions
EPOCHS_RUN = "epochs_run"  # fold-epochs trained, over all folds (pruned trials too)
IMAGES_PER_S = "images_per_s"  # training throughput, mean over folds
# where augmentation ran: {"chosen": "cpu" | "device", "cpu_images_per_s", "device_images_per_s"}
# (the rates measured for `augment_on: auto` on a GPU, None when not measured;
# maskopt.trainer.placement.Placement.to_attr). CONFIG keeps what was sampled ("auto").
AUGMENT_PLACEMENT = "augment_placement"
DURATION_S = "duration_s"  # seconds the trial took
OOF_ARTIFACT = "oof_artifact"  # Optuna artifact id of the OOF .npz (probs, labels)
MODEL_ARTIFACTS = "model_artifacts"  # ids of the fold checkpoints in the artifact store
FAIL_REASON = "fail_reason"  # why a FAIL trial failed, in one line
RETRY_OF = "retry_of"  # on a queued rerun: the number of the trial it reruns
RETRIES = "retries"  # on a queued rerun: how many times this config's worker died before

TRIAL_KEYS = (
    WORKER,
    CONFIG,
    FOLD_F1,
    FOLD_BEST_EPOCH,
    CLASS_F1,
    EPOCHS_RUN,
    IMAGES_PER_S,
    AUGMENT_PLACEMENT,
    DURATION_S,
    OOF_ARTIFACT,
    MODEL_ARTIFACTS,
    FAIL_REASON,
    RETRY_OF,
    RETRIES,
)

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
FINISHED = ("COMPLETE", "PRUNED")  # what --trials counts
# A config whose worker died this many times is not queued again: it may be what kills
# workers (out of host memory).
MAX_RETRIES = 3


class ModelStore(Protocol):
    """Where fold models live: the artifact store's file protocol, which Optuna's
    FileSystemArtifactStore and Boto3ArtifactStore both implement."""

    def open_reader(self, artifact_id: str) -> BinaryIO: ...
    def write(self, artifact_id: str, content_body: BinaryIO) -> None: ...
    def remove(self, artifact_id: str) -> None: ...


@dataclass(frozen=True)
class Worker:
    """The process that runs a trial. `start` is the process's start time (clock ticks since
    boot on Linux), so a pid reused by a later process is not taken for the worker; `space`
    names the pid space it lives in (boot id and pid namespace), so two machines or containers
    that share a host name are not taken for one."""

    host: str
    pid: int
    start: int | None
    space: str | None = None

    def to_attr(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "start": self.start, "space": self.space}

    @classmethod
    def from_attr(cls, value: Any) -> Worker | None:
        """None when not recorded (a queued trial); older studies wrote "host:pid"."""
        if isinstance(value, str) and value.rpartition(":")[2].isdigit():
            host, _, pid = value.rpartition(":")
            return cls(host, int(pid), None)
        if not isinstance(value, dict) or "host" not in value or "pid" not in value:
            return None
        start, space = value.get("start"), value.get("space")
        return cls(
            str(value["host"]),
            int(value["pid"]),
            None if start is None else int(start),
            None if space is None else str(space),
        )


@dataclass(frozen=True)
class TrialRecord:
    """One trial of a maskopt study, read from Optuna's FrozenTrial (`read_trial`)."""

    number: int
    state: str  # COMPLETE / PRUNED / FAIL / RUNNING / WAITING
    value: float | None
    params: dict[str, Any]
    config: dict[str, Any] | None  # the TrainConfig as a dict (None before it was sampled)
    fold_f1: tuple[float, ...]
    fold_best_epoch: tuple[int, ...]
    class_f1: tuple[float, ...]
    epochs_run: int | None
    images_per_s: float | None
    augment_placement: dict[str, Any] | None  # AUGMENT_PLACEMENT (None: not recorded)
    duration_s: float | None
    oof_artifact: str | None
    model_artifacts: tuple[str, ...]  # listed fold models: kept_models() says which exist
    fail_reason: str | None
    worker: Worker | None
    retry_of: int | None
    retries: int
    last_step: int | None  # the last step reported (the pruned step of a PRUNED trial)
    started: dt.datetime | None
    completed: dt.datetime | None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def seconds(self) -> float | None:
        """Wall time from start to end (None while running)."""
        if self.started is None or self.completed is None:
            return None
        return (self.completed - self.started).total_seconds()

    @property
    def note(self) -> str:
        """What happened to the trial beyond its state and value, in a few words."""
        parts = []
        if self.state == "FAIL":
            parts.append(self.fail_reason or "its worker stopped (no heartbeat)")
        if self.state == "PRUNED" and self.last_step is not None:
            parts.append(f"pruned at step {self.last_step}")
        if self.retry_of is not None:
            parts.append(f"rerun of trial {self.retry_of}")
        return "; ".join(parts)


def read_trial(t: FrozenTrial) -> TrialRecord:
    """The record of one trial (missing attributes read as None or empty)."""
    attrs = t.user_attrs
    raw = attrs.get(CONFIG)
    config = json.loads(raw) if isinstance(raw, str) else raw
    return TrialRecord(
        number=t.number,
        state=t.state.name,
        value=t.value if t.state.name == "COMPLETE" else None,
        params=dict(t.params),
        config=config,
        fold_f1=tuple(float(v) for v in attrs.get(FOLD_F1) or ()),
        fold_best_epoch=tuple(int(v) for v in attrs.get(FOLD_BEST_EPOCH) or ()),
        class_f1=tuple(float(v) for v in attrs.get(CLASS_F1) or ()),
        epochs_run=_int_or_none(attrs.get(EPOCHS_RUN)),
        images_per_s=_float_or_none(attrs.get(IMAGES_PER_S)),
        augment_placement=attrs.get(AUGMENT_PLACEMENT),
        duration_s=_float_or_none(attrs.get(DURATION_S)),
        oof_artifact=attrs.get(OOF_ARTIFACT),
        model_artifacts=tuple(attrs.get(MODEL_ARTIFACTS) or ()),
        fail_reason=attrs.get(FAIL_REASON),
        worker=Worker.from_attr(attrs.get(WORKER)),
        retry_of=_int_or_none(attrs.get(RETRY_OF)),
        retries=int(attrs.get(RETRIES) or 0),
        last_step=max(t.intermediate_values) if t.intermediate_values else None,
        started=t.datetime_start,
        completed=t.datetime_complete,
    )


def _int_or_none(v: Any) -> int | None:
    return None if v is None else int(v)


def _float_or_none(v: Any) -> float | None:
    return None if v is None else float(v)


# -- queries ----------------------------------------------------------------------------------
# Each takes a study or the trials already read from it (one read serves several queries).


def all_trials(source: optuna.Study | Sequence[FrozenTrial]) -> Sequence[FrozenTrial]:
    get = getattr(source, "get_trials", None)
    return get(deepcopy=False) if get is not None else source  # type: ignore[return-value]


def read_trials(source: optuna.Study | Sequence[FrozenTrial]) -> list[TrialRecord]:
    """Every trial's record, in trial-number order."""
    return [read_trial(t) for t in sorted(all_trials(source), key=lambda t: t.number)]


def count_states(source: optuna.Study | Sequence[FrozenTrial]) -> dict[str, int]:
    """Trials by state name (only the states present)."""
    counts: dict[str, int] = {}
    for t in all_trials(source):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def count_finished(source: optuna.Study | Sequence[FrozenTrial] | Mapping[str, int]) -> int:
    """COMPLETE + PRUNED trials: what --trials counts (of a study, its trials, or the counts
    by state that `count_states` gives)."""
    counts = source if isinstance(source, Mapping) else count_states(source)
    return sum(counts.get(state, 0) for state in FINISHED)


def complete_trials(source: optuna.Study | Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """COMPLETE trials with a finite value, best (highest: studies maximise) first; ties: the
    earlier trial first."""
    done = [
        t
        for t in all_trials(source)
        if t.state.name == "COMPLETE" and t.value is not None and math.isfinite(t.value)
    ]
    return sorted(done, key=lambda t: (-float(t.value), t.number))  # type: ignore[arg-type]


def best_trial(source: optuna.Study | Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The best COMPLETE trial (the earliest of equals), None before any."""
    done = complete_trials(source)
    return done[0] if done else None


def top_k_numbers(source: optuna.Study | Sequence[FrozenTrial], k: int) -> list[int]:
    """Numbers of the k best COMPLETE trials."""
    return [t.number for t in complete_trials(source)[: max(k, 0)]]


def enters_top_k(source: optuna.Study | Sequence[FrozenTrial], value: float, k: int) -> bool:
    """Whether a trial of `value`, finishing now, would be among the k best COMPLETE ones."""
    if k <= 0:
        return False
    done = complete_trials(source)
    return len(done) < k or value > float(done[k - 1].value)  # type: ignore[arg-type]


def varying_params(trials: Sequence[FrozenTrial]) -> list[str]:
    """Parameter names that take more than one value among `trials`, sorted."""
    names = sorted({k for t in trials for k in t.params})
    return [k for k in names if len({repr(t.params.get(k)) for t in trials}) > 1]


def trial_config(study: optuna.Study, number: int) -> TrainConfig:
    """The TrainConfig trial `number` trained with; StudyError if there is none."""

    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        have = f"0..{max(trials)}" if trials else "none"
        raise StudyError(f"study {study.study_name!r} has no trial {number}; trials: {have}.")
    record = read_trial(trials[number])
    if record.config is None:
        raise StudyError(
            f"trial {number} of {study.study_name!r} has no config (state {record.state}); "
            "it may have failed before its config was sampled."
        )
    return config_from_dict(record.config)


@dataclass(frozen=True)
class StudySettings:
    """What a study records when it is made (its user attributes, STUDY_KEYS): the one reader
    (`from_attrs`, `read_settings`) and writer (`to_attrs`, `record_settings`) of them."""

    data_fingerprint: str
    n_folds: int
    space: str
    epochs: int
    crop: str = "center"
    report: str = "epoch"
    n_images: int | None = None
    data_dir: str | None = None  # absent in studies made before maskopt 0.2
    skip_bad: bool = False
    artifacts_dir: str | None = None
    tensorboard_dir: str | None = None
    fold_seed: int = 0

    def to_attrs(self) -> dict[str, Any]:
        """The user attributes, in STUDY_KEYS' order (FOLD_SEED last); None values left out."""
        values = {key: getattr(self, key) for key in STUDY_KEYS}
        return {key: value for key, value in values.items() if value is not None}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> StudySettings | None:
        """The settings a study holds; None until they are complete (FOLD_SEED is written
        last), or in a study maskopt did not make."""
        if FOLD_SEED not in attrs:
            return None
        known = {key: attrs[key] for key in STUDY_KEYS if key in attrs}
        return cls(**known)

    def differ(self, want: StudySettings) -> list[str]:
        """The MUST_MATCH settings in which this study and a search (`want`) differ."""
        return [
            f"{what}: study has {getattr(self, key)!r}, this search {getattr(want, key)!r}"
            for key, what in MUST_MATCH.items()
            if getattr(self, key) != getattr(want, key)
        ]


def read_settings(study: optuna.Study) -> StudySettings:
    """The study's settings; StudyError when it holds none (not made by `maskopt search`)."""
    settings = StudySettings.from_attrs(study.user_attrs)
    if settings is None:
        raise StudyError(
            f"study {study.study_name!r} has no maskopt settings: it was not made by "
            "`maskopt search` (or the search making it stopped before recording them)."
        )
    return settings


def record_settings(study: optuna.Study, settings: StudySettings) -> None:
    """Write the settings in their order (by the process that made the study, only)."""
    for key, value in settings.to_attrs().items():
        study.set_user_attr(key, value)


def kept_models(store: ModelStore, record: TrialRecord) -> tuple[str, ...]:
    """The trial's fold models if every one is in `store` (else none: the set is incomplete
    when the trial left the top K, or its worker died while writing or removing them)."""

    for artifact_id in record.model_artifacts:
        try:
            store.open_reader(artifact_id).close()
        except ArtifactNotFound:
            return ()
    return record.model_artifacts


def requeue(study: optuna.Study, record: TrialRecord, *, died: bool) -> bool:
    """Queue a failed trial's parameters again (RETRY_OF points at it); `died`: its worker died
    (counted in RETRIES, up to MAX_RETRIES). Returns whether it was queued."""
    retries = record.retries + int(died)
    if retries > MAX_RETRIES or not record.params:
        return False
    if any(t.user_attrs.get(RETRY_OF) == record.number for t in study.get_trials(deepcopy=False)):
        return False  # another worker queued it first
    study.enqueue_trial(dict(record.params), user_attrs={RETRY_OF: record.number, RETRIES: retries})
    return True
