"""Does the exported bundle beat the best single trial on held-out data?

    .venv/bin/python -m bench.bench_ensemble --seeds 0 1 2 3 4 [--people 120]
        [--eval-people 900] [--trials 20] [--folds 3] [--space cpu] [--work DIR] [--tag T]

For each data seed, a demo-sized job: `maskopt synth` (the seed), `maskopt search` (the
demo's settings), then three exports of the same study, each retrained on all the data:
(a) the best single trial (`--top 1`), (b) the bundle as `maskopt best --export` makes it,
(c) a plain average of the top 3. Each is scored on the held-out eval set with a 95%
interval over people, and (b) - (a) as a paired person bootstrap (both predict the same
images). One JSON per seed in --work (a rerun skips the seeds already there; with only a
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
    ev = read_eval(data, progress=False)
    return {"manifest": m, "labels": labels, "solution": ev.solution, "groups": ev.groups}


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
        "bundle": dict(),
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
    choice = scored["bundle"]["manifest"].choice
    result["kept"] = bool(choice.get("kept"))
    result["decision"] = choice.get("decision", "")
    gain = bootstrap_gain(solution, scored["bundle"]["labels"], scored["single"]["labels"], groups)
    result["bundle_minus_single"] = {**gain.diff.as_dict(), "p_positive": gain.p_positive}
    result["export_s"] = round(time.perf_counter() - start)
    result["total_s"] = round(search_s + result["export_s"])
    return result


def _ci(d: dict, sign: str = "") -> str:
    return f"{d['value']:{sign}.4f} [{d['low']:{sign}.4f}, {d['high']:{sign}.4f}]"


def section(results: list[dict], args: argparse.Namespace, command: str) -> str:
    import numpy as np

    rows = [
        "| seed | (a) best single | (b) bundle | (c) top-3 average | ensemble kept | "
        "(b) - (a), paired | members of (b) |",
        "|---:|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: r["seed"]):
        rows.append(
            f"| {r['seed']} | {_ci(r['single'])} | {_ci(r['bundle'])} | {_ci(r['top3'])} | "
            f"{'yes' if r['kept'] else 'no'} | {_ci(r['bundle_minus_single'], '+')} | "
            f"{', '.join(map(str, r['bundle_members']))} |"
        )
    diffs = np.array([r["bundle_minus_single"]["value"] for r in results])
    top3 = np.array([r["top3"]["value"] - r["single"]["value"] for r in results])
    kept = [r for r in results if r["kept"]]
    at_least = sum(d >= 0 for d in diffs)
    lines = [
        f"Command: `{command}`",
        "",
        f"{len(results)} data seeds, each: {args.people} training people, {args.eval_people} eval "
        f"people (7 photos each), `maskopt search --space {args.space} --trials {args.trials} "
        f"--folds {args.folds}`, then three exports retrained on all the data. Held-out macro F1 "
        "with 95% intervals from a bootstrap over eval people; the difference is paired (the "
        f"same resampled people for both). Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; per seed about {np.nanmean([r['search_s'] for r in results]) / 60:.0f} "
        f"min of search and {np.mean([r.get('export_s', 0) for r in results]) / 60:.1f} min for the "
        "three exports.",
        "",
        *rows,
        "",
        f"- (b) >= (a) on {at_least} of {len(results)} seeds; mean paired difference "
        f"(b) - (a) {diffs.mean():+.4f} (min {diffs.min():+.4f}, max {diffs.max():+.4f}).",
        f"- an ensemble was kept on {len(kept)} of {len(results)} seeds"
        + (
            f"; on those, (b) - (a) averaged {np.mean([r['bundle_minus_single']['value'] for r in kept]):+.4f}."
            if kept
            else "."
        ),
        f"- the plain top-3 average against the best single: mean {top3.mean():+.4f} "
        f"(min {top3.min():+.4f}, max {top3.max():+.4f}).",
        "",
        "Why each bundle was what it is (the decision, out of sample):",
        "",
        *[f"- seed {r['seed']}: {r['decision']}" for r in sorted(results, key=lambda r: r["seed"])],
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
