"""The k-fold objective: one trial trains its config on every fold of the study's folds.

What is reported, and why. Optuna's MedianPruner compares the trial's BEST value over all
the steps it has reported so far with the median of the other trials' values AT the
current step. Two things follow:
  * a step must mean the same in every trial: epochs and folds are fixed per study, never
    sampled;
  * the reported value should only grow within a trial, so "best so far" and "value at this
    step" are the same number for every trial and the comparison is like for like.
So with --pruner median (and hyperband, none) the k folds train interleaved, one epoch at
a time each (FoldRun.run_epoch), step = epoch (1-based), value = the mean over folds of
each fold's best-so-far validation F1 (monotone). The pruner can stop a bad config after
its first epoch on every fold, instead of after a whole first fold (fold-major steps), and
every fold has had the same training when the trial is judged.
With --pruner wilcoxon the folds run one after the other and step = fold index, value =
that fold's best F1: the WilcoxonPruner pairs the trial's per-fold scores with the best
trial's on the same folds (optuna#4373).

The trial's value is the macro F1 of the pooled out-of-fold predictions (each fold's
best-epoch probabilities), against the true labels (old age = 60 whatever the config
trains with).
"""

from __future__ import annotations

import gc
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.artifacts import upload_artifact

from maskopt.data.labels import NUM_CLASSES, OLD_AGE
from maskopt.data.layout import read_train
from maskopt.errors import ConfigError
from maskopt.search.models import write_fold_models
from maskopt.search.options import SearchOptions
from maskopt.search.tracking.tracker import create_search_tracker
from maskopt.spaces import get_space
from maskopt.store.locations import artifacts_dir_for, create_artifact_store
from maskopt.store.records import (
    AUGMENT_PLACEMENT,
    CLASS_F1,
    CONFIG,
    DURATION_S,
    EPOCHS_RUN,
    FOLD_BEST_EPOCH,
    FOLD_F1,
    IMAGES_PER_S,
    OOF_ARTIFACT,
    StudySettings,
    enters_top_k,
    read_settings,
)
from maskopt.trainer.checkpoint import save_checkpoint
from maskopt.trainer.config import config_to_dict
from maskopt.trainer.device import resolve_device
from maskopt.trainer.folds import create_folds
from maskopt.trainer.loop import FoldRun, LoaderPool
from maskopt.trainer.metrics import compute_metrics, macro_f1

if TYPE_CHECKING:
    from maskopt.search.tracking.tracker import TrialRun
    from maskopt.trainer.config import TrainConfig


class KFoldObjective:
    """Reads the data once per worker; `__call__(trial)` runs one trial, tracked as a run in
    TensorBoard (and W&B / MLflow with --track: search.tracking); `close()` ends tracking."""

    def __init__(self, opts: SearchOptions) -> None:

        self.opts = opts
        self.device = resolve_device(opts.device)
        space = get_space(opts.space)
        self.space = space.with_epochs(opts.epochs) if opts.epochs else space
        self.data = read_train(
            opts.data, skip_bad=opts.skip_bad, crop=opts.crop, cache_dir=opts.cache
        )
        self.labels = self.data.labels(OLD_AGE)
        # Checked once here, before any trial or worker: every trial would fail on it otherwise.
        n_people = len(np.unique(self.data.groups()))
        if not 2 <= opts.folds <= n_people:
            raise ConfigError(
                f"--folds must be in 2..{n_people} (the number of people in {opts.data}), "
                f"but got {opts.folds}."
            )
        self.artifacts = artifacts_dir_for(opts.storage, opts.artifacts)  # folder or s3:// URL
        self._store: Any = None
        self.tracker = create_search_tracker(opts)  # starts nothing before the first trial
        self._folds: list[tuple[np.ndarray, np.ndarray]] | None = None
        # The study's settings (maskopt.search.study records them, and checks the MUST_MATCH
        # ones when a search resumes or joins the study).
        self.settings = StudySettings(
            data_fingerprint=self.data.fingerprint(),
            n_folds=opts.folds,
            space=self.space.name,
            epochs=self.space.epochs,
            crop=opts.crop,
            report=opts.report,
            n_images=len(self.data.records),
            data_dir=str(Path(opts.data).resolve()),
            skip_bad=bool(opts.skip_bad),
        )

    @property
    def store(self) -> Any:
        """The artifact store (its folder is made on first use: not before a trial runs)."""

        if self._store is None:
            self._store = create_artifact_store(self.artifacts)
        return self._store

    def close(self) -> None:
        """End any tracked run left open and release the trackers (the worker ends)."""
        self.tracker.close()

    def folds(self, fold_seed: int) -> list[tuple[np.ndarray, np.ndarray]]:

        if self._folds is None:
            self._folds = create_folds(
                self.data.strata(), self.data.groups(), self.opts.folds, fold_seed
            )
        return self._folds

    def __call__(self, trial: optuna.Trial) -> float:

        started = time.perf_counter()
        fold_seed = read_settings(trial.study).fold_seed
        cfg = replace(self.space.suggest(trial), seed=fold_seed)
        config = config_to_dict(cfg)
        trial.set_user_attr(CONFIG, json.dumps(config))
        folds = self.folds(fold_seed)
        progress: dict[str, Any] = {"epochs_run": 0}
        study = trial.study.study_name
        with self.tracker.trial(study, trial.number, params=trial.params, config=config) as run:
            # One pool of loader processes for the trial (all of this worker's: default_workers),
            # feeding whichever fold trains. Making it resolves augment_on: auto (measured once
            # per worker and shape on a GPU); the trial records what ran.
            pool = LoaderPool(cfg, self.data, self.device)
            trial.set_user_attr(AUGMENT_PLACEMENT, pool.placement.to_attr())
            try:
                if self.opts.report == "fold":
                    results = self._run_fold_major(trial, cfg, folds, progress, run, pool)
                else:
                    results = self._run_interleaved(trial, cfg, folds, progress, run, pool)
            except optuna.TrialPruned:
                trial.set_user_attr(EPOCHS_RUN, progress["epochs_run"])
                trial.set_user_attr(DURATION_S, round(time.perf_counter() - started, 2))
                raise
            finally:
                pool.close()
                gc.collect()
            value = run.value = self._finish(trial, cfg, results, progress, started)
        return value

    # -- the two reporting schedules -------------------------------------------------------

    def _run_interleaved(self, trial, cfg, folds, progress, run: TrialRun, pool) -> list:
        """step = epoch, value = mean over folds of each fold's best-so-far F1 (monotone)."""

        fold_runs = []
        try:
            for train_idx, val_idx in folds:
                fold_runs.append(
                    FoldRun(cfg, self.data, train_idx, val_idx, device=self.device, pool=pool)
                )
            best = [float("-inf")] * len(fold_runs)
            for epoch in range(1, cfg.epochs + 1):
                for k, fold_run in enumerate(fold_runs):
                    row = fold_run.run_epoch()
                    run.log_epoch(k, row["epoch"], row)
                    best[k] = max(best[k], float(row["val_f1"]))
                    progress["epochs_run"] += 1
                value = float(np.mean(best))
                trial.report(value, epoch)
                if trial.should_prune():
                    trial.set_user_attr(FOLD_F1, [round(b, 6) for b in best])
                    run.value = value
                    raise optuna.TrialPruned(
                        f"epoch {epoch}: mean of the folds' best F1 {value:.4f} is below the median"
                    )
            return [fold_run.result() for fold_run in fold_runs]
        finally:
            for fold_run in fold_runs:
                fold_run.close()

    def _run_fold_major(self, trial, cfg, folds, progress, run: TrialRun, pool) -> list:
        """step = fold index, value = that fold's best F1 (for the Wilcoxon pruner)."""

        results = []
        for k, (train_idx, val_idx) in enumerate(folds):
            fold_run = FoldRun(cfg, self.data, train_idx, val_idx, device=self.device, pool=pool)
            try:
                for _ in range(cfg.epochs):
                    row = fold_run.run_epoch()
                    run.log_epoch(k, row["epoch"], row)
                    progress["epochs_run"] += 1
                results.append(fold_run.result())
            finally:
                fold_run.close()
            value = float(results[-1].best_f1 or 0.0)
            trial.report(value, k)
            if trial.should_prune():
                trial.set_user_attr(FOLD_F1, [round(float(r.best_f1 or 0.0), 6) for r in results])
                run.value = value
                raise optuna.TrialPruned(f"fold {k}: worse than the best trial on the same folds")
        return results

    # -- after the last fold ---------------------------------------------------------------

    def _finish(
        self, trial, cfg: TrainConfig, results: list, progress: dict, started: float
    ) -> float:

        n = len(self.labels)
        probs = np.zeros((n, NUM_CLASSES), dtype=np.float32)
        seen = np.zeros(n, dtype=bool)
        for r in results:
            probs[r.val_index] = r.val_probs
            seen[r.val_index] = True
        if not seen.all():  # the folds must cover every image exactly once
            raise RuntimeError(f"out-of-fold predictions cover {seen.sum()} of {n} images.")
        value = macro_f1(self.labels, probs.argmax(axis=1))
        metrics = compute_metrics(self.labels, probs)
        trial.set_user_attr(FOLD_F1, [round(float(r.best_f1), 6) for r in results])
        trial.set_user_attr(FOLD_BEST_EPOCH, [int(r.best_epoch) for r in results])
        trial.set_user_attr(CLASS_F1, [round(float(f), 6) for f in metrics["class_f1"]])
        trial.set_user_attr(EPOCHS_RUN, progress["epochs_run"])
        trial.set_user_attr(
            IMAGES_PER_S, round(float(np.mean([r.images_per_s for r in results])), 1)
        )
        with tempfile.TemporaryDirectory(prefix="maskopt-trial-") as tmp:
            trial.set_user_attr(OOF_ARTIFACT, self._upload_oof(trial, Path(tmp), probs))
            if enters_top_k(trial.study, value, self.opts.keep_models):
                self._write_models(trial, Path(tmp), cfg, results)
        trial.set_user_attr(DURATION_S, round(time.perf_counter() - started, 2))
        return value

    def _upload_oof(self, trial, tmp: Path, probs: np.ndarray) -> str:
        """The OOF probabilities, an Optuna artifact of the trial (optuna-dashboard shows it)."""

        path = tmp / f"oof_trial{trial.number}.npz"
        np.savez_compressed(path, probs=probs, labels=self.labels)
        return upload_artifact(artifact_store=self.store, file_path=str(path), study_or_trial=trial)

    def _write_models(self, trial, tmp: Path, cfg: TrainConfig, results: list) -> list[str]:
        """The fold models, in the store under ids the trial lists first (search.models)."""

        paths = []
        for k, r in enumerate(results):
            path = tmp / f"model_trial{trial.number}_fold{k}.pt"
            save_checkpoint(
                path,
                r.state_dict,
                cfg,
                fold=k,
                trial=trial.number,
                best_f1=float(r.best_f1),
                best_epoch=int(r.best_epoch),
            )
            paths.append(path)
        return write_fold_models(trial, self.store, paths)


def create_objective(opts: SearchOptions) -> KFoldObjective:
    return KFoldObjective(opts)
