"""How the commands show what the library returned: rich tables and lines, and errors as one
line with an exit code. Nothing here computes a result."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from maskopt.errors import MaskoptError

if TYPE_CHECKING:
    from maskopt.bundle.predict import Prediction
    from maskopt.data.eda import EdaSummary
    from maskopt.data.synth import SynthSummary
    from maskopt.export.export import ExportReport
    from maskopt.search.runner import SearchSummary
    from maskopt.spaces import Space
    from maskopt.studies.listing import StudyInfo
    from maskopt.studies.table import BestTrials
    from maskopt.trainer.config import TrainConfig
    from maskopt.trainer.run import RunResult

F = TypeVar("F", bound=Callable[..., Any])


def friendly(fn: F) -> F:
    """Turn a MaskoptError (or Ctrl-C) into one line on stderr and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MaskoptError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def fmt(v: float | None, digits: int = 4) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def counts_line(counts: dict[str, int]) -> str:
    """Trials by state, e.g. "12 complete, 3 pruned"."""
    return ", ".join(f"{n} {k.lower()}" for k, n in sorted(counts.items()))


def table(title: str, columns: list[tuple[str, str]]) -> Table:
    """A table with these (name, justify) columns."""
    t = Table(title=title)
    for name, justify in columns:
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    return t


# -- data ------------------------------------------------------------------------------------


def synth_summary(s: SynthSummary) -> None:
    from maskopt.data.labels import AGE_NAMES

    t = table(f"synthetic data in {s.out} ({s.seconds} s)", [("part", "left"), ("value", "right")])
    t.add_row("train people / images", f"{s.people} / {s.train_images}")
    t.add_row("eval people / images", f"{s.eval_people} / {s.eval_images}")
    t.add_row("female", f"{s.female}")
    for name, n in zip(AGE_NAMES, s.age_bands, strict=True):
        t.add_row(f"age {name}", f"{n}")
    t.add_row("photo size", s.size)
    Console().print(t)


def eda_summary(s: EdaSummary) -> None:
    from maskopt.data.labels import AGE_NAMES, CLASS_NAMES, GENDER_NAMES, MASK_NAMES

    console = Console()

    def pct(n: int) -> str:
        return f"{n} ({100 * n / max(1, s.images):.1f}%)"

    overview = table(
        f"{s.root}: {s.images} images, {s.people} people", [("what", "left"), ("images", "right")]
    )
    for names, key, counts in (
        (MASK_NAMES, "mask", s.mask),
        (GENDER_NAMES, "gender", s.gender),
        (AGE_NAMES, "age", s.age),
    ):
        for name, n in zip(names, counts, strict=True):
            overview.add_row(f"{key} {name}", pct(n))
    overview.add_row("sizes", ", ".join(f"{k}: {v}" for k, v in s.sizes.items()))
    overview.add_row("formats", ", ".join(f"{k}: {v}" for k, v in s.formats.items()))
    if s.skipped_people:
        overview.add_row("skipped people (--skip-bad)", str(s.skipped_people))
    console.print(overview)

    classes = table("images per class", [("class", "left"), ("name", "left"), ("images", "right")])
    for c, (name, n) in enumerate(zip(CLASS_NAMES, s.classes, strict=True)):
        classes.add_row(str(c), name, pct(n))
    console.print(classes)

    if s.duplicates:
        dups = table(
            f"duplicate images: {len(s.duplicates)} groups (first 20)", [("files", "left")]
        )
        for group in s.duplicates[:20]:
            dups.add_row(", ".join(group))
        console.print(dups)
    else:
        console.print("duplicate images: none")
    if s.flags:
        cols = [(c, "left") for c in ("folder", "file", "check", "prob")]
        flags = table(f"photos to check: {len(s.flags)} (first 20)", cols)
        for f in s.flags[:20]:
            flags.add_row(f.folder, f.file, f.check, f"{f.prob:.2f}")
        console.print(flags)
    else:
        console.print("photos to check: none (no photo's mask state is at odds with its file)")
    console.print(f"report: {s.html} ({s.seconds} s)")


# -- train -----------------------------------------------------------------------------------


def train_start(console: Console, cfg: TrainConfig, what: str, images: int, people: int) -> None:
    console.print(
        f"training {cfg.backbone} ({cfg.head} head, {cfg.image_size} px) on {what}: "
        f"{images} images of {people} people"
    )


def epoch_line(m: dict, epochs: int) -> str:
    f1 = "" if m["val_f1"] is None else f"  val F1 {m['val_f1']:.4f}  val loss {m['val_loss']:.4f}"
    return (
        f"epoch {m['epoch']:>3}/{epochs}  loss {m['train_loss']:.4f}{f1}  "
        f"lr {m['lr']:.2e}  {m['images_per_s']:.0f} img/s  {m['seconds']:.1f} s"
    )


def run_result(console: Console, res: RunResult) -> None:
    from maskopt.trainer.run import CHECKPOINT, METRICS, TENSORBOARD

    if res.best_f1 is not None and res.validation is not None:
        v = res.validation
        console.print(
            f"[bold]best macro F1 {res.best_f1:.4f} at epoch {res.best_epoch}[/bold]  "
            f"(mask {v['mask_f1']:.3f}, gender {v['gender_f1']:.3f}, age {v['age_f1']:.3f}, "
            f"accuracy {v['accuracy']:.3f})"
        )
    console.print(f"{res.images_per_s:.0f} img/s training, {res.seconds:.0f} s in all")
    out = res.out
    console.print(
        f"wrote {out / CHECKPOINT}, {out / METRICS}; tensorboard --logdir {out / TENSORBOARD}"
    )


# -- search ----------------------------------------------------------------------------------


def search_summary(console: Console, s: SearchSummary) -> None:
    t = table(
        f"study {s.study!r}: {s.finished}/{s.trials_wanted} finished in {s.wall_s:.0f} s, "
        f"{s.total_epochs} fold-epochs trained",
        [
            ("trial", "right"),
            ("state", "left"),
            ("macro F1", "right"),
            ("epochs", "right"),
            ("seconds", "right"),
            ("note", "left"),
        ],
    )
    colour = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}
    for r in s.trials:
        star = " *" if r.number == s.best_number else ""
        t.add_row(
            str(r.number) + star,
            f"[{colour.get(r.state, 'white')}]{r.state.lower()}[/]",
            fmt(r.value),
            "-" if r.epochs_run is None else str(r.epochs_run),
            fmt(r.duration_s, 1),
            r.note,
        )
    console.print(t)
    console.print(f"trials: {counts_line(s.counts)}")
    if s.best_number is not None:
        console.print(
            f"[bold]best: trial {s.best_number}, macro F1 {s.best_value:.4f}[/bold]  "
            f"(storage {s.storage}, artifacts {s.artifacts_dir})"
        )
    console.print(f"TensorBoard: tensorboard --logdir {s.tensorboard_dir}")
    for n in s.notes:
        console.print(f"note: {n}")
    for p in s.problems:
        console.print(f"[red]problem: {p}[/red]")
    if s.interrupted:
        console.print(
            "interrupted: the running trial is marked FAIL (it does not count) and its config "
            "is queued again; run the same command to resume."
        )
    elif not (s.problems and s.finished < s.trials_wanted):
        console.print("next: maskopt best   (then maskopt best --export)")


def spaces(found: list[Space]) -> None:
    t = table(
        "search spaces (--space NAME, or a .yaml/.toml file)",
        [(c, "left") for c in ("name", "epochs", "sampled keys", "description")],
    )
    for sp in found:
        sampled = sum(p.kind != "fixed" for p in sp.params)
        t.add_row(sp.name, str(sp.epochs), str(sampled), sp.description)
    Console().print(t)
    typer.echo("show one: maskopt spaces show NAME (or FILE)")


# -- studies, best, export -------------------------------------------------------------------


def studies(storage: str, infos: list[StudyInfo]) -> None:
    if not infos:
        typer.echo(f"no studies in {storage} yet (maskopt search creates one).")
        return
    cols = ["study", "done", "pruned", "fail", "run", "best F1", "trial", "space", "k"]
    t = table(
        f"studies in {storage}",
        [(c, "left" if c in ("study", "space") else "right") for c in cols]
        + [("last activity", "left")],
    )
    for i in infos:
        c = i.counts
        t.add_row(
            i.name,
            str(c.get("COMPLETE", 0)),
            str(c.get("PRUNED", 0)),
            str(c.get("FAIL", 0)),
            str(c.get("RUNNING", 0) + c.get("WAITING", 0)),
            fmt(i.best_value),
            "-" if i.best_trial is None else str(i.best_trial),
            i.space or "-",
            "-" if i.n_folds is None else str(i.n_folds),
            i.last_activity.strftime("%m-%d %H:%M") if i.last_activity else "-",
        )
    Console().print(t)


def best_trials(study: str, best: BestTrials) -> None:
    from maskopt.studies.table import augment_text

    console = Console()
    rows = best.rows
    counts = counts_line(best.counts)
    if not rows:
        console.print(f"study {study!r} has no complete trials yet ({counts or 'no trials'}).")
        return
    t = Table(title=f"top {len(rows)} trials of {study!r} ({counts})")
    for col in ("trial", "macro F1", "folds", "best ep", "img/s", "augment", "models"):
        t.add_column(col, justify="left" if col in ("augment", "models") else "right", no_wrap=True)
    t.add_column("key parameters", overflow="fold", min_width=24)
    for r in rows:
        spread = f"{min(r.fold_f1):.3f}-{max(r.fold_f1):.3f}" if r.fold_f1 else "-"
        params = "\n".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in r.params.items()
            if k in best.keys
        )
        t.add_row(
            str(r.number),
            fmt(r.value),
            spread,
            ",".join(map(str, r.fold_best_epoch)) or "-",
            fmt(r.images_per_s, 0),
            augment_text(r),
            "kept" if r.number in best.kept else "-",
            params,
        )
    console.print(t)
    console.print(
        "export them: maskopt best --export   (one config: maskopt best --trial N --config-out cfg.json)"
    )


def interval(d: dict | None, sign: str = "") -> str:
    """A manifest's Interval (its as_dict()) in one line: as Interval prints itself, or short
    (value [low, high]) with `sign` "+" for a difference."""
    from maskopt.trainer.metrics import Interval

    if d is None:
        return "-"
    if sign:
        return f"{d['value']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"
    return str(Interval(**d))


def export_report(console: Console, rep: ExportReport) -> None:
    m = rep.manifest
    if m.choice.get("options"):  # manifests before the expected-score choice have none
        console.print(options_table(m))
    console.print(
        "exported: "
        + ", ".join(
            f"trial {mm.trial} (OOF {fmt(mm.oof_f1)}, weight {fmt(mm.weight, 2)})"
            for mm in m.members
        )
        + f"; in-sample OOF macro F1 {fmt(m.oof_f1)}"
    )
    console.print(m.choice.get("target_note", ""))
    console.print(m.choice.get("temperature_note", ""))
    console.print(f"[bold]{m.choice.get('decision', '')}[/bold]")
    console.print(tradeoff_table(m))
    if m.student is not None:
        st = m.student
        console.print(
            f"student: {st.config['backbone']}, distilled from {st.teacher} (trials "
            + ", ".join(map(str, st.teacher_trials))
            + f"); held-out macro F1 {interval(st.heldout)}; "
            f"maskopt predict {rep.out} --student"
        )
        console.print(m.choice.get("teacher_note", ""))
    for note in m.notes:
        console.print(f"note: {note}")
    retrained = all(mm.retrained for mm in m.members)
    how = "retrained on all data" if retrained else "fold models averaged"
    console.print(
        f"bundle written to {rep.out} ({len(m.members)} member(s), {how}"
        f"{', hflip TTA' if m.tta else ''})"
    )
    if rep.plots is not None:
        console.print(f"plots: {rep.out / 'plots.html'}")
    if any(r.get("onnx_images_per_s") for r in m.tradeoff):
        console.print(f"onnx: {rep.out / 'model.onnx'}  (maskopt predict {rep.out} --runtime onnx)")
    if rep.submission is not None:
        console.print(f"submission: {rep.submission}")
    if m.heldout is not None:
        console.print(f"[bold]held-out macro F1 (eval/solution.csv): {interval(m.heldout)}[/bold]")
        if len(m.heldout_members) > 1:
            for trial, d in m.heldout_members.items():
                console.print(f"  trial {trial} alone: {interval(d)}")


def options_table(m: Any) -> Table:
    """Every option of the export's choice with its expected score; the chosen one marked."""
    t = table(
        f"the export's options, judged on people they were not chosen on ({m.vote} vote)",
        [(c, "left") for c in ("option", "expected macro F1 [95% CI]", "gain", "members")],
    )
    trials = [c["trial"] for c in m.candidates]
    for i, o in enumerate(m.choice["options"]):
        e = o["expected"]
        gain = "-" if o["gain"] is None else interval(o["gain"]["diff"], sign="+")
        mark = " *" if i == m.choice.get("chosen") else ""
        members = ", ".join(
            f"{trials[j]}" + ("" if len(o["members"]) == 1 else f" x{w:.2f}")
            for j, w in zip(o["members"], o["weights"], strict=True)
        )
        expected = f"{e['value']:.4f} [{e['low']:.4f}, {e['high']:.4f}]"
        t.add_row(o["name"] + mark, expected, gain, members)
    return t


def tradeoff_table(m: Any) -> Table:
    """Macro F1 (OOF; held-out where known) against images/s and forward passes."""
    onnx = any(r.get("onnx_images_per_s") for r in m.tradeoff)
    heldout = heldout_by_row(m)
    cols = ["option", "OOF macro F1"] + (["held-out F1"] if heldout else []) + ["images/s"]
    cols += ["onnx images/s"] if onnx else []
    t = table(
        "trade-off: macro F1 against inference speed",
        [(c, "left" if c == "option" else "right") for c in [*cols, "forward passes"]],
    )
    for i, r in enumerate(m.tradeoff):
        scores = [fmt(r["oof_f1"])] + ([fmt(heldout.get(i))] if heldout else [])
        speed = [fmt(r["images_per_s"], 0)] + ([fmt(r["onnx_images_per_s"], 0)] if onnx else [])
        t.add_row(r["name"], *scores, *speed, str(r["models"]))
    return t


def heldout_by_row(m: Any) -> dict[int, float]:
    """The trade-off rows whose held-out macro F1 is known (eval/solution.csv): the row of what
    was exported, and the student's."""
    if m.heldout is None:
        return {}
    names = [r["name"] for r in m.tradeoff]
    export_row = (2 if len(m.members) > 1 else 0) + (1 if m.tta else 0)
    out = {export_row: m.heldout["value"]} if export_row < len(names) else {}
    if m.student is not None and m.student.heldout is not None and names[-1].startswith("student"):
        out[len(names) - 1] = m.student.heldout["value"]
    return out


# -- predict ---------------------------------------------------------------------------------


def predictions(source: Path, pred: Prediction, out: Path | None) -> None:
    if out is not None:
        Console().print(f"wrote {len(pred.images)} predictions to {out}")
    else:
        rows = pred.rows()
        t = table(
            f"{len(rows)} predictions ({source})",
            [
                (c, "right" if c in ("class", "probability") else "left")
                for c in ("image", "class", "mask", "gender", "age", "probability")
            ],
        )
        for r in rows:
            t.add_row(
                r["image"],
                str(r["class"]),
                r["mask"],
                r["gender"],
                r["age"],
                f"{r['probability']:.3f}",
            )
        Console().print(t)
    if pred.heldout is not None:
        # plain echo: one line however narrow the terminal, and no markup in "[95% CI ...]"
        typer.echo(f"held-out macro F1 {pred.heldout} ({pred.eval_data}/eval/solution.csv)")
