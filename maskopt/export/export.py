"""From a finished study to one model: `maskopt best --export`.

The steps, each in its own module:

1. the top K complete trials with their out-of-fold (OOF) probabilities (`candidates`);
2. the members: an ensemble only where, chosen on one part of the people and scored on
   the others, it beats the best single trial with high confidence; else that trial
   alone (`ensemble.choose_ensemble`);
3. hflip TTA measured on OOF with the kept fold models, and inference images/s of each
   option: the trade-off table (`tradeoff`);
4. each member retrained on all the data for the median of its folds' best epochs, with
   a seed of its own, or its fold models kept and averaged (`retrain`);
5. the bundle: checkpoints, OOF reports, plots, eval predictions with the held-out macro
   F1 and its interval, model.onnx on request, and last the manifest, the one record of
   what was exported (`bundle`).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from maskopt import timing
from maskopt.bundle.manifest import (
    BUNDLE,
    STUDENT_ONNX,
    Manifest,
    Member,
    library_versions,
    write_manifest,
)
from maskopt.bundle.onnx_graph import check_exportable, export_onnx
from maskopt.bundle.onnx_runtime import check_onnx
from maskopt.bundle.reports import write_eval, write_oof_report
from maskopt.data.layout import SUBMISSION, read_eval, read_train
from maskopt.ensemble.choice import TARGET_KEYS, choose_ensemble
from maskopt.ensemble.temperature import apply_temperature
from maskopt.ensemble.vote import combine
from maskopt.errors import ConfigError, DataError, StudyError
from maskopt.export.candidates import check_data, fold_checkpoints, load_candidates, study_folds
from maskopt.export.options import ExportOptions
from maskopt.export.plots import PlotsResult, write_plots
from maskopt.export.retrain import copy_fold_models, epoch_cap_note, retrain_config
from maskopt.export.retrain import retrain as retrain_members
from maskopt.export.student import check_student, student_config, teacher_probs, train_student
from maskopt.export.tradeoff import (
    Speeds,
    architecture,
    student_row,
    tradeoff_table,
    tta_oof,
)
from maskopt.outputs import check_out_dir, replace_dir
from maskopt.store.locations import create_artifact_store, study_artifacts_dir
from maskopt.store.records import StudySettings, read_settings
from maskopt.store.storage import load_study
from maskopt.trainer.config import config_to_dict
from maskopt.trainer.device import resolve_device

__all__ = ["ExportReport", "export_best", "retrain_config"]


@dataclass(frozen=True)
class ExportReport:
    """What `export_best` wrote: the bundle's manifest (every fact of the export) and where."""

    out: Path
    manifest: Manifest
    submission: Path | None = None
    plots: PlotsResult | None = None  # what was drawn and what was skipped


def study_data(
    name: str, settings: StudySettings, data_dir: Path | None, skip_bad: bool | None
) -> tuple[Path, bool]:
    """The data folder and --skip-bad to export with: as given, else as the search recorded."""
    if data_dir is None:
        if settings.data_dir is None:
            raise ConfigError(
                f"study {name!r} does not record its data folder (made before "
                "maskopt 0.2): pass --data."
            )
        data_dir = Path(settings.data_dir)
        if not data_dir.is_dir():
            raise DataError(
                f"the folder study {name!r} was searched on, {data_dir}, is not here: pass --data."
            )
    return Path(data_dir), settings.skip_bad if skip_bad is None else skip_bad


def export_best(
    opts: ExportOptions, *, progress: bool = True, echo: Callable[[str], None] = lambda _s: None
) -> ExportReport:
    """`maskopt best --export`: choose, (re)train and write the bundle to `opts.out` (atomically).
    `echo` is told each step as it starts; `progress` shows bars while data is read and models
    train."""

    out, vote, retrain, tta, onnx = opts.out, opts.vote, opts.retrain, opts.tta, opts.onnx
    storage_url, study_name, top = opts.storage, opts.study, opts.top
    check_out_dir(out, BUNDLE)  # before any work: a refusal costs nothing
    if onnx:  # before any work: a missing extra costs nothing
        check_onnx(export=True)
    if opts.student is not None:  # before any work: a misspelt backbone costs nothing
        check_student(opts.student)
    study = load_study(storage_url, study_name)
    settings = read_settings(study)
    data_dir, skip_bad = study_data(study_name, settings, opts.data, opts.skip_bad)
    store = create_artifact_store(study_artifacts_dir(storage_url, opts.artifacts, study))
    crop = settings.crop
    data = read_train(
        data_dir, skip_bad=skip_bad, crop=crop, cache_dir=opts.cache, progress=progress
    )
    check_data(study_name, settings, data, data_dir)
    dev = str(resolve_device(opts.device))
    labels = data.labels()

    with (
        tempfile.TemporaryDirectory(prefix="maskopt-export-") as work_s,
        replace_dir(out, BUNDLE) as folder,
    ):
        work = Path(work_s)
        # 1. candidates
        cands, notes = load_candidates(study, store, data, work, need_models=not retrain)
        echo(f"{len(cands)} complete trial(s) loaded with their OOF predictions")

        # 2. the members, judged out of sample over people
        choice = choose_ensemble(
            [c.oof for c in cands],
            labels,
            data.groups(),
            names=[f"trial {c.number}" for c in cands],
            targets=[{k: getattr(c.config, k) for k in TARGET_KEYS} for c in cands],
            top=top,
            vote=vote,
            rounds=opts.rounds,
        )
        if opts.average_all:  # a baseline: the top trials at equal weight, nothing chosen
            n = min(top, len(cands))
            choice = dataclasses.replace(
                choice,
                members=tuple(range(n)),
                weights=(1 / n,) * n,
                kept=n > 1,
                temperatures=(1.0,) * n,
                decision=f"plain average of the top {n} trial(s), as asked: nothing chosen.",
            )
        chosen = [cands[i] for i in choice.members]
        best = cands[choice.best]
        distilled: tuple | None = None
        if opts.distill and choice.teacher is None:
            notes.append(f"--distill: no student, {choice.teacher_note}")
        elif opts.distill:  # the teacher and the student's config, before any training
            student_cfg = student_config(best, opts.student)
            distilled = (student_cfg, *teacher_probs(choice, cands, vote))
            echo(choice.teacher_note)
        temperature = dict(zip([c.number for c in chosen], choice.temperatures, strict=True))
        ens_oof = combine(
            [apply_temperature(c.oof, temperature[c.number]) for c in chosen],
            choice.weights,
            vote=vote,
        )

        if onnx and retrain:  # an exporter failure must not come after hours of retraining
            check_exportable([c.config for c in chosen], choice.weights, vote=vote, tta=tta)
        if onnx and distilled is not None:
            check_exportable([distilled[0]], [1.0], vote="soft", tta=tta)
        # 3. TTA on OOF (needs the fold models) and the trade-off table
        folds = study_folds(settings, data)
        involved = list({c.number: c for c in [best, *chosen]}.values())
        lacking = [
            c.number for c in involved if not c.fold_models or len(c.fold_models) != len(folds)
        ]
        if not retrain and any(c.number in lacking for c in chosen):  # before any download
            raise StudyError(
                "--no-retrain needs each member's fold models, but trial(s) "
                + ", ".join(str(c.number) for c in chosen if c.number in lacking)
                + " have none kept in the artifact store; export with --retrain."
            )
        if lacking:
            notes.append(
                f"no kept fold models for trial(s) {', '.join(map(str, lacking))} (they left the "
                "search's top K): TTA could not be measured for them."
            )
        fold_cks: dict[int, list[Path]] = {}
        tta_probs = {}
        for c in involved:
            if c.number in lacking:
                continue
            fold_cks[c.number] = fold_checkpoints(c, store, work)
            echo(f"measuring hflip TTA on OOF for trial {c.number}")
            tta_probs[c.number] = tta_oof(c, data, folds, fold_cks[c.number], dev)
        per_member = {c.number: 1 if retrain else len(c.fold_models) for c in [best, *chosen]}
        timed = len({architecture(c.config) for c in involved}) * (2 if onnx else 1)
        echo(
            f"timing inference for the trade-off table: {timed} model(s), with and without "
            f"TTA, about {2 * timing.BUDGET_S:.0f} s each"
        )
        speeds = Speeds(dev)
        tradeoff = tradeoff_table(
            best,
            chosen if choice.kept else [],
            choice.weights,
            per_member,
            tta_probs,
            temperature,
            data,
            vote,
            speeds,
            onnx=onnx,
        )
        if tta and tradeoff[-1].oof_f1 is None:
            notes.append(
                "--tta: the TTA gain could not be measured on OOF (no fold models); "
                "TTA is used anyway."
            )

        # 4. the members' models
        if retrain:
            notes += [note for c in chosen if (note := epoch_cap_note(c))]
            trained = retrain_members(
                chosen, data, folder, device=dev, progress=progress, study=study_name
            )
        else:
            trained = copy_fold_models(chosen, fold_cks, folder)
        student = None
        if distilled is not None:
            student_cfg, soft, teacher_trials, teacher_weights = distilled
            teacher = choice.options[choice.teacher].name if choice.teacher is not None else ""
            echo(f"distilling a student ({student_cfg.backbone}) from {teacher}")
            student = train_student(
                student_cfg,
                data,
                soft,
                folder,
                teacher=teacher,
                teacher_trials=teacher_trials,
                teacher_weights=teacher_weights,
                device=dev,
                progress=progress,
            )
            row = student_row(student_cfg, data, speeds, tta, onnx=onnx)
            tradeoff.append(row)
            student = dataclasses.replace(student, images_per_s=row.images_per_s)
        manifest = Manifest(
            study=study_name,
            vote=vote,
            tta=tta,
            crop=crop,
            members=tuple(
                Member(
                    trial=c.number,
                    weight=float(w),
                    config=config_to_dict(trained[c.number][1]),
                    checkpoints=tuple(trained[c.number][0]),
                    oof_f1=c.oof_f1,
                    retrained=retrain,
                    epochs=trained[c.number][1].epochs,
                    temperature=temperature[c.number],
                )
                for c, w in zip(chosen, choice.weights, strict=True)
            ),
            oof_f1=write_oof_report(folder, labels, ens_oof)["macro_f1"],
            data_fingerprint=settings.data_fingerprint,
            data=str(data_dir.resolve()),
            skip_bad=skip_bad,
            choice=choice.as_dict(),
            candidates=[
                {
                    "trial": c.number,
                    "value": c.value,
                    "oof_f1": c.oof_f1,
                    "has_models": bool(c.fold_models),
                    "fold_best_epoch": list(c.fold_best_epoch),
                    "epochs": c.config.epochs,
                }
                for c in cands
            ],
            tradeoff=[dataclasses.asdict(r) for r in tradeoff],
            storage=storage_url,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            versions=library_versions(),
            student=student,
        )

        # 5. the bundle: plots, eval outputs, the ONNX graph, and the manifest last
        plots = write_plots(study, folder / "plots.html")
        ev = read_eval(data_dir, crop=crop, cache_dir=opts.cache, progress=progress)
        submission = None
        if ev is not None:
            echo(f"predicting {len(ev)} eval images")
            scores = write_eval(folder, manifest, ev, device=dev)
            manifest = dataclasses.replace(
                manifest, heldout=scores.heldout, heldout_members=scores.members
            )
            if manifest.student is not None:
                manifest = dataclasses.replace(
                    manifest, student=dataclasses.replace(manifest.student, heldout=scores.student)
                )
            submission = Path(out) / SUBMISSION
        else:
            notes.append(f"no eval/ folder in {data_dir}: no submission.csv and no held-out score.")
        if onnx:
            echo("exporting the ensemble to model.onnx")
            export_onnx(folder, manifest=manifest)
            if manifest.student is not None:
                echo(f"exporting the student to {STUDENT_ONNX}")
                export_onnx(folder, manifest=manifest.student_manifest(), out=folder / STUDENT_ONNX)
        manifest = dataclasses.replace(manifest, notes=notes)
        # the manifest last: a folder without it is not a bundle
        write_manifest(folder, manifest)
    return ExportReport(out=Path(out), manifest=manifest, submission=submission, plots=plots)
