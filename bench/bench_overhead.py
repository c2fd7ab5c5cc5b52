"""Overheads outside the model step, each measured against its alternative side by side in one
run (alternating, so that the machine's load falls on both alike):

- a search worker with its heap frozen at the start (maskopt.trainer.memory.frozen_heap) against
  the same worker without (frozen_heap replaced by a no-op): the same trials, other collections;
- `synth` drawing people on a thread per core against one thread: the same bytes.

    python -m bench.bench_overhead [--people 120] [--trials 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

ROOT = Path(__file__).resolve().parent.parent

# The worker as `maskopt search` runs it, with frozen_heap kept or made a no-op.
SEARCH = """
import contextlib, sys
import maskopt.search.worker as worker
if sys.argv.pop(1) == "unfrozen":
    worker.frozen_heap = contextlib.nullcontext
from maskopt.cli.app import main
main()
"""


def search_once(variant: str, data: Path, db: Path, args) -> tuple[float, list]:
    """Wall seconds of one `maskopt search` and its trials' (number, state, value)."""
    cmd = [sys.executable, "-c", SEARCH, variant, "search", "--data", str(data)]
    cmd += ["--space", "cpu", "--trials", str(args.trials), "--folds", str(args.folds)]
    cmd += ["--seed", "0", "--device", "cpu", "--storage", f"sqlite:///{db}"]
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=db.parent)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        sys.exit(f"search ({variant}) failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    with sqlite3.connect(db) as con:
        trials = con.execute(
            "SELECT t.number, t.state, v.value FROM trials t "
            "LEFT JOIN trial_values v USING (trial_id) ORDER BY t.number"
        ).fetchall()
    return wall, trials


def synth_once(threads: int, out: Path, args) -> tuple[float, str]:
    """Wall seconds of one synthesize() with `threads` drawing threads, and a digest of it."""
    import unittest.mock

    from maskopt.data.synth import synthesize

    with unittest.mock.patch("os.cpu_count", lambda: threads):
        start = time.perf_counter()
        synthesize(out, people=args.people, eval_people=args.eval_people, seed=0, progress=False)
        wall = time.perf_counter() - start
    digest = hashlib.sha256()
    for p in sorted(out.rglob("*")):
        if p.is_file():
            digest.update(str(p.relative_to(out)).encode() + p.read_bytes())
    return wall, digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--people", type=int, default=120)
    p.add_argument("--eval-people", type=int, default=900)
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    args = p.parse_args(argv)
    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))

    synth: dict[str, list[float]] = {"1 thread": [], f"{cores} threads": []}
    digests = set()
    for r in range(args.rounds):
        order = [1, cores] if r % 2 == 0 else [cores, 1]
        for threads in order:
            name = "1 thread" if threads == 1 else f"{cores} threads"
            wall, digest = synth_once(threads, work / f"synth-{threads}-{r}", args)
            synth[name].append(wall)
            digests.add(digest)
            print(f"synth, {name}: {wall:.1f} s", flush=True)

    from maskopt.data.synth import synthesize

    data = work / "data"
    synthesize(data, people=args.people, eval_people=0, seed=0, progress=False)
    search: dict[str, list[float]] = {"unfrozen": [], "frozen": []}
    trials: dict[str, list] = {}
    for r in range(args.rounds):
        for variant in ("unfrozen", "frozen") if r % 2 == 0 else ("frozen", "unfrozen"):
            folder = work / f"search-{variant}-{r}"
            folder.mkdir()
            wall, rows = search_once(variant, data, folder / "maskopt.db", args)
            search[variant].append(wall)
            trials.setdefault(variant, rows)
            if rows != trials[variant]:
                sys.exit(f"search ({variant}): round {r} differs from round 0")
            print(f"search, {variant}: {wall:.1f} s", flush=True)

    def med(xs: list[float]) -> float:
        return statistics.median(xs)

    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    cmd = ("python -m bench.bench_overhead " + argv_text).strip()
    one, many = synth["1 thread"], synth[f"{cores} threads"]
    md = [
        "## Overheads: the worker's garbage collections, synth's drawing (`bench/bench_overhead.py`)",
        "",
        f"Command: `{cmd}`",
        "",
        f"{cores} cores, shared machine; each pair run alternately, {args.rounds} round(s), "
        "median wall seconds.",
        "",
        "| what | without | with | with / without | same output |",
        "| --- | --- | --- | --- | --- |",
        f"| search, cpu space, {args.people} people, {args.trials} trials x {args.folds} folds: "
        f"frozen heap | {med(search['unfrozen']):.1f} | {med(search['frozen']):.1f} | "
        f"{med(search['frozen']) / med(search['unfrozen']):.2f} | "
        f"{'yes' if trials['frozen'] == trials['unfrozen'] else 'NO'} (trial states, values) |",
        f"| synth, {args.people} + {args.eval_people} people: a thread per core | "
        f"{med(one):.1f} | {med(many):.1f} | {med(many) / med(one):.2f} | "
        f"{'yes' if len(digests) == 1 else 'NO'} (every byte) |",
        "",
        "Each round's times: search without "
        + ", ".join(f"{x:.1f}" for x in search["unfrozen"])
        + "; with "
        + ", ".join(f"{x:.1f}" for x in search["frozen"])
        + ". synth with 1 thread "
        + ", ".join(f"{x:.1f}" for x in one)
        + f"; with {cores} "
        + ", ".join(f"{x:.1f}" for x in many)
        + ".",
    ]
    text = "\n".join(md)
    print(text)
    if not args.no_write:
        sys.path.insert(0, str(ROOT))
        from bench._report import write_section

        write_section("overhead", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
