"""Does the exported bundle beat the best single trial and the plain top-3 average on held-out
data, and does its distilled student keep the gain at a single model's speed?

    .venv/bin/python -m bench.bench_ensemble --seeds 0 1 2 3 4 [--people 120]
        [--eval-people 900] [--trials 20] [--folds 3] [--space cpu] [--work DIR] [--tag T]

For each data seed, a demo-sized job: `maskopt synth` (the seed), `maskopt search` (the
demo's settings), then three exports of the same study, each retrained on all the data:
(a) the best single trial (`--top 1`), (b) the bundle as `maskopt best --export --distill`
makes it, (c) a plain average of the top 3; (d) is (b)'s distilled student. Each is scored on
the held-out eval set with a 95% interval over people, and the differences as paired person
bootstraps (all predict the same images); images/s from the export's trade-off table. One JSON per seed in --work (a rerun skips the seeds already there; with only a
seed's JSON removed it reuses that seed's study and its search time, to measure a changed
export on the same searches), then the BENCHMARKS.md section "ensemble" (or "ensemble-<tag>") from every
seed's JSON found there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def _maskopt(*args: str, cwd: Path) -> None:
    cmd = [sys.executable, "-m", "maskopt.cli", *args]
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def _scores(bundle: Path, data: Path) -> dict:
    import numpy as np

    from maskopt.bundle.manifest import read_manifest
    from maskopt.data.layout import read_eval

    m = read_manifest(bundle)
    with np.load(bundle / "eval_probs.npz") as z:
        labels = z["probs"].argmax(1)
        student = z["student_probs"].argmax(1) if "student_probs" in z else None
    ev = read_eval(data, progress=False)
    # the export's own row of the trade-off table: (ensemble or single) without TTA
    row = m.tradeoff[2 if len(m.members) > 1 else 0]
    return {
        "manifest": m,
        "labels": labels,
        "student": student,
        "images_per_s": row["images_per_s"],
        "solution": ev.solution,
        "groups": ev.groups,
    }


def run_seed(seed: int, args: argparse.Namespace, work: Path) -> dict:
    from maskopt.export.export import export_best
    from maskopt.export.options import ExportOptions
    from maskopt.trainer.metrics import bootstrap_f1, bootstrap_gain

    folder = work / f"seed-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    start = time.perf_counter()
    searched = folder / "search_s.txt"  # a rerun reuses the study, and its time
    if not (folder / "maskopt.db").exists():
        _maskopt(
            "synth", str(data), "--people", str(args.people), "--eval-people",
            str(args.eval_people), "--seed", str(seed), cwd=folder,
        )  # fmt: skip
        _maskopt(
            "search", "--data", str(data), "--space", args.space, "--trials", str(args.trials),
            "--folds", str(args.folds), "--seed", str(seed), cwd=folder,
        )  # fmt: skip
        searched.write_text(f"{time.perf_counter() - start:.0f}\n")
    search_s = float(searched.read_text()) if searched.exists() else float("nan")
    start = time.perf_counter()
    url = f"sqlite:///{folder / 'maskopt.db'}"
    runs = {
        "single": dict(top=1),
        "bundle": dict(distill=True),
        "top3": dict(top=3, average_all=True),
    }
    scored = {}
    for name, kw in runs.items():
        out = folder / f"bundle-{name}"
        export_best(ExportOptions(storage=url, study="maskopt", out=out, **kw), progress=False)
        scored[name] = _scores(out, data)
    solution, groups = scored["single"]["solution"], scored["single"]["groups"]
    result = {"seed": seed, "search_s": round(search_s), "total_s": 0}  # nan: not recorded
    for name, s in scored.items():
        result[name] = bootstrap_f1(solution, s["labels"], groups).as_dict()
        result[f"{name}_members"] = [mm.trial for mm in s["manifest"].members]
        result[f"{name}_images_per_s"] = s["images_per_s"]
    bundle = scored["bundle"]
    student = bundle["manifest"].student
    if student is None:  # no ensemble to learn from (the export's notes say why)
        bundle["student"] = scored["single"]["labels"]
        result["student_note"] = " ".join(bundle["manifest"].notes)
    result["student"] = bootstrap_f1(solution, bundle["student"], groups).as_dict()
    result["student_images_per_s"] = (
        student.images_per_s if student else scored["single"]["images_per_s"]
    )
    result["student_teacher"] = student.teacher if student else None
    choice = bundle["manifest"].choice
    result["kept"] = bool(choice.get("kept"))
    result["chosen"] = choice["options"][choice["chosen"]]["name"]
    result["decision"] = choice.get("decision", "")

    def paired(new, base) -> dict:
        gain = bootstrap_gain(solution, new, base, groups)
        return {**gain.diff.as_dict(), "p_positive": gain.p_positive}

    result["bundle_minus_single"] = paired(bundle["labels"], scored["single"]["labels"])
    result["bundle_minus_top3"] = paired(bundle["labels"], scored["top3"]["labels"])
    result["student_minus_single"] = paired(bundle["student"], scored["single"]["labels"])
    result["export_s"] = round(time.perf_counter() - start)
    result["total_s"] = round(search_s + result["export_s"])
    return result


def _ci(d: dict, sign: str = "") -> str:
    return f"{d['value']:{sign}.4f} [{d['low']:{sign}.4f}, {d['high']:{sign}.4f}]"


def section(results: list[dict], args: argparse.Namespace, command: str) -> str:
    import numpy as np

    rows = [
        "| seed | (a) best single | (b) bundle | (c) top-3 average | (d) student | (b) - (a), "
        "paired | (d) - (a), paired | (b) is |",
        "|---:|---|---|---|---|---|---|---|",
    ]
    results = sorted(results, key=lambda r: r["seed"])
    for r in results:
        rows.append(
            f"| {r['seed']} | {_ci(r['single'])} | {_ci(r['bundle'])} | {_ci(r['top3'])} | "
            f"{_ci(r['student'])} | {_ci(r['bundle_minus_single'], '+')} | "
            f"{_ci(r['student_minus_single'], '+')} | {r['chosen']}: "
            f"{', '.join(map(str, r['bundle_members']))} |"
        )

    def value(key: str) -> np.ndarray:
        return np.array([r[key]["value"] for r in results])

    a, b, c, d = value("single"), value("bundle"), value("top3"), value("student")
    ips = {k: np.mean([r[f"{k}_images_per_s"] for r in results]) for k in ("single", "bundle")}
    ips["student"] = np.mean([r["student_images_per_s"] for r in results])
    kept = (d - a).mean() / (b - a).mean() if (b - a).mean() > 0 else float("nan")
    lines = [
        f"Command: `{command}`",
        "",
        f"{len(results)} data seeds, each: {args.people} training people, {args.eval_people} eval "
        f"people (7 photos each), `maskopt search --space {args.space} --trials {args.trials} "
        f"--folds {args.folds}`, then three exports retrained on all the data ((b) with "
        "--distill, its student is (d)). Held-out macro F1 with 95% intervals from a bootstrap "
        "over eval people; differences paired (the same resampled people for both). Machine: "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; per seed about "
        f"{np.nanmean([r['search_s'] for r in results]) / 60:.0f} min of search and "
        f"{np.mean([r.get('export_s', 0) for r in results]) / 60:.1f} min for the three exports.",
        "",
        *rows,
        "",
        f"- mean held-out macro F1: (a) {a.mean():.4f}, (b) {b.mean():.4f}, (c) {c.mean():.4f}, "
        f"(d) {d.mean():.4f}.",
        f"- (b) - max((a), (c)): mean {(b - np.maximum(a, c)).mean():+.4f} (per seed: "
        + ", ".join(f"{x:+.4f}" for x in b - np.maximum(a, c))
        + f"); (b) - (a): mean {(b - a).mean():+.4f}; (c) - (a): mean {(c - a).mean():+.4f}.",
        f"- (d) keeps {kept:.0%} of (b)'s mean gain over (a) ((d) - (a): mean "
        f"{(d - a).mean():+.4f}); images/s (PyTorch, this machine's CPU, no TTA): (a) "
        f"{ips['single']:.0f}, (b) {ips['bundle']:.0f}, (d) {ips['student']:.0f}.",
        "",
        "Why each bundle was what it is (the decision, out of sample):",
        "",
        *[f"- seed {r['seed']}: {r['decision']}" for r in results],
        *[
            f"- seed {r['seed']}: no student ((d) is (a)): {r['student_note']}"
            for r in results
            if r.get("student_note")
        ],
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--people", type=int, default=120)
    p.add_argument("--eval-people", type=int, default=900)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--space", default="cpu")
    p.add_argument("--work", type=Path, default=Path("bench-ensemble"))
    p.add_argument("--tag", default="", help="Section name suffix (a size per section).")
    args = p.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        path = work / f"seed-{seed}.json"
        if path.exists():
            continue
        result = run_seed(seed, args, work)
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result), flush=True)
    results = [json.loads(f.read_text()) for f in sorted(work.glob("seed-*.json"))]
    from bench._report import write_section

    command = "python -m bench.bench_ensemble " + " ".join(sys.argv[1:])
    write_section(
        "ensemble" + (f"-{args.tag}" if args.tag else ""), section(results, args, command)
    )
    print(section(results, args, command))


if __name__ == "__main__":
    main()
