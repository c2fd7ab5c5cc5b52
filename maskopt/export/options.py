"""`ExportOptions`: everything one `maskopt best --export` is told, and the one home of its
defaults (the command line takes them from here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from maskopt.ensemble.vote import check_vote
from maskopt.errors import ConfigError
from maskopt.search.options import SearchOptions


@dataclass(frozen=True)
class ExportOptions:
    # the study
    study: str = SearchOptions.study
    storage: str = SearchOptions.storage
    # a folder or s3://bucket[/prefix]; None: what the study recorded, else beside the SQLite file
    artifacts: str | None = None
    # the data: None takes what the search recorded (its folder, --skip-bad)
    data: Path | None = None
    skip_bad: bool | None = None
    cache: Path | None = None
    # what to export
    out: Path = Path("bundle")
    top: int = 5  # candidates: the best K complete trials
    vote: str = "soft"
    retrain: bool = True  # each member retrained on all the data; False: its fold models
    tta: bool = False  # hflip test-time augmentation in the bundle
    onnx: bool = False  # also model.onnx (the onnx extra)
    distill: bool = False  # also one student model trained on the ensemble's OOF probabilities
    student: str | None = None  # the student's backbone (default: the best single trial's)
    device: str = "auto"
    # not on the command line
    rounds: int = 25  # greedy selection's picks at most
    average_all: bool = False  # every candidate at equal weight (bench_ensemble's baseline)

    def __post_init__(self) -> None:
        check_vote(self.vote)
        if self.top < 1:
            raise ConfigError(f"--top must be >= 1, but got {self.top}.")
        if self.student is not None and not self.distill:
            raise ConfigError(
                f"--student {self.student} names the distilled student's backbone: add --distill."
            )
        if self.rounds < 1:
            raise ConfigError(f"rounds must be >= 1, but got {self.rounds=}.")
