"""The GPU data path: does the real pipeline keep the device as busy as batches in memory do?

    python -m bench.bench_gpu                      # on a GPU: the default space's backbones
    python -m bench.bench_gpu --short              # the same, smaller (scripts/device_check.sh)
    python -m bench.bench_gpu --device cpu --short # tiny backbones at 64 px (runs anywhere)

For each backbone, from scratch (speed does not depend on the weights), on synthetic data:
  * limit: one FoldRun's training step on uint8 batches already on the device (no loader,
    no augmentation: the model's own speed);
  * pipeline: a trial as the search runs it: k FoldRuns trained epoch by epoch in turn, fed
    by one loader pool of default_workers processes (the trial's), the decoded cache,
    augmentation at `--augment`, once with `augment_on: cpu` (albumentations per image in the
    loaders) and once with `augment_on: device` (kornia on the batch); images/s of the
    training steps, and the GPU's utilisation while they run (nvidia-smi, sampled);
  * split pools: the cpu pipeline as the search ran it before issue 18 (each fold its own pool
    of max(1, default_workers // k)), and "fed": each fold's batches iterated without
    training, from the trial's pool and from the split pools (how fast the loader processes
    feed the fold in training);
  * auto: what `augment_on: auto` measures (trainer.placement.measure_images_per_s, both
    placements on a few batches of the real step), the placement it picks and what it costs;
  * inference: images/s of one member of a bundle (predict_probs from the decoded images,
    the bundle's path minus JPEG decoding), with and without hflip TTA;
  * compile: the limit again with `compile: true`, and the one-off compile time;
  * workers: 1, 2, 4 worker processes on the one device, each training a trial like the
    pipeline (with the environment maskopt.search.gpus plans for `--gpus 0,0,...`): total
    training images/s over all of them, validation included.
The limit and both pipelines alternate epoch by epoch in one process (the first epoch of
each is a warm-up and not counted), so their ratios come from one run. Writes the
BENCHMARKS.md section "gpu" (or `--report FILE`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from bench.bench_trainer import bench_config  # noqa: E402  (the TrainConfig of a measurement)

GPU_BACKBONES = "resnet34,efficientnet_b0,efficientnet_b3,convnext_tiny,mobilenetv3_large_100"
CPU_BACKBONES = "mobilenetv3_small_050,resnet10t"
TARGET = 0.9
READING = """Reading it. `augment_on` defaults to `cpu`, what every config trained with before the key
existed; the `default` space, made for a GPU, sets `auto`: each search worker times both
placements (the auto table) and trains with the faster. A trial feeds its folds from one pool
of its worker's loader processes (16 cores and one worker: 15; with `--gpus 0,0`: 7 each);
before issue 18 it split them between its folds (3 per fold of 5; 1 with `--gpus 0,0`), so
per-image augmentation fed the fold in training at about (loaders per fold) x
(albumentations per core, table above) images/s; the pool table shows what the one pool
changes. The device path has its own cost: kornia draws each operation's parameters with many
small tensor operations in the training process (profiled on the CPU: about 870 aten calls a
batch for RandomAffine, 520 for ColorJitter), which compete with the model step's kernel
launches for that one Python thread. On a CPU, kornia's colour operations are much slower than
albumentations (table), so `device` is for GPUs. `compile: true` is opt-in and in no space: the
compile table's gain has to pay for its cold compile (measured with an empty inductor cache, as
on a machine's first run; later runs there reuse the cache and compile in seconds) within a
trial's few thousand images; on a GPU not measured yet. The CPU worker rows compare one worker using 2 OpenMP
threads with two using 1 each, on 2 cores shared with other jobs: thread contention (see the
README), not a forecast for a GPU."""


# -- GPU utilisation ---------------------------------------------------------------------------


class GpuSampler:
    """nvidia-smi's utilisation.gpu of one GPU every 200 ms, in a background process."""

    def __init__(self, device) -> None:
        self.samples: list[tuple[float, float]] = []
        self.proc: subprocess.Popen | None = None
        if device.type != "cuda" or shutil.which("nvidia-smi") is None:
            return
        import torch

        if os.environ.get("CUDA_VISIBLE_DEVICES") is None:  # torch's numbering is nvidia-smi's
            target = str(device.index or 0)
        else:  # renumbered: name the GPU by its UUID
            uuid = str(torch.cuda.get_device_properties(device).uuid)
            target = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
        self.proc = subprocess.Popen(
            [
                "nvidia-smi",
                "--query-gpu=utilization.gpu",
                "--format=csv,noheader,nounits",
                "-i",
                target,
                "-lms",
                "200",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.samples.append((time.monotonic(), float(line.strip())))
            except ValueError:
                continue

    def mean(self, spans: list[tuple[float, float]]) -> float | None:
        values = [v for t, v in self.samples if any(a <= t <= b for a, b in spans)]
        return sum(values) / len(values) if values else None

    def close(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)


# -- one process: limit, pipelines, inference, compile -----------------------------------------


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_batches(run) -> list:
    """The epoch's batches, read once, unaugmented, already on the device."""
    import numpy as np
    import torch

    out = []
    for _, _, rows in run.sampler:
        x = torch.from_numpy(np.ascontiguousarray(run.images[rows])).to(run.device)
        out.append((x, torch.from_numpy(run.targets[rows]).to(run.device)))
    return out


def _epoch(run) -> tuple[int, float]:
    """(images, seconds) of one training epoch, the device drained before and after."""
    _sync(run.device)
    start = time.perf_counter()
    _, _ = run.train_one_epoch()
    _sync(run.device)
    seconds = time.perf_counter() - start
    run.history.append({})  # advances the epoch counter (batch order, freeze state)
    return len(run.sampler) * run.cfg.batch_size, seconds


def _fed(run) -> tuple[int, float]:
    """(images, seconds) of one epoch of the run's batches, loaded but not trained on."""
    start = time.perf_counter()
    images = sum(len(y) for _, y in run.loader)
    return images, time.perf_counter() - start


def measure_backbone(ds, folds, cfg, device, epochs: int, sampler: GpuSampler) -> dict:
    """Limit, both pipelines, the cpu pipeline on split pools, the feed of the trial's pool
    and of split pools (all alternating epoch by epoch), their images/s and GPU use."""
    from dataclasses import replace

    from maskopt.trainer.loop import FoldRun, LoaderPool, default_workers

    workers = default_workers(device)
    per_fold = max(1, workers // len(folds)) if workers else 0
    limit = FoldRun(replace(cfg, augment=0), ds, folds[0][0], None, device=device, num_workers=0)
    limit.loader = _device_batches(limit)
    pools = {on: LoaderPool(replace(cfg, augment_on=on), ds, device) for on in ("cpu", "device")}
    pipelines = {
        on: [
            FoldRun(replace(cfg, augment_on=on), ds, tr, None, device=device, pool=pools[on])
            for tr, _ in folds
        ]
        for on in ("cpu", "device")
    }
    pipelines["cpu_split"] = [
        FoldRun(replace(cfg, augment_on="cpu"), ds, tr, None, device=device, num_workers=per_fold)
        for tr, _ in folds
    ]
    names = ("limit", "cpu", "device", "cpu_split", "fed", "fed_split")
    totals = {name: [0, 0.0] for name in names}
    spans: dict[str, list[tuple[float, float]]] = {"cpu": [], "device": []}
    try:
        for epoch in range(epochs + 1):
            order = list(names) if epoch % 2 else list(reversed(names))
            for name in order:
                t0 = time.monotonic()
                if name.startswith("fed"):  # the cpu pipelines' folds, loaded only
                    runs, step = pipelines["cpu" + name[3:]], _fed
                else:
                    runs, step = [limit] if name == "limit" else pipelines[name], _epoch
                for run in runs:
                    images, seconds = step(run)
                    if epoch > 0:  # epoch 0 warms up allocations, cuDNN's choices, workers
                        totals[name][0] += images
                        totals[name][1] += seconds
                if epoch > 0 and name in spans:
                    spans[name].append((t0, time.monotonic()))
    finally:
        limit.close()
        for runs in pipelines.values():
            for run in runs:
                run.close()
        for pool in pools.values():
            pool.close()
    ips = {name: n / max(s, 1e-9) for name, (n, s) in totals.items()}
    return {
        **ips,
        "util_cpu": sampler.mean(spans["cpu"]),
        "util_device": sampler.mean(spans["device"]),
        "loaders": workers,
        "loader_per_fold": per_fold,
    }


def measure_auto(ds, cfg, device) -> dict:
    """What `augment_on: auto` measures for `cfg` on `device` (both placements, the trial's
    loader processes), the placement it picks and the seconds it costs. Called directly, so
    the CPU dry run measures too (on a CPU device auto itself picks cpu unmeasured)."""
    from maskopt.trainer.loop import default_workers, measure_images_per_s

    start = time.perf_counter()
    rates = {
        on: measure_images_per_s(cfg, ds, device, on, default_workers(device))
        for on in ("cpu", "device")
    }
    return {
        "auto_cpu": rates["cpu"],
        "auto_device": rates["device"],
        "auto_pick": max(rates, key=lambda on: rates[on]),
        "auto_s": time.perf_counter() - start,
    }


def measure_compile(ds, folds, cfg, device, epochs: int) -> dict:
    """The limit eager and compiled, alternating; compile time = the compiled run's first
    epoch less the eager run's."""
    from dataclasses import replace

    from maskopt.trainer.loop import FoldRun

    runs = {}
    for name, compiled in (("eager", False), ("compiled", True)):
        run = FoldRun(
            replace(cfg, augment=0, compile=compiled),
            ds,
            folds[0][0],
            None,
            device=device,
            num_workers=0,
        )
        run.loader = _device_batches(run)
        runs[name] = run
    totals = {name: [0, 0.0] for name in runs}
    first = {}
    try:
        for epoch in range(epochs + 1):
            for name in ("eager", "compiled") if epoch % 2 else ("compiled", "eager"):
                images, seconds = _epoch(runs[name])
                if epoch == 0:
                    first[name] = seconds
                else:
                    totals[name][0] += images
                    totals[name][1] += seconds
    finally:
        for run in runs.values():
            run.close()
    eager = totals["eager"][0] / totals["eager"][1]
    compiled = totals["compiled"][0] / totals["compiled"][1]
    return {
        "eager": eager,
        "compiled": compiled,
        "compile_s": first["compiled"] - first["eager"],
    }


def measure_inference(ds, cfg, device, repeats: int = 3) -> dict:
    """images/s of predict_probs over the decoded images, without and with hflip TTA."""
    import numpy as np

    from maskopt.trainer.models import create_model
    from maskopt.trainer.predict import predict_probs

    model = create_model(cfg, device)
    images = np.asarray(ds.images(cfg.image_size))
    out = {}
    for tta in (False, True):
        predict_probs(model, images[:256], device=device, tta=tta)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            _sync(device)
            t = time.perf_counter()
            predict_probs(model, images, device=device, tta=tta)
            _sync(device)
            best = min(best, time.perf_counter() - t)
        out["tta" if tta else "plain"] = len(images) / best
    del model
    return out


def augment_costs(ds, size: int, device, n: int = 256) -> dict:
    """At `size` px: albumentations on one CPU core (images/s per core) and kornia on `device`
    (images/s for batches of 64), for strengths 1..3."""
    import numpy as np
    import torch

    from maskopt.data.augment import create_augment
    from maskopt.data.device_augment import create_device_augment

    images = np.array(ds.images(size)[:n])  # a writable copy
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    try:
        for strength in (1, 2, 3):
            aug = create_augment(strength, seed=0)
            assert aug is not None
            for im in images[:16]:
                aug(im)
            t = time.perf_counter()
            for im in images:
                aug(im)
            per_core = len(images) / (time.perf_counter() - t)
            out[strength] = {"albumentations_per_core": per_core}
    finally:
        torch.set_num_threads(threads)
    batch = torch.from_numpy(images[:64]).to(device).permute(0, 3, 1, 2).float().div(255)
    for strength in (1, 2, 3):
        dev = create_device_augment(strength)
        assert dev is not None
        dev(batch)
        _sync(device)
        t = time.perf_counter()
        for _ in range(3):
            dev(batch)
        _sync(device)
        out[strength]["kornia"] = 3 * len(batch) / (time.perf_counter() - t)
    return out


# -- several worker processes on one device ----------------------------------------------------


def _worker(env, data_dir, cache_dir, cfg_dict, n_folds, epochs, device, barrier, results):
    os.environ.update(env)  # before torch: CUDA_VISIBLE_DEVICES, MASKOPT_CPUS, OMP_NUM_THREADS
    from maskopt.data.layout import read_train
    from maskopt.trainer.config import config_from_dict
    from maskopt.trainer.device import resolve_device
    from maskopt.trainer.folds import create_folds
    from maskopt.trainer.loop import FoldRun, LoaderPool, default_workers

    dev = resolve_device(device)
    ds = read_train(data_dir, cache_dir=cache_dir, progress=False)
    cfg = config_from_dict(cfg_dict)
    folds = create_folds(ds.strata(), ds.groups(), n_folds, seed=0)
    pool = LoaderPool(cfg, ds, dev, num_workers=default_workers(dev))  # the trial's, as searched
    runs = [FoldRun(cfg, ds, tr, va, device=dev, pool=pool) for tr, va in folds]
    try:
        for run in runs:  # warm-up epoch, then all workers start together
            run.run_epoch()
        barrier.wait()
        start = time.monotonic()
        images = 0
        for _ in range(epochs):
            for run in runs:
                run.run_epoch()  # validation included, as in a trial
                images += len(run.sampler) * cfg.batch_size
        _sync(dev)
        results.put({"images": images, "start": start, "end": time.monotonic(), "ok": True})
    except BaseException as err:  # reported, not raised: the parent must not hang
        results.put({"ok": False, "error": f"{type(err).__name__}: {err}"})
        barrier.abort()
    finally:
        for run in runs:
            run.close()
        pool.close()


def measure_workers(data_dir, cache_dir, cfg, n_workers, n_folds, epochs, device) -> dict:
    from dataclasses import asdict

    from maskopt.search.gpus import plan_workers

    ctx = multiprocessing.get_context("spawn")
    plans = plan_workers(("0",) * n_workers if device.type == "cuda" else (), n_workers)
    barrier = ctx.Barrier(n_workers)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            args=(
                p.env,
                str(data_dir),
                str(cache_dir) if cache_dir else None,
                asdict(cfg),
                n_folds,
                epochs,
                device.type,
                barrier,
                results,
            ),
        )
        for p in plans
    ]
    for p in procs:
        p.start()
    rows = []
    try:
        for _ in procs:
            rows.append(results.get(timeout=1800))
    except queue.Empty:
        rows.append({"ok": False, "error": "a worker gave no result in 30 minutes"})
    for p in procs:
        p.join(60)
        if p.is_alive():
            p.terminate()
    bad = [r["error"] for r in rows if not r["ok"]]
    if bad:
        raise RuntimeError(f"{n_workers} workers: {bad[0]}")
    wall = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    return {
        "workers": n_workers,
        "total": sum(r["images"] for r in rows) / wall,
        "loader_per_worker": plans[0].loader_workers(device.type),
        "cpus_per_worker": plans[0].cpus,
    }


# -- the report --------------------------------------------------------------------------------


def _fmt(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def machine(device) -> str:
    import torch

    cpu = f"{platform.machine()}, {os.cpu_count()} cores"
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return (
            f"{p.name} ({p.total_memory / 2**30:.0f} GiB), {cpu}, torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"no GPU: {cpu} (shared; load {load:.1f} at the start), torch {torch.__version__}"


def report(args, cmd: str, device, setup: dict, rows: list, costs: dict, compiled, workers) -> str:
    on_gpu = device.type == "cuda"
    lines = [
        "## GPU data path: real pipeline vs batches in memory (`bench/bench_gpu.py`)",
        "",
        f"`{cmd}` on {setup['machine']}.",
        f"{setup['images']} synthetic images ({setup['people']} people), {args.folds} folds "
        f"(each pipeline trains all {args.folds}, epoch by epoch in turn, as a trial does), "
        f"{args.size}x{args.size * 5 // 4} px, batch {args.batch_size}, augment {args.augment}, "
        f"from scratch; {args.epochs} measured epoch(s) after one warm-up, the limit and both "
        f"pipelines alternating epoch by epoch in one process. Loader processes: "
        f"{setup['loaders']} a trial (this process's share of cores - 1), one pool feeding "
        f"whichever fold trains; the split pools, as the search had them before: "
        f"{args.folds} x {setup['loader_per_fold']}.",
        "",
    ]
    if not on_gpu:
        lines += [
            "**On a GPU: not measured yet** (no GPU in the session that wrote this section; "
            "`bash scripts/device_check.sh OUTDIR` on a GPU machine writes it). The rows below "
            "are the CPU dry run: tiny backbones, numbers say only that the code runs.",
            "",
        ]
    lines += [
        "| backbone | limit img/s | pipeline, augment on CPU | ratio | pipeline, augment on "
        "device | ratio | GPU util. CPU / device aug. (%) | inference img/s | with TTA |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        util = f"{_fmt(r['util_cpu'])} / {_fmt(r['util_device'])}" if on_gpu else "n/a (no GPU)"
        lines.append(
            f"| {r['backbone']} | {_fmt(r['limit'])} | {_fmt(r['cpu'])} | "
            f"{r['cpu'] / r['limit']:.2f} | {_fmt(r['device'])} | "
            f"{r['device'] / r['limit']:.2f} | {util} | {_fmt(r['plain'])} | {_fmt(r['tta'])} |"
        )
    verdicts = []
    for r in rows:
        best = max(("cpu", r["cpu"]), ("device", r["device"]), key=lambda kv: kv[1])
        ratio = best[1] / r["limit"]
        verdicts.append(
            f"{r['backbone']} {ratio:.2f} (augment on {best[0]}: "
            f"{'meets' if ratio >= TARGET else 'misses'})"
        )
    lines += ["", f"Target: pipeline / limit >= {TARGET} (0.95 the aim). Best of the two: "]
    lines[-1] += "; ".join(verdicts) + "."
    lines += [
        "",
        "One loader pool a trial (the pipelines above) against one a fold (before), augment on "
        "CPU: images/s fed to the training fold (its batches loaded, not trained on) and "
        "trained.",
        "",
        "| backbone | fed, one pool | fed, a pool a fold | ratio | trained, one pool "
        "| trained, a pool a fold | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['backbone']} | {_fmt(r['fed'])} | {_fmt(r['fed_split'])} | "
            f"{r['fed'] / r['fed_split']:.2f} | {_fmt(r['cpu'])} | {_fmt(r['cpu_split'])} | "
            f"{r['cpu'] / r['cpu_split']:.2f} |"
        )
    lines += [
        "",
        "`augment_on: auto` (trainer.placement): both placements timed on a few batches of the "
        "real training step with the trial's loader processes"
        + (
            ""
            if on_gpu
            else " (on a CPU device auto picks cpu without measuring; timed here to run the code)"
        )
        + "; the pick, against the better pipeline above.",
        "",
        "| backbone | cpu img/s | device img/s | picks | the pipelines' better | seconds |",
        "| --- | ---: | ---: | --- | --- | ---: |",
    ]
    for r in rows:
        better = "cpu" if r["cpu"] >= r["device"] else "device"
        lines.append(
            f"| {r['backbone']} | {_fmt(r['auto_cpu'])} | {_fmt(r['auto_device'])} | "
            f"{r['auto_pick']} | {better} | {r['auto_s']:.1f} |"
        )
    lines += [
        "",
        f"Augmentation alone (images/s): albumentations on one CPU core, kornia on "
        f"{device.type} in batches of 64:",
        "",
        "| size | strength | albumentations per core | kornia on the device |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for size, by_strength in costs.items():
        for s, c in by_strength.items():
            lines.append(
                f"| {size} | {s} | {_fmt(c['albumentations_per_core'])} | {_fmt(c['kornia'])} |"
            )
    if workers:
        lines += [
            "",
            f"Several workers on the one {'GPU' if on_gpu else 'CPU'} (augment on "
            f"{workers[0]['augment_on']}; each worker a trial of all folds, validation included, "
            "in the environment `--gpus 0,0,...` gives it): total training images/s of all "
            "workers together.",
            "",
            "| backbone | workers | cores each | loader processes each | total img/s "
            "| vs 1 worker |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        base = {w["backbone"]: w["total"] for w in workers if w["workers"] == 1}
        for w in workers:
            vs = f"{w['total'] / base[w['backbone']]:.2f}x" if w["backbone"] in base else "-"
            lines.append(
                f"| {w['backbone']} | {w['workers']} | {w['cpus_per_worker']} | "
                f"{w['loader_per_worker']} | {_fmt(w['total'])} | {vs} |"
            )
    if compiled:
        lines += [
            "",
            "`compile: true` (torch.compile of the training step; the limit, eager and "
            "compiled alternating):",
            "",
            "| backbone | eager img/s | compiled img/s | ratio | cold compile (s) |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for c in compiled:
            lines.append(
                f"| {c['backbone']} | {_fmt(c['eager'])} | {_fmt(c['compiled'])} | "
                f"{c['compiled'] / c['eager']:.2f} | {c['compile_s']:.0f} |"
            )
    lines += ["", READING]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--short", action="store_true", help="a smaller run (device check)")
    p.add_argument("--backbones", help="comma-separated timm names (default: by device)")
    p.add_argument("--size", type=int, help="image width (default 224 on a GPU, 64 on the CPU)")
    p.add_argument("--batch-size", type=int, help="default 64 on a GPU, 32 on the CPU")
    p.add_argument("--augment", type=int, default=3)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--people", type=int, help="synthetic people (default by mode)")
    p.add_argument("--epochs", type=int, help="measured epochs (default by mode)")
    p.add_argument("--workers", default=None, help="worker counts to run together, e.g. 1,2,4")
    p.add_argument(
        "--workers-backbones",
        help="backbones for the workers runs (default: efficientnet_b0 on a GPU, else the first)",
    )
    p.add_argument(
        "--compile-backbones", help="backbones to time with compile: true ('none': skip)"
    )
    p.add_argument(
        "--cost-sizes", help="sizes to time augmentation alone at (default: --size and 224)"
    )
    p.add_argument("--threads", type=int, help="torch threads here (default: 1 on the CPU)")
    p.add_argument("--data", type=Path, help="an existing data folder (default: synthesise one)")
    p.add_argument("--report", type=Path, help="write the section into this file")
    p.add_argument("--no-write", action="store_true", help="print only")
    args = p.parse_args(argv)

    import torch

    from maskopt.data.layout import read_train
    from maskopt.data.synth import synthesize
    from maskopt.trainer.device import resolve_device
    from maskopt.trainer.folds import create_folds

    device = resolve_device(args.device)
    on_gpu = device.type == "cuda"
    if args.threads or not on_gpu:  # on a shared CPU, spinning threads only slow each other
        torch.set_num_threads(args.threads or 1)
    backbones = (args.backbones or (GPU_BACKBONES if on_gpu else CPU_BACKBONES)).split(",")
    args.size = args.size or (224 if on_gpu else 64)
    args.batch_size = args.batch_size or (64 if on_gpu else 32)
    args.people = args.people or {(True, True): 100, (True, False): 300}.get(
        (on_gpu, args.short), 30
    )
    args.epochs = args.epochs or (2 if args.short else 3)
    args.cost_sizes = sorted(
        {int(x) for x in args.cost_sizes.split(",")} if args.cost_sizes else {args.size, 224}
    )
    args.workers = args.workers or ("1,2,4" if on_gpu else "1,2")
    # the workers runs: the likely case on a GPU (a small backbone at 224 px)
    small = "efficientnet_b0" if on_gpu and "efficientnet_b0" in backbones else backbones[0]
    worker_backbones = (args.workers_backbones or small).split(",")
    compile_backbones = args.compile_backbones or (
        backbones[0] if args.short else ",".join(backbones)
    )
    compile_backbones = [] if compile_backbones == "none" else compile_backbones.split(",")
    cmd = "python -m bench.bench_gpu " + " ".join(sys.argv[1:] if argv is None else argv)

    with tempfile.TemporaryDirectory(prefix="maskopt-bench-gpu-") as tmp:
        # a fresh inductor cache: the compile column is what a machine's first run pays
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(tmp) / "inductor"))
        data = args.data
        if data is None:
            data = Path(tmp) / "data"
            synthesize(data, people=args.people, eval_people=0, seed=0, progress=False)
        cache = Path(tmp) / "cache"
        ds = read_train(data, cache_dir=cache, progress=False)
        ds.images(args.size)  # built once before timing, as a study does
        folds = create_folds(ds.strata(), ds.groups(), args.folds, seed=0)
        sampler = GpuSampler(device)
        setup = {"machine": machine(device), "images": len(ds), "people": ds.n_people}
        rows, compiled, workers = [], [], []
        try:
            costs = {size: augment_costs(ds, size, device) for size in args.cost_sizes}
            print("augmentation alone (img/s):", json.dumps(costs), flush=True)
            for backbone in backbones:
                cfg = bench_config(args, backbone)
                t = time.perf_counter()
                r = measure_backbone(ds, folds, cfg, device, args.epochs, sampler)
                r.update(measure_inference(ds, cfg, device), backbone=backbone)
                r.update(measure_auto(ds, cfg, device))
                setup["loaders"], setup["loader_per_fold"] = r["loaders"], r["loader_per_fold"]
                rows.append(r)
                print(
                    f"{backbone}: limit {r['limit']:.0f}, pipeline cpu-aug {r['cpu']:.0f} "
                    f"({r['cpu'] / r['limit']:.2f}), device-aug {r['device']:.0f} "
                    f"({r['device'] / r['limit']:.2f}) img/s; cpu-aug split pools "
                    f"{r['cpu_split']:.0f}, fed {r['fed']:.0f} / split {r['fed_split']:.0f}; auto "
                    f"{r['auto_cpu']:.0f} / {r['auto_device']:.0f} -> {r['auto_pick']} "
                    f"({r['auto_s']:.1f} s); util {r['util_cpu']} / "
                    f"{r['util_device']}; inference {r['plain']:.0f}, TTA {r['tta']:.0f} img/s "
                    f"({time.perf_counter() - t:.0f} s)",
                    flush=True,
                )
                if backbone in compile_backbones:
                    c = measure_compile(ds, folds, cfg, device, args.epochs)
                    c["backbone"] = backbone
                    compiled.append(c)
                    print(
                        f"{backbone} compile: eager {c['eager']:.0f}, compiled "
                        f"{c['compiled']:.0f} img/s ({c['compiled'] / c['eager']:.2f}), "
                        f"compile {c['compile_s']:.0f} s",
                        flush=True,
                    )
            on = "device" if on_gpu else "cpu"
            for backbone in worker_backbones:
                cfg = bench_config(args, backbone, augment_on=on)
                for n in (int(x) for x in args.workers.split(",")):
                    t = time.perf_counter()
                    w = measure_workers(data, cache, cfg, n, args.folds, args.epochs, device)
                    w.update(backbone=backbone, augment_on=on)
                    workers.append(w)
                    print(
                        f"{backbone} x{n} workers: total {w['total']:.0f} img/s "
                        f"({time.perf_counter() - t:.0f} s)",
                        flush=True,
                    )
        finally:
            sampler.close()
    md = report(args, cmd, device, setup, rows, costs, compiled, workers)
    print(md)
    if not args.no_write:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from bench._report import BENCHMARKS, write_section

        write_section("gpu", md, args.report or BENCHMARKS)
    worst = min(max(r["cpu"], r["device"]) / r["limit"] for r in rows)
    print(
        f"pipeline / limit, the better augmentation placement, worst backbone: {worst:.2f} "
        f"(target {TARGET}); section 'gpu' "
        + ("not written" if args.no_write else f"written to {args.report or BENCHMARKS}")
    )
    del torch
    return 0


if __name__ == "__main__":
    sys.exit(main())
