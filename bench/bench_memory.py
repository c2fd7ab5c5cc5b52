"""Memory benchmark: a search worker's resident memory (RSS) over 20+ trials stays flat.

Runs `maskopt search` (one worker, real k-fold training with the cpu space) and reads the
process's VmRSS from /proc every time a trial finishes.

    python bench/bench_memory.py [--people 30] [--trials 24] [--epochs 2] [--folds 2]
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


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=30)
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--folds", type=int, default=2)
    args = ap.parse_args()

    import numpy as np
    import optuna

    from maskopt.data.synth import synthesize
    from maskopt.store.storage import create_storage

    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    synthesize(work / "data", people=args.people, seed=0, size=(192, 256), progress=False)
    url = f"sqlite:///{work / 'mem.db'}"
    env = dict(os.environ, OMP_NUM_THREADS="1", NO_ALBUMENTATIONS_UPDATE="1")
    cmd = [
        str(Path(sys.executable).parent / "maskopt"),
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
        "--pruner",
        "none",
        "--seed",
        "0",
        "--device",
        "cpu",
        "--storage",
        url,
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=open(work / "search.log", "w"), stderr=subprocess.STDOUT, env=env, cwd=work
    )
    storage = None
    samples: list[tuple[int, float]] = []  # (trials finished, RSS MiB)
    last = -1
    while proc.poll() is None:
        time.sleep(0.5)
        if storage is None:
            try:
                storage = create_storage(url, heartbeat=False)
            except Exception:
                continue
        try:
            study = optuna.load_study(study_name="maskopt", storage=storage)
        except KeyError:
            continue
        done = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
        rss = rss_mib(proc.pid)
        if done != last and rss is not None:
            samples.append((done, rss))
            last = done
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"search failed (rc {proc.returncode}); see {work / 'search.log'}")
    after = [(n, r) for n, r in samples if n >= 1]
    first_n, first_rss = after[0]
    n = np.array([a for a, _ in after], dtype=float)
    r = np.array([b for _, b in after])
    late = n >= 5
    slope = float(np.polyfit(n[late], r[late], 1)[0]) if late.sum() >= 3 else float("nan")
    steps = zip(n[1:], np.diff(r), strict=True)
    jumps = ", ".join(str(int(a)) for a, d in steps if d > 10)
    cmd_text = (
        f"python bench/bench_memory.py --people {args.people} --trials {args.trials} "
        f"--epochs {args.epochs} --folds {args.folds}"
    )
    table = " | ".join(f"{a}: {b:.0f}" for a, b in after)
    md = [
        "## Worker memory over many trials (`bench/bench_memory.py`)",
        "",
        f"Command: `{cmd_text}`",
        "",
        f"One `maskopt search` worker, cpu space (mobilenetv3_small_050 / resnet10t at 48 px), "
        f"{args.people} synthetic people, {args.folds} folds x {args.epochs} epochs, "
        "--pruner none, "
        f"{args.trials} trials in {wall:.0f} s. RSS of the worker process read from /proc "
        "each time a "
        "trial finished.",
        "",
        "| | RSS (MiB) |",
        "| --- | --- |",
        f"| after trial 1 | {first_rss:.0f} |",
        f"| peak | {r.max():.0f} |",
        f"| after the last trial ({int(n[-1])}) | {r[-1]:.0f} |",
        f"| trend from trial 5 on (least squares) | {slope:+.2f} MiB per trial |",
        f"| median change from one trial to the next | {float(np.median(np.diff(r))):+.2f} MiB |",
        f"| trials after which RSS grew by more than 10 MiB | {jumps or 'none'} |",
        "",
        f"Trials finished: RSS (MiB): {table}",
    ]
    write_section("search-memory", "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
