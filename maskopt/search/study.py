"""Create a study, or resume one after checking it was made for the same data, folds and space."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from maskopt.errors import StudyError
from maskopt.search.options import SearchOptions

if TYPE_CHECKING:
    import optuna
    from optuna.storages import RDBStorage

# Attributes that must match for trials to be comparable (same folds, same steps).
MUST_MATCH = ("data_fingerprint", "n_folds", "space", "epochs", "crop", "report")
WHAT = {
    "data_fingerprint": "data (files or labels differ)",
    "n_folds": "--folds",
    "space": "--space",
    "epochs": "--epochs",
    "crop": "--crop",
    "report": "reporting schedule (--pruner wilcoxon reports per fold, the others per epoch)",
}


def open_study(
    opts: SearchOptions,
    storage: RDBStorage,
    study_attrs: dict[str, Any],
    artifacts_dir: str | None = None,
) -> optuna.Study:
    """The study `opts.study` in `storage`: created with `study_attrs` and the fold seed, or
    loaded and checked; StudyError naming every attribute that differs."""
    import optuna

    study = optuna.create_study(
        study_name=opts.study, storage=storage, direction="maximize", load_if_exists=True
    )
    attrs = study.user_attrs
    if "fold_seed" not in attrs:
        # A fixed default (0), not a random one: workers on many machines that create the
        # study at the same moment must agree on the folds.
        study.set_user_attr("fold_seed", int(opts.seed or 0))
        for key, value in study_attrs.items():
            study.set_user_attr(key, value)
        if artifacts_dir is not None:
            study.set_user_attr("artifacts_dir", str(artifacts_dir))
        return study
    differ = [
        f"{WHAT.get(key, key)}: study has {attrs.get(key)!r}, this search {study_attrs[key]!r}"
        for key in MUST_MATCH
        if key in study_attrs and key in attrs and attrs[key] != study_attrs[key]
    ]
    if differ:
        raise StudyError(
            f"study {opts.study!r} was made with other settings, so its trials are not comparable "
            f"with this search ({'; '.join(differ)}). Use the same settings, or another --study."
        )
    return study
