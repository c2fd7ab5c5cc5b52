"""Pruning benchmark: the same search with --pruner median and with --pruner none.

Both searches run side by side (one CPU thread each, so the shared machine slows both
alike) on the same synthetic data with the cpu space, the same seed and the same number of
trials. Reported: fold-epochs trained (over all trials, pruned ones included), wall time,
best OOF macro F1, and how many trials the pruner stopped.

    python bench/bench_search.py [--people 40] [--trials 12] [--epochs 4] [--folds 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._report import write_section  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=40)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--startup-trials", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import optuna

    from maskopt.data.synth import synthesize
    from maskopt.store.storage import create_storage

    work = Path(tempfile.mkdtemp(prefix="bench-search-"))
    synthesize(work / "data", people=args.people, seed=args.seed, size=(192, 256), progress=False)
    maskopt = str(Path(sys.executable).parent / "maskopt")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NO_ALBUMENTATIONS_UPDATE="1")
    common = [
        "search",
        "--data",
        str(work / "data"),
        "--space",
        "cpu",
        "--trials",
        str(args.trials),
        "--folds",
        str(args.folds),
        "--epochs",
        str(args.epochs),
        "--seed",
        str(args.seed),
        "--startup-trials",
        str(args.startup_trials),
        "--warmup-steps",
        "1",
        "--device",
        "cpu",
    ]
    # Build the decoded-image cache once, before the timed runs (both read it).
    from maskopt.data.layout import read_train
    from maskopt.spaces import get_space

    read_train(work / "data").images(get_space("cpu").fixed_config().image_size)

    procs, started = {}, {}
    for pruner in ("median", "none"):
        url = f"sqlite:///{work / (pruner + '.db')}"
        started[pruner] = time.perf_counter()
        procs[pruner] = subprocess.Popen(
            [maskopt, *common, "--pruner", pruner, "--storage", url],
            stdout=open(work / f"{pruner}.log", "w"),
            stderr=subprocess.STDOUT,
            env=env,
            cwd=work,
        )
    wall = {}
    for pruner, p in procs.items():
        rc = p.wait()
        wall[pruner] = time.perf_counter() - started[pruner]
        if rc != 0:
            sys.exit(f"{pruner} search failed (rc {rc}); see {work / (pruner + '.log')}")

    rows = {}
    for pruner in ("median", "none"):
        storage = create_storage(f"sqlite:///{work / (pruner + '.db')}", heartbeat=False)
        trials = optuna.load_study(study_name="maskopt", storage=storage).get_trials()
        complete = [t for t in trials if t.state.name == "COMPLETE"]
        rows[pruner] = {
            "epochs": sum(int(t.user_attrs.get("epochs_run", 0)) for t in trials),
            "wall": wall[pruner],
            "best": max(t.value for t in complete),
            "complete": len(complete),
            "pruned": sum(t.state.name == "PRUNED" for t in trials),
            "failed": sum(t.state.name == "FAIL" for t in trials),
            "values": sorted((t.value for t in complete), reverse=True),
        }
    m, n = rows["median"], rows["none"]
    ratio = m["epochs"] / n["epochs"]
    # "Within noise": the spread of the top complete trials of the unpruned search.
    top = n["values"][: max(3, len(n["values"]) // 4)]
    noise = max(top) - min(top)
    cmd = (
        f"python bench/bench_search.py --people {args.people} --trials {args.trials} --epochs "
        f"{args.epochs} --folds {args.folds} --startup-trials {args.startup_trials} "
        f"--seed {args.seed}"
    )
    md = [
        "## Pruning: `--pruner median` against `--pruner none` (`bench/bench_search.py`)",
        "",
        f"Command: `{cmd}`",
        "",
        f"Synthetic data, {args.people} people ({args.people * 7} images), cpu space, "
        f"{args.folds} folds, "
        f"{args.epochs} epochs per fold, {args.trials} trials, TPE seed {args.seed}, "
        f"{args.startup_trials} startup trials, pruning from epoch 1 on. Both searches ran at the "
        "same time, one CPU thread each, on a shared 2-core machine (wall times are comparable "
        "with each other, not with an idle machine).",
        "",
        "Reporting schedule: the folds train interleaved, step = epoch, value = mean over folds of "
        "each fold's best-so-far F1 (only grows), because Optuna's MedianPruner compares a trial's "
        "best value so far with the others' value at the same step.",
        "",
        "| pruner | fold-epochs trained | wall time (s) | best OOF macro F1 "
        "| complete / pruned / failed |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, r in (("median", m), ("none", n)):
        md.append(
            f"| {name} | {r['epochs']} | {r['wall']:.0f} | {r['best']:.4f} | "
            f"{r['complete']} / {r['pruned']} / {r['failed']} |"
        )
    verdict_epochs = "met" if ratio <= 0.5 else "NOT met"
    diff = m["best"] - n["best"]
    verdict_f1 = "within" if abs(diff) <= noise or diff >= 0 else "outside"
    md += [
        "",
        f"Epochs with pruning: **{ratio:.0%}** of those without "
        f"(target at most 50%: {verdict_epochs}). "
        f"Best F1 difference {diff:+.4f}; the spread of the unpruned search's "
        f"top {len(top)} trials is "
        f"{noise:.4f}, so the difference is {verdict_f1} that noise.",
    ]
    write_section("search-pruning", "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
