"""`TrainOptions`: everything one `maskopt train` is told, and the one home of its defaults
(the command line takes them from here; kept free of heavy imports for `maskopt --help`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from maskopt.data.layout import DEFAULT_DATA


@dataclass(frozen=True)
class TrainOptions:
    """Everything one `maskopt train` is told, and the one home of its defaults."""

    config: Path  # a .json / .yaml / .yml / .toml TrainConfig file
    data: Path = DEFAULT_DATA
    crop: str = "center"
    cache: Path | None = None
    skip_bad: bool = False
    fold: int = 0  # the fold validated on (0-based)
    folds: int = 5  # person-grouped, stratified
    fold_seed: int = 0
    full: bool = False  # all the data, no validation
    out: Path | None = None  # None: runs/<config file's name>
    device: str = "auto"

    @property
    def out_dir(self) -> Path:
        return self.out if self.out is not None else Path("runs") / Path(self.config).stem
