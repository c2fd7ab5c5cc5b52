"""`best --export --distill`: one student model with (most of) the ensemble's accuracy at a
single model's inference cost.

The student trains on ALL the training images with soft targets: the teacher's out-of-fold
probabilities, so no image's target comes from a model that trained on that image (Hinton et
al. 2015; the loss and its fixed temperature and weight are in maskopt.trainer.losses). The
teacher is the exported ensemble, or, when the export is a single model, the best average of
the top trials (`Choice.teacher`): a student needs a teacher better than itself.

Its config is the best single trial's (or, with --student BACKBONE, the same with that
backbone: the course's speed / accuracy trade-off), trained for that trial's retrain epochs
with a seed of its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from maskopt.bundle.manifest import STUDENT_DIR, Student
from maskopt.data.layout import TrainSet
from maskopt.ensemble.choice import Choice
from maskopt.ensemble.temperature import apply_temperature
from maskopt.ensemble.vote import combine
from maskopt.errors import ConfigError
from maskopt.export.candidates import Candidate
from maskopt.export.retrain import retrain_config
from maskopt.progress import progress_bar
from maskopt.trainer.checkpoint import save_checkpoint
from maskopt.trainer.config import TrainConfig, check_backbone, config_from_dict, config_to_dict
from maskopt.trainer.loop import fit
from maskopt.trainer.losses import DISTILL_ALPHA, DISTILL_T

CHECKPOINT = f"{STUDENT_DIR}/model.pt"
SEED_OFFSET = 10_000  # the student's seed: apart from every member's (retrain.member_seed)


def check_student(backbone: str) -> None:
    """ConfigError naming --student when timm has no such model (before any work)."""
    try:
        check_backbone(backbone)
    except ConfigError as err:
        raise ConfigError(f"--student {backbone}: {err}") from None


def student_config(best: Candidate, backbone: str | None = None) -> TrainConfig:
    """The best single trial's config for its retrain epochs, with a seed of the student's own,
    and `backbone` in place of its own when given (ConfigError naming --student if timm has
    no such model)."""
    cfg = retrain_config(best.config, best.fold_best_epoch)
    cfg = dataclasses.replace(cfg, seed=(best.config.seed + SEED_OFFSET) % 2**32)
    if backbone is None or backbone == cfg.backbone:
        return cfg
    try:
        # another backbone: a weights file of the old one does not fit it
        return config_from_dict({**config_to_dict(cfg), "backbone": backbone, "weights": None})
    except ConfigError as err:
        raise ConfigError(f"--student {backbone}: {err}") from None


def teacher_probs(
    choice: Choice, candidates: Sequence[Candidate], vote: str
) -> tuple[np.ndarray, tuple[int, ...], tuple[float, ...]]:
    """The teacher's out-of-fold probabilities (N, C) and its trials and weights; ConfigError
    when there is no ensemble to learn from."""
    if choice.teacher is None:
        raise ConfigError(
            f"--distill needs an ensemble to learn from, but {choice.teacher_note} Export "
            "without --distill."
        )
    option = choice.options[choice.teacher]
    temperatures = dict(zip(choice.members, choice.temperatures, strict=True))
    same = option.members == choice.members  # the export itself: its temperatures too
    probs = [
        apply_temperature(candidates[i].oof, temperatures[i] if same else 1.0)
        for i in option.members
    ]
    # a hard vote's shares are not probabilities: the student learns the soft mean
    mean = combine(probs, option.weights, vote="soft" if vote == "hard" else vote)
    trials = tuple(candidates[i].number for i in option.members)
    return np.asarray(mean, dtype=np.float32), trials, option.weights


def train_student(
    cfg: TrainConfig,
    data: TrainSet,
    soft_targets: np.ndarray,
    folder: Path,
    *,
    teacher: str,
    teacher_trials: Sequence[int],
    teacher_weights: Sequence[float],
    device: str,
    progress: bool,
) -> Student:
    """Train the student on every image of `data` and save it in the bundle `folder`."""
    with progress_bar(enabled=progress, transient=False) as bar:
        task = bar.add_task(f"distilling a student ({cfg.backbone})", total=cfg.epochs)
        result = fit(
            cfg,
            data,
            fold=None,
            on_epoch=lambda _m: bar.advance(task),
            device=device,
            soft_targets=soft_targets,
        )
    save_checkpoint(folder / CHECKPOINT, result.state_dict, cfg, student=True)
    return Student(
        config=config_to_dict(cfg),
        checkpoint=CHECKPOINT,
        epochs=cfg.epochs,
        teacher=teacher,
        teacher_trials=tuple(int(t) for t in teacher_trials),
        teacher_weights=tuple(float(w) for w in teacher_weights),
        temperature=DISTILL_T,
        alpha=DISTILL_ALPHA,
    )
