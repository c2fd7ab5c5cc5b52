"""K folds by person, stratified on the true gender x age band.

A person's 7 photos are always on one side: validation must score people the
model has never seen. The caller seeds the folds once (a study does), so every
trial sees the same folds and out-of-fold arrays line up.
"""

from __future__ import annotations

import numpy as np

from maskopt.errors import ConfigError


def create_folds(
    strata: np.ndarray, groups: np.ndarray, n_splits: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_idx, val_idx) per fold, each sorted; every index is in exactly one val_idx."""
    from sklearn.model_selection import StratifiedGroupKFold

    strata = np.asarray(strata)
    groups = np.asarray(groups)
    if strata.shape != groups.shape or strata.ndim != 1:
        raise ValueError(
            f"strata and groups must be 1-D and alike, got {strata.shape} and {groups.shape}."
        )
    n_groups = len(np.unique(groups))
    if (
        isinstance(n_splits, bool)
        or not isinstance(n_splits, (int, np.integer))
        or not 2 <= n_splits <= n_groups
    ):
        raise ConfigError(
            f"folds: expected an integer in 2..{n_groups} (the number of people), "
            f"but got {n_splits!r}."
        )
    splitter = StratifiedGroupKFold(n_splits=int(n_splits), shuffle=True, random_state=int(seed))
    folds = []
    for train_idx, val_idx in splitter.split(np.zeros(len(strata)), strata, groups):
        folds.append((np.sort(train_idx).astype(np.int64), np.sort(val_idx).astype(np.int64)))
    return folds
