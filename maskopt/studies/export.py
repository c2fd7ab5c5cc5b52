"""From a finished study to one model: the best trials, the ensemble, the bundle.

`export_best` is `maskopt best --export`:

1. the top K complete trials and their saved out-of-fold (OOF) probabilities;
2. greedy forward selection with replacement on OOF macro F1 (soft or hard votes);
   the ensemble is kept only if it beats the best single trial, else that trial alone;
3. hflip TTA measured on OOF with the trials' kept fold models, and inference
   images/s of each option (the trade-off table);
4. each chosen member retrained on all the data for the median of its folds' best
   epochs (or its fold models kept and averaged, `retrain=False`);
5. the bundle: checkpoints, manifest, OOF per-class F1 and confusion matrix, plots,
   submission.csv and the held-out macro F1 when the data has an eval set.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from maskopt.errors import ConfigError, StudyError
from maskopt.studies import bundle as bundles
from maskopt.studies.ensemble import Selection, check_vote, combine, greedy_select, member_scores
from maskopt.studies.records import (
    CROP,
    DATA_FINGERPRINT,
    FOLD_BEST_EPOCH,
    FOLD_SEED,
    N_FOLDS,
    N_IMAGES,
    complete_trials,
    kept_models,
    read_trial,
)

if TYPE_CHECKING:
    import optuna

    from maskopt.data.layout import TrainSet
    from maskopt.trainer.config import TrainConfig

log = logging.getLogger(__name__)

OPTIMISM_NOTE = (
    "The ensemble's weights were chosen on these same OOF predictions, so its OOF F1 is "
    "optimistic; the held-out F1 (eval/solution.csv) is the honest number."
)
THROUGHPUT_IMAGES = 128  # images timed per model for the images/s column


# ---------------------------------------------------------------------------- export


@dataclass
class Candidate:
    """A top trial with what the export needs from the study."""

    trial: optuna.trial.FrozenTrial
    config: TrainConfig
    oof: np.ndarray  # (N, 18) float32 OOF probabilities in TrainSet order
    oof_f1: float
    fold_models: list[str]  # artifact ids, one per fold (empty when pushed out of the top K)
    tta_oof: np.ndarray | None = None  # OOF probabilities with hflip TTA (from the fold models)

    @property
    def number(self) -> int:
        return self.trial.number


@dataclass(frozen=True)
class TradeOff:
    """One row of the trade-off table."""

    name: str
    oof_f1: float | None  # None: could not be measured (no kept fold models for TTA)
    images_per_s: float | None
    models: int  # forward passes per image: models x (2 with TTA)


@dataclass
class ExportReport:
    """What `export_best` did, for the CLI to render (everything is also in the manifest)."""

    out: Path
    study: str
    vote: str
    candidates: list[dict[str, Any]]  # trial, oof_f1, value, has_models
    plain_average_f1: float
    selection: Selection
    ensemble_kept: bool
    decision: str  # why the ensemble or the single model
    members: list[bundles.Member]
    oof_f1: float  # the exported combination's OOF macro F1 (without TTA)
    tta: bool
    tradeoff: list[TradeOff]
    heldout_f1: float | None = None
    heldout_member_f1: dict[int, float] = field(default_factory=dict)
    submission: Path | None = None
    plots: Any = None
    notes: list[str] = field(default_factory=list)


def _progress_enabled(progress: bool) -> bool:
    return progress and sys.stderr.isatty()


def _download(store: Any, artifact_id: str, path: Path) -> Path:
    from optuna.artifacts import download_artifact

    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # optuna refuses to overwrite
    try:
        download_artifact(artifact_store=store, file_path=str(path), artifact_id=artifact_id)
    except Exception as err:  # the store's own errors vary (missing file, permissions)
        raise StudyError(
            f"cannot read artifact {artifact_id} from the artifact store: {err}"
        ) from None
    return path


def _check_data(study: optuna.Study, data: TrainSet, data_dir: Path) -> None:
    attrs = study.user_attrs
    want = attrs.get(DATA_FINGERPRINT)
    if want is None:
        raise StudyError(
            f"study {study.study_name!r} has no data_fingerprint: "
            "it was not made by maskopt search."
        )
    have = data.fingerprint()
    if have != want:
        diffs = [f"fingerprint {have} here, {want} in the study"]
        if attrs.get(N_IMAGES) is not None and attrs[N_IMAGES] != len(data):
            diffs.append(f"{len(data)} images here, {attrs[N_IMAGES]} in the study")
        raise StudyError(
            f"data {data_dir} is not the data study {study.study_name!r} was searched on ("
            + "; ".join(diffs)
            + "): folds and OOF predictions would not line up. Pass the study's --data."
        )


def _load_candidates(
    study: optuna.Study, store: Any, data: TrainSet, top: int, work: Path
) -> tuple[list[Candidate], np.ndarray, list[str]]:
    from maskopt.trainer.config import config_from_dict

    labels = data.labels()
    notes: list[str] = []
    out: list[Candidate] = []
    for t in complete_trials(study)[:top]:
        record = read_trial(t)
        if not record.oof_artifact or record.config is None:
            notes.append(f"trial {t.number} left out: no saved OOF predictions or config.")
            continue
        with np.load(_download(store, record.oof_artifact, work / f"oof-{t.number}.npz")) as z:
            probs, oof_labels = z["probs"].astype(np.float32), z["labels"]
        if probs.shape != (len(data), 18) or not np.array_equal(oof_labels, labels):
            raise StudyError(
                f"trial {t.number}'s OOF predictions do not match the data: shape {probs.shape}, "
                f"expected ({len(data)}, 18) with the same labels in TrainSet order."
            )
        cfg = config_from_dict(record.config)
        out.append(Candidate(t, cfg, probs, 0.0, list(kept_models(store, record))))
    if not out:
        raise StudyError(
            f"study {study.study_name!r} has no complete trial with saved OOF predictions; "
            "run `maskopt search` first (or longer)."
        )
    for c, f1 in zip(out, member_scores([c.oof for c in out], labels), strict=True):
        c.oof_f1 = f1
    return out, labels, notes


def _folds(study: optuna.Study, data: TrainSet) -> list[tuple[np.ndarray, np.ndarray]]:
    from maskopt.trainer.folds import create_folds

    attrs = study.user_attrs
    return create_folds(data.strata(), data.groups(), int(attrs[N_FOLDS]), int(attrs[FOLD_SEED]))


def _fold_checkpoints(c: Candidate, store: Any, work: Path) -> list[Path]:
    return [
        _download(store, art, work / f"trial-{c.number}-fold-{k}.pt")
        for k, art in enumerate(c.fold_models)
    ]


def _tta_oof(
    c: Candidate, data: TrainSet, folds: list, checkpoints: list[Path], device: str
) -> np.ndarray:
    """OOF probabilities with hflip TTA: each fold model on its own validation images."""
    from maskopt.trainer.checkpoint import load_model, read_checkpoint
    from maskopt.trainer.predict import predict_probs

    images = data.images(c.config.image_size)
    out = np.zeros_like(c.oof)
    for k, ck in enumerate(checkpoints):
        fold = read_checkpoint(ck).get("fold", k)
        _, val_idx = folds[int(fold)]
        model, _ = load_model(ck, device=device)
        out[val_idx] = predict_probs(model, images[val_idx], device=device, tta=True)
        del model
    return out


def _images_per_s(cfg: TrainConfig, images: np.ndarray, device: Any, tta: bool) -> float:
    """Inference throughput of one model of this config (weights do not change speed)."""
    from maskopt.trainer.models import create_model
    from maskopt.trainer.predict import predict_probs

    model = create_model(dataclasses.replace(cfg, pretrained=False, weights=None), device)
    predict_probs(model, images[:8], device=device, tta=tta)  # warm-up (allocations, cudnn)
    best = math.inf
    for _ in range(3):  # the fastest of three: other processes only ever slow a run down
        start = time.perf_counter()
        predict_probs(model, images, device=device, tta=tta)
        best = min(best, time.perf_counter() - start)
    return len(images) / max(best, 1e-9)


def retrain_config(cfg: TrainConfig, fold_best_epoch: Sequence[int]) -> TrainConfig:
    """The config for training on all the data: epochs = median of the folds' best epochs
    (rounded up), so its schedule is laid out for that length."""
    if not fold_best_epoch:
        return cfg
    epochs = max(1, int(math.ceil(float(np.median(fold_best_epoch)))))
    return dataclasses.replace(
        cfg,
        epochs=epochs,
        warmup_epochs=min(cfg.warmup_epochs, epochs - 1),
        freeze_epochs=min(cfg.freeze_epochs, epochs),
    )


def _retrain(
    members: list[Candidate], data: TrainSet, folder: Path, device: str, progress: bool, study: str
) -> dict[int, tuple[list[str], TrainConfig]]:
    """Train each member's config on all the data (median best epochs); checkpoints by trial."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from maskopt.trainer.checkpoint import save_checkpoint
    from maskopt.trainer.loop import fit

    cfgs = {
        c.number: retrain_config(c.config, c.trial.user_attrs.get(FOLD_BEST_EPOCH, []))
        for c in members
    }
    out: dict[int, tuple[list[str], TrainConfig]] = {}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not _progress_enabled(progress)) as bar:
        task = bar.add_task(
            "retraining on all data (epochs)", total=sum(c.epochs for c in cfgs.values())
        )
        for c in members:
            cfg = cfgs[c.number]
            bar.update(
                task, description=f"retraining trial {c.number} on all data ({cfg.epochs} epochs)"
            )
            log.info(
                "retraining trial %d on all %d images for %d epochs",
                c.number,
                len(data),
                cfg.epochs,
            )
            result = fit(cfg, data, fold=None, on_epoch=lambda _m: bar.advance(task), device=device)
            rel = f"models/trial-{c.number}.pt"
            save_checkpoint(
                folder / rel, result.state_dict, cfg, trial=c.number, study=study, retrained=True
            )
            out[c.number] = ([rel], cfg)
    return out


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _write_oof_report(folder: Path, labels: np.ndarray, probs: np.ndarray) -> dict:
    from maskopt.data.labels import CLASS_NAMES
    from maskopt.trainer.metrics import compute_metrics

    m = compute_metrics(labels, probs)
    (folder / "oof_metrics.json").write_text(json.dumps(m, indent=1) + "\n")
    _write_csv(
        folder / "oof_per_class.csv",
        ["class", "name", "precision", "recall", "f1", "support"],
        [
            [
                r["class"],
                r["name"],
                f"{r['precision']:.4f}",
                f"{r['recall']:.4f}",
                f"{r['f1']:.4f}",
                r["support"],
            ]
            for r in m["per_class"]
        ],
    )
    _write_csv(
        folder / "oof_confusion.csv",
        ["truth \\ predicted", *CLASS_NAMES],
        [[CLASS_NAMES[i], *row] for i, row in enumerate(m["confusion"])],
    )
    return m


def _choose(
    cands: list[Candidate], labels: np.ndarray, vote: str, rounds: int
) -> tuple[Selection, bool, str]:
    sel = greedy_select([c.oof for c in cands], labels, rounds=rounds, vote=vote)
    best = cands[int(np.argmax([c.oof_f1 for c in cands]))]
    if len(sel.members) > 1 and sel.score > best.oof_f1:
        picks = ", ".join(f"trial {cands[i].number} x{n}" for i, n in enumerate(sel.counts) if n)
        return (
            sel,
            True,
            (
                f"ensemble of {len(sel.members)} trials ({picks}) kept: "
                f"OOF macro F1 {sel.score:.4f} "
                f"beats the best single trial {best.number} ({best.oof_f1:.4f})."
            ),
        )
    why = (
        "only one complete trial to choose from"
        if len(cands) == 1
        else "adding any other trial's votes did not raise the OOF macro F1 "
        f"above {best.oof_f1:.4f}"
    )
    single = Selection(
        counts=tuple(int(c is best) for c in cands),
        weights=tuple(float(c is best) for c in cands),
        score=best.oof_f1,
        history=(best.oof_f1,),
        order=(cands.index(best),),
        vote=vote,
    )
    return single, False, f"best single trial {best.number} exported: {why}."


def _measure_tta(
    need: list[Candidate],
    study: optuna.Study,
    store: Any,
    data: TrainSet,
    work: Path,
    device: str,
    echo: Callable[[str], None],
    notes: list[str],
) -> dict[int, list[Path]]:
    """Download the fold models of `need` and set each one's `tta_oof`; returns the
    checkpoints by trial number (absent: no kept fold models)."""
    folds = _folds(study, data) if N_FOLDS in study.user_attrs else None
    fold_cks: dict[int, list[Path]] = {}
    for c in need:
        if not c.fold_models or folds is None:
            continue
        if len(c.fold_models) != len(folds):
            notes.append(
                f"trial {c.number}: {len(c.fold_models)} fold models for {len(folds)} folds."
            )
            continue
        fold_cks[c.number] = _fold_checkpoints(c, store, work)
        echo(f"measuring hflip TTA on OOF for trial {c.number}")
        c.tta_oof = _tta_oof(c, data, folds, fold_cks[c.number], device)
    missing = [str(c.number) for c in need if c.number not in fold_cks]
    if missing:
        notes.append(
            f"no kept fold models for trial(s) {', '.join(missing)} (they left the search's "
            "top K): TTA could not be measured for them."
        )
    return fold_cks


def _tradeoff(
    best: Candidate,
    ensemble: list[Candidate],
    weights: list[float],
    models_per_member: dict[int, int],
    data: TrainSet,
    labels: np.ndarray,
    vote: str,
    device: str,
) -> list[TradeOff]:
    """OOF macro F1 against inference images/s: best single, ensemble (if any), each with TTA.
    Speed is measured per config and combined: an image goes through every model."""
    from maskopt.trainer.metrics import macro_f1

    speed: dict[tuple[int, bool], float] = {}
    for c in {c.number: c for c in [best, *ensemble]}.values():
        imgs = np.asarray(data.images(c.config.image_size)[:THROUGHPUT_IMAGES])
        for tta in (False, True):
            speed[(c.number, tta)] = _images_per_s(c.config, imgs, device, tta)

    def ips(group: list[Candidate], tta: bool) -> float:
        return 1.0 / sum(models_per_member[c.number] / speed[(c.number, tta)] for c in group)

    def tta_f1(group: list[Candidate], ws: list[float]) -> float | None:
        if any(c.tta_oof is None for c in group):
            return None
        p = combine([c.tta_oof for c in group], ws, vote=vote)  # type: ignore[misc]
        return float(macro_f1(labels, p.argmax(1)))

    n = models_per_member[best.number]
    rows = [
        TradeOff(f"best single (trial {best.number})", best.oof_f1, ips([best], False), n),
        TradeOff("best single + TTA", tta_f1([best], [1.0]), ips([best], True), 2 * n),
    ]
    if ensemble:
        n = sum(models_per_member[c.number] for c in ensemble)
        f1 = float(
            macro_f1(labels, combine([c.oof for c in ensemble], weights, vote=vote).argmax(1))
        )
        rows += [
            TradeOff(f"ensemble ({len(ensemble)} trials)", f1, ips(ensemble, False), n),
            TradeOff("ensemble + TTA", tta_f1(ensemble, weights), ips(ensemble, True), 2 * n),
        ]
    return rows


def _copy_fold_models(
    chosen: list[Candidate], fold_cks: dict[int, list[Path]], folder: Path
) -> dict[int, tuple[list[str], TrainConfig]]:
    out: dict[int, tuple[list[str], TrainConfig]] = {}
    for c in chosen:
        rels = []
        for k, src in enumerate(fold_cks[c.number]):
            rel = f"models/trial-{c.number}-fold-{k}.pt"
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            src.replace(folder / rel)
            rels.append(rel)
        out[c.number] = (rels, c.config)
    return out


def _write_eval(
    folder: Path, manifest: bundles.Manifest, ev: Any, device: str, report: ExportReport
) -> None:
    """submission.csv, eval_probs.npz and (with solution.csv) the held-out macro F1s."""
    from maskopt.trainer.metrics import macro_f1

    member_p = [
        bundles.member_probs(
            folder, m, ev.images(int(m.config["image_size"])), tta=manifest.tta, device=device
        )
        for m in manifest.members
    ]
    probs = combine(member_p, manifest.weights, vote=manifest.vote).astype(np.float32)
    np.savez_compressed(folder / "eval_probs.npz", probs=probs, image_ids=np.array(ev.image_ids))
    _write_csv(
        folder / "submission.csv",
        ["ImageID", "ans"],
        [[i, int(a)] for i, a in zip(ev.image_ids, probs.argmax(1), strict=True)],
    )
    report.submission = report.out / "submission.csv"
    if ev.solution is not None:
        report.heldout_f1 = float(macro_f1(ev.solution, probs.argmax(1)))
        report.heldout_member_f1 = {
            m.trial: float(macro_f1(ev.solution, p.argmax(1)))
            for m, p in zip(manifest.members, member_p, strict=True)
        }


def export_best(
    *,
    storage_url: str,
    study_name: str,
    data_dir: Path,
    out: Path,
    artifacts: str | Path | None = None,  # a folder or an s3:// URL (storage.study_artifacts_dir)
    top: int = 5,
    vote: str = "soft",
    retrain: bool = True,
    tta: bool = False,
    onnx: bool = False,  # also write model.onnx (onnx_bundle.py)
    device: str = "auto",
    cache_dir: Path | None = None,
    rounds: int = 25,
    progress: bool = True,
    echo: Callable[[str], None] = lambda _s: None,
) -> ExportReport:
    """`maskopt best --export`: choose, (re)train and write the bundle to `out` (atomically)."""
    from maskopt.data.layout import read_eval, read_train
    from maskopt.studies.plots import write_plots
    from maskopt.studies.storage import create_artifact_store, load_study, study_artifacts_dir
    from maskopt.trainer.device import resolve_device
    from maskopt.trainer.metrics import macro_f1

    check_vote(vote)
    if top < 1:
        raise ConfigError(f"--top must be >= 1, but got {top}.")
    if onnx:
        from maskopt.studies.onnx_bundle import check_exportable, check_onnx, export_onnx

        check_onnx(export=True)  # a missing extra fails before any work
    study = load_study(storage_url, study_name)
    attrs = study.user_attrs
    store = create_artifact_store(study_artifacts_dir(storage_url, artifacts, study))
    crop = attrs.get(CROP, "center")
    data = read_train(data_dir, crop=crop, cache_dir=cache_dir, progress=progress)
    _check_data(study, data, Path(data_dir))
    dev = str(resolve_device(device))

    with (
        tempfile.TemporaryDirectory(prefix="maskopt-export-") as work_s,
        bundles.staging(out) as folder,
    ):
        work = Path(work_s)
        cands, labels, notes = _load_candidates(study, store, data, top, work)
        echo(f"{len(cands)} candidate trial(s) loaded with their OOF predictions")
        plain = float(macro_f1(labels, combine([c.oof for c in cands], vote=vote).argmax(1)))
        sel, kept, decision = _choose(cands, labels, vote, rounds)
        chosen = [cands[i] for i in sel.members]
        best_single = cands[int(np.argmax([c.oof_f1 for c in cands]))]
        ens_oof = combine([c.oof for c in chosen], [sel.weights[i] for i in sel.members], vote=vote)
        ens_f1 = float(macro_f1(labels, ens_oof.argmax(1)))

        # TTA on OOF needs the fold models of the trials involved.
        need = {c.number: c for c in [best_single, *chosen]}
        fold_cks = _measure_tta(list(need.values()), study, store, data, work, dev, echo, notes)
        if not retrain:
            lacking = [c.number for c in chosen if c.number not in fold_cks]
            if lacking:
                raise StudyError(
                    "--no-retrain needs each member's fold models, but trial(s) "
                    + ", ".join(map(str, lacking))
                    + " have none kept in the artifact store; export with --retrain."
                )

        ws = [sel.weights[i] for i in sel.members]
        models_per_member = {c.number: 1 if retrain else len(c.fold_models) for c in need.values()}
        tradeoff = _tradeoff(
            best_single, chosen if kept else [], ws, models_per_member, data, labels, vote, dev
        )
        if tta and tradeoff[-1].oof_f1 is None:
            notes.append(
                "--tta: the TTA gain could not be measured on OOF (no fold models); "
                "TTA is used anyway."
            )

        if onnx and retrain:  # an exporter failure must not come after hours of retraining
            check_exportable([c.config for c in chosen], ws, vote=vote, tta=tta)
        # the members' models: retrained on all data, or the fold models
        if retrain:
            trained = _retrain(chosen, data, folder, dev, progress, study_name)
        else:
            trained = _copy_fold_models(chosen, fold_cks, folder)
        members = tuple(
            bundles.Member(
                trial=c.number,
                weight=float(w),
                config=_config_dict(trained[c.number][1]),
                checkpoints=tuple(trained[c.number][0]),
                oof_f1=c.oof_f1,
                retrained=retrain,
                epochs=trained[c.number][1].epochs,
            )
            for c, w in zip(chosen, ws, strict=True)
        )

        _write_oof_report(folder, labels, ens_oof)
        plots = write_plots(study, folder / "plots.html")
        report = ExportReport(
            out=Path(out),
            study=study_name,
            vote=vote,
            candidates=[
                {
                    "trial": c.number,
                    "value": c.trial.value,
                    "oof_f1": c.oof_f1,
                    "has_models": bool(c.fold_models),
                }
                for c in cands
            ],
            plain_average_f1=plain,
            selection=sel,
            ensemble_kept=kept,
            decision=decision,
            members=list(members),
            oof_f1=ens_f1,
            tta=tta,
            tradeoff=tradeoff,
            plots=plots,
            notes=notes,
        )
        manifest = bundles.Manifest(
            study=study_name,
            vote=vote,
            tta=tta,
            crop=crop,
            members=members,
            oof_f1=ens_f1,
            data_fingerprint=attrs[DATA_FINGERPRINT],
            versions=bundles.library_versions(),
            info={},
        )

        # the eval set: submission.csv and, with solution.csv, the held-out macro F1
        ev = read_eval(data_dir, crop=crop, cache_dir=cache_dir, progress=progress)
        if ev is not None:
            echo(f"predicting {len(ev)} eval images")
            _write_eval(folder, manifest, ev, dev, report)
        else:
            notes.append(f"no eval/ folder in {data_dir}: no submission.csv and no held-out score.")

        info = {
            "decision": decision,
            "ensemble_kept": kept,
            "optimism": OPTIMISM_NOTE,
            "candidates": report.candidates,
            "plain_average_oof_f1": plain,
            "selection": dataclasses.asdict(sel),
            "tradeoff": [dataclasses.asdict(r) for r in tradeoff],
            "heldout_f1": report.heldout_f1,
            "heldout_member_f1": report.heldout_member_f1,
            "plots": {"made": plots.made, "skipped": plots.skipped},
            "notes": notes,
            "data": str(Path(data_dir).resolve()),
            "storage": storage_url,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if onnx:
            echo("exporting the ensemble to model.onnx")
            export_onnx(folder, manifest=manifest)
        # the manifest last: a folder without it is not a bundle
        bundles.write_manifest(folder, dataclasses.replace(manifest, info=info))
    return report


def _config_dict(cfg: TrainConfig) -> dict[str, Any]:
    from maskopt.trainer.config import config_to_dict

    return config_to_dict(cfg)
