"""The fit / validate loop: `FoldRun` trains one model epoch by epoch, `fit` runs it to the end.

Data path: the training part comes from `TrainSet.images(cfg.image_size)` (a uint8
memmap, already cropped and resized). Each loader item is a whole batch: rows picked
from the memmap, augmented per image when `cfg.augment_on` is "cpu", stacked; the uint8
batch crosses to the device (pinned, non-blocking on CUDA), where it becomes float, is
augmented as a batch when `augment_on` is "device" (maskopt.data.device_augment), is
normalised, and is mixed with CutMix or MixUp when `cfg.mix` asks (maskopt.trainer.mix).
Validation always scores the TRUE labels (old age 60); training targets use `cfg.old_age`.

Loader processes (`default_workers`): none on the CPU, where the model needs the cores; on a
GPU all the cores this process may use but one (the one that drives the GPU). The search
divides the machine's cores between the workers sharing it (maskopt.search.gpus sets
MASKOPT_CPUS for each). A `LoaderPool` owns them: one persistent DataLoader whose items are
whole batches, fed each fold's batch keys in turn. A trial makes one pool for all its folds
(they train one after another, read the same images with the same config, and differ only in
their rows), so the fold in training gets every loader process of the trial, not 1/k of them;
a FoldRun on its own (`fit`, `maskopt train`, the export's retraining) makes its own pool.
`augment_on: auto` is resolved when the pool is made (maskopt.trainer.placement: cpu on a CPU
device, else the faster of the two, measured once per process).

Repeatable on the CPU: the model is initialised from `cfg.seed`, batch order and per-image
augmentation are seeded per (seed, epoch, batch), and each FoldRun keeps its own torch
RNG state (which also draws dropout, device augmentation and mixing), so folds interleaved
epoch by epoch (as the search does) train exactly as they would alone, with their own pool or
a shared one, and with any number of loader processes.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from maskopt.data.augment import create_augment
from maskopt.data.device_augment import create_device_augment
from maskopt.data.labels import NUM_CLASSES, OLD_AGE
from maskopt.errors import ConfigError
from maskopt.trainer.config import TrainConfig
from maskopt.trainer.device import (
    amp_dtype,
    check_placement,
    norm_tensors,
    oom_as_error,
    resolve_device,
    same_device,
    to_input,
)
from maskopt.trainer.losses import (
    DISTILL_ALPHA,
    class_weights,
    create_loss,
    distill_loss,
    soften,
)
from maskopt.trainer.memory import free_memory
from maskopt.trainer.metrics import macro_f1
from maskopt.trainer.mix import mix_batch
from maskopt.trainer.models import create_model
from maskopt.trainer.optim import create_optimizer, create_scheduler
from maskopt.trainer.placement import resolve_augment_on
from maskopt.trainer.predict import predict_probs


@dataclass
class FitResult:
    best_f1: float | None  # macro F1 on the validation part at the best epoch (None: no validation)
    best_epoch: int  # 1-based: epochs trained when the best was reached (= epochs when full)
    epochs_run: int
    history: list[dict]  # one dict per epoch (see FoldRun.run_epoch)
    val_index: np.ndarray | None  # indices into the TrainSet
    val_probs: np.ndarray | None  # (n_val, 18) float32 at the best epoch
    state_dict: dict  # best weights, CPU tensors
    config: TrainConfig
    images_per_s: float  # training throughput, mean over epochs
    seconds: float
    extra: dict = field(default_factory=dict)


def _batch_seed(seed: int, epoch: int, batch: int) -> int:
    # a distinct, stable stream per (seed, epoch, batch), whichever worker draws it
    return int(np.random.SeedSequence([seed, epoch, batch]).generate_state(1)[0])


class _EpochBatches:
    """Sampler yielding (epoch, batch number, sorted row indices) for one epoch at a time."""

    def __init__(self, index: np.ndarray, batch_size: int, seed: int, drop_last: bool) -> None:
        self.index = index
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.index)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = self.index[rng.permutation(len(self.index))]
        for b in range(len(self)):
            rows = order[b * self.batch_size : (b + 1) * self.batch_size]
            # sorted rows read the memmap front to back; order within a batch does not matter
            yield self.epoch, b, np.sort(rows)


class _BatchReader:
    """Dataset whose item is a whole batch: uint8 NHWC tensor and int64 targets, and the soft
    targets of those rows when a student is distilled ((N, C) float32)."""

    def __init__(
        self,
        images: np.ndarray,
        targets: np.ndarray,
        augment,
        seed: int,
        soft: np.ndarray | None = None,
    ) -> None:
        self.images = images
        self.targets = targets
        self.augment = augment
        self.seed = seed
        self.soft = soft

    def __getitem__(self, key):

        epoch, b, rows = key
        x = np.asarray(self.images[rows])
        if self.augment is not None:
            _reseed(self.augment, _batch_seed(self.seed, epoch, b))
            x = np.stack([self.augment(im) for im in x])
        batch = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(self.targets[rows])
        if self.soft is None:
            return batch
        return (*batch, torch.from_numpy(self.soft[rows]))


def _reseed(augment, seed: int) -> None:
    if hasattr(augment, "set_random_seed"):  # data.augment.Augment / albumentations Compose
        augment.set_random_seed(seed)
    else:  # a plain callable drawing from numpy's global RNG
        np.random.seed(seed % 2**32)


class _FoldSwitch:
    """The pool's sampler: the batch keys of the fold it was last pointed at. A DataLoader
    iterates its sampler in the training process at each `iter()`, persistent workers too."""

    def __init__(self) -> None:
        self.fold: _EpochBatches | None = None

    def __len__(self) -> int:
        return 0 if self.fold is None else len(self.fold)

    def __iter__(self):
        return iter(()) if self.fold is None else iter(self.fold)


def _feed_key(cfg: TrainConfig, augment_on: str) -> tuple:
    """What a batch read for `cfg` depends on besides its rows: FoldRuns that agree on it can
    share one pool (the folds of a trial all do: they share the config)."""
    return (cfg.image_size, cfg.old_age, cfg.seed, cfg.augment if augment_on == "cpu" else 0)


class LoaderPool:
    """One persistent DataLoader feeding whichever FoldRun is training (`batches(sampler)`).

    Its processes read rows from the decoded-image memmap and augment them per image when the
    placement is "cpu"; a fold's batches are keyed by (epoch, batch, rows) and augmented from
    a seed of (cfg.seed, epoch, batch), so a batch is the same whichever pool or process makes
    it. `augment_on: auto` is resolved here, where the device is known (`placement`).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        data,
        device: str | torch.device = "auto",
        num_workers: int | None = None,
        soft_targets: np.ndarray | None = None,
    ) -> None:
        """`soft_targets`: (N, C) probabilities in the data's order (already softened) that
        each batch carries as its third part, for a distilled student."""
        self.data = data
        self.soft = soft_targets
        self.device = resolve_device(device)
        self.workers = default_workers(self.device) if num_workers is None else num_workers
        self.placement = resolve_augment_on(
            cfg, data, self.device, num_workers=self.workers, measure=measure_images_per_s
        )
        self.augment_on = self.placement.chosen
        self.key = _feed_key(cfg, self.augment_on)
        self._switch = _FoldSwitch()
        self._turn = 0
        augment = create_augment(cfg.augment) if self.augment_on == "cpu" else None
        targets = np.asarray(data.labels(cfg.old_age), dtype=np.int64)
        self.loader: Any = torch.utils.data.DataLoader(
            _BatchReader(data.images(cfg.image_size), targets, augment, cfg.seed, soft_targets),  # type: ignore[arg-type]
            sampler=self._switch,
            batch_size=None,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=self.workers > 0,
            prefetch_factor=4 if self.workers > 0 else None,
            # its own stream for the workers' base seed: a pool shared by folds, or not, leaves
            # each fold's torch RNG stream alone (FoldRun.train_one_epoch draws for it)
            generator=torch.Generator().manual_seed(cfg.seed),
        )

    def serves(self, cfg: TrainConfig, data, device: torch.device) -> str | None:
        """Why this pool cannot feed a FoldRun of `cfg` on `data` and `device` (None: it can)."""

        on = self.augment_on if cfg.augment_on == "auto" else cfg.augment_on
        if self.soft is not None:
            return "it carries a student's soft targets"
        if data is not self.data:
            return "it reads another data set"
        if not same_device(device, self.device):
            return f"it feeds {self.device}, the run trains on {device}"
        if on != self.augment_on or _feed_key(cfg, on) != self.key:
            return (
                f"it reads (image_size, old_age, seed, cpu augment) = {self.key} with augment_on "
                f"{self.augment_on!r}, the run needs {_feed_key(cfg, on)} with {on!r}"
            )
        return None

    def batches(self, sampler: _EpochBatches):
        """One epoch of `sampler`'s batches, (uint8 NHWC, int64 targets), from the pool's
        processes. A later call takes the pool over: an earlier epoch left unfinished ends."""
        if self.loader is None:
            raise RuntimeError("LoaderPool.batches after close()")
        self._turn += 1
        turn = self._turn
        self._switch.fold = sampler
        it = iter(self.loader)  # persistent workers: the one iterator, reset to this sampler
        while True:
            if turn != self._turn:  # checked before taking a batch that is not this epoch's
                raise RuntimeError("a LoaderPool fed another fold before this epoch ended")
            try:
                batch = next(it)
            except StopIteration:
                return
            yield batch

    def feed(self, sampler: _EpochBatches) -> _Feed:
        """`sampler`'s batches as an iterable with len (FoldRun.loader)."""
        return _Feed(self, sampler)

    def close(self) -> None:
        """Drop the DataLoader and its persistent processes."""
        self.loader = None
        self._switch.fold = None


class _Feed:
    """One fold's view of a LoaderPool: each `iter()` is one epoch of its sampler's batches."""

    def __init__(self, pool: LoaderPool, sampler: _EpochBatches) -> None:
        self.pool = pool
        self.sampler = sampler

    @property
    def dataset(self) -> _BatchReader:
        return self.pool.loader.dataset

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        return self.pool.batches(self.sampler)


def _env_int(name: str, lo: int, environ: Mapping[str, str] | None = None) -> int | None:
    env = (os.environ if environ is None else environ).get(name)
    if env is None:
        return None
    try:
        value = int(env)
    except ValueError:
        value = lo - 1
    if value < lo:
        raise ConfigError(f"{name}: expected an integer >= {lo}, but got {env!r}.")
    return value


def cpu_share(environ: Mapping[str, str] | None = None) -> int:
    """The cores this process may use: $MASKOPT_CPUS (the search's share for each worker on a
    machine, maskopt.search.gpus), else the cores the OS lets it run on."""
    share = _env_int("MASKOPT_CPUS", 1, environ)
    if share is not None:
        return share
    if hasattr(os, "sched_getaffinity"):  # honours taskset / cpusets
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_workers(device: torch.device, *, cpus: int | None = None) -> int:
    """Loader processes for one training run (a trial's LoaderPool: all its folds share them).

    On the CPU: none. Measured on 2 shared cores (bench/bench_trainer.py, BENCHMARKS.md),
    a worker process was not reliably faster (it takes a core from torch or from the
    machine's other jobs), and in-process augmentation kept resnet10t at 0.90-1.06 of its
    in-memory speed. Elsewhere (CUDA, MPS): every core of this process's share but the one
    driving the device (`cpus - 1`, at least 1; cpus: `cpu_share()` unless given).
    MASKOPT_WORKERS=N overrides.
    """
    env = _env_int("MASKOPT_WORKERS", 0)
    if env is not None:
        return env
    if device.type == "cpu":
        return 0
    return max(1, (cpu_share() if cpus is None else cpus) - 1)


class FoldRun:
    """One model being trained on `train_idx` and validated on `val_idx` (or none: all data)."""

    def __init__(
        self,
        cfg: TrainConfig,
        data,
        train_idx: np.ndarray,
        val_idx: np.ndarray | None = None,
        device: str | torch.device = "auto",
        num_workers: int | None = None,
        pool: LoaderPool | None = None,
        soft_targets: np.ndarray | None = None,
    ) -> None:
        """`pool`: a LoaderPool shared with other runs of the same config (the folds of a
        trial); without one the run makes its own of `num_workers` processes
        (`default_workers` when None) and closes it with the run. `soft_targets`: a teacher's
        (N, C) probabilities in the data's order: the run trains a distilled student, its
        loss DISTILL_ALPHA x distill_loss on them (softened by DISTILL_T) + the rest x the
        config's loss on the labels (Hinton et al. 2015)."""

        self.cfg = cfg
        self.device = resolve_device(device)
        self.train_idx = np.asarray(train_idx, dtype=np.int64)
        self.val_idx = None if val_idx is None else np.asarray(val_idx, dtype=np.int64)
        if cfg.batch_size > len(self.train_idx):
            raise ConfigError(
                f"config key 'batch_size': expected at most {len(self.train_idx)} (the images in "
                f"the training part), but got {cfg.batch_size}."
            )
        self.images = data.images(cfg.image_size)
        self.targets = np.asarray(data.labels(cfg.old_age), dtype=np.int64)  # training targets
        self.true_labels = np.asarray(data.labels(OLD_AGE), dtype=np.int64)  # validation: always 60
        self.history: list[dict] = []
        self.best_f1: float | None = None
        self.best_epoch = 0
        self._best_state: dict | None = None
        self._best_probs: np.ndarray | None = None
        self._closed = False
        self._cuda = self.device.type == "cuda"
        if self._cuda:  # fixed input shapes: let cuDNN pick its fastest kernels
            torch.backends.cudnn.benchmark = True

        # the caller's RNG state is left as it was; this run's streams start from cfg.seed
        with (
            oom_as_error(cfg, self.device),
            torch.random.fork_rng(devices=[self.device] if self._cuda else []),
        ):
            torch.manual_seed(cfg.seed)  # CPU and CUDA generators
            model = create_model(cfg, self.device)
            self._rng_state = torch.get_rng_state()  # dropout's stream for this run only
            self._cuda_rng = torch.cuda.get_rng_state(self.device) if self._cuda else None
        self.model: Any = model
        # the training step's forward; the model itself (weights, validation) stays eager
        self._step_model: Any = torch.compile(model) if cfg.compile else model
        self.optimizer = create_optimizer(cfg, model)
        self.scheduler = create_scheduler(
            cfg, self.optimizer, mode="max" if self.val_idx is not None else "min"
        )
        weight = class_weights(cfg, self.targets[self.train_idx])
        self.loss_fn = create_loss(
            cfg, None if weight is None else torch.as_tensor(weight, device=self.device)
        )
        self.mean, self.std = norm_tensors(self.device)
        self.distilled = soft_targets is not None
        if self.distilled:
            soft = np.asarray(soft_targets)
            if soft.shape != (len(self.targets), NUM_CLASSES):
                raise ValueError(
                    f"soft_targets: expected ({len(self.targets)}, {NUM_CLASSES}) probabilities "
                    f"in the data's order, but got shape {soft.shape}."
                )
            if pool is not None:
                raise ValueError(
                    "FoldRun: a distilled run feeds from its own pool, not a shared one"
                )
        if pool is None:
            softened = soften(soft_targets) if soft_targets is not None else None
            self._own_pool: LoaderPool | None = LoaderPool(
                cfg, data, self.device, num_workers, soft_targets=softened
            )
            pool = self._own_pool
        else:
            self._own_pool = None
            if num_workers is not None:
                raise ValueError("FoldRun: num_workers is the size of its own pool; not with pool")
            why = pool.serves(cfg, data, self.device)
            if why is not None:
                raise ValueError(f"FoldRun: the LoaderPool given cannot feed this run: {why}.")
        self.augment_on = pool.augment_on  # "cpu" or "device": `auto` resolved by the pool
        on_device = self.augment_on == "device"
        self.batch_augment = create_device_augment(cfg.augment) if on_device else None
        self.sampler = _EpochBatches(self.train_idx, cfg.batch_size, cfg.seed, drop_last=True)
        self.loader: Any = pool.feed(self.sampler)

    # -- one epoch -------------------------------------------------------------------------

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    def _set_frozen(self, frozen: bool) -> None:
        for p in self.model.backbone.parameters():
            p.requires_grad_(not frozen)

    def train_one_epoch(self) -> tuple[float, float]:
        """Train one epoch; returns (mean training loss, images per second)."""

        cfg, model = self.cfg, self.model
        check_placement(model, self.device, "training")
        frozen = self.epochs_run < cfg.freeze_epochs
        self._set_frozen(frozen)
        model.train()
        if frozen:  # a frozen backbone keeps its batch-norm statistics too
            model.backbone.eval()
        dtype = amp_dtype(self.device)
        self.sampler.epoch = self.epochs_run
        total = torch.zeros((), device=self.device)  # summed on the device: no sync per step
        seen = 0
        n_batches = len(self.sampler)
        self.optimizer.zero_grad(set_to_none=True)
        # Before the pool, each epoch's in-process DataLoader iterator drew its base seed from
        # this stream; the pool draws from its own generator, and this draw keeps the stream
        # (dropout, device augmentation, mixing) as every earlier config trained with it.
        torch.empty((), dtype=torch.int64).random_()
        start = time.perf_counter()
        for step, batch in enumerate(self.loader):
            xb, yb = batch[0], batch[1]
            x = to_input(xb, self.device, self.mean, self.std, augment=self.batch_augment)
            y = yb.to(self.device, non_blocking=True)
            soft = batch[2].to(self.device, non_blocking=True) if self.distilled else None
            y_b = lam = None
            if cfg.mix != "none":
                x, y_b, lam, soft = mix_batch(x, y, cfg.mix, cfg.mix_alpha, soft=soft)
            with torch.autocast(
                self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                logp = self._step_model(x)
            loss = self.loss_fn(logp.float(), y, target_b=y_b, lam=lam)
            if soft is not None:  # a distilled student: the teacher's soft targets, and the labels
                loss = DISTILL_ALPHA * distill_loss(logp.float(), soft) + (1 - DISTILL_ALPHA) * loss
            (loss / cfg.grad_accum).backward()
            if (step + 1) % cfg.grad_accum == 0 or step + 1 == n_batches:
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            total += loss.detach() * len(y)
            seen += len(y)
        train_loss = float(total.item()) / max(seen, 1)
        seconds = time.perf_counter() - start
        if not math.isfinite(train_loss):
            raise ConfigError(
                f"training diverged (loss {train_loss}) with lr={cfg.lr}, "
                f"optimizer={cfg.optimizer!r}, "
                f"loss={cfg.loss!r}: lower lr."
            )
        return train_loss, seen / max(seconds, 1e-9)

    def validate(self) -> tuple[float, float, np.ndarray]:
        """(macro F1, NLL loss, probabilities (n_val, 18)) on the validation part's TRUE labels."""

        assert self.val_idx is not None
        probs = predict_probs(
            self.model,
            self.images,
            rows=self.val_idx,
            device=self.device,
            batch_size=max(self.cfg.batch_size, 64) * 2,
        )
        y = self.true_labels[self.val_idx]
        val_loss = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())
        return macro_f1(y, probs.argmax(1)), val_loss, probs

    def run_epoch(self) -> dict:
        """Train one epoch and validate; the epoch's dict: epoch (1-based), train_loss, val_f1,
        val_loss, lr, images_per_s, seconds (val_f1 and val_loss None without validation)."""

        if self._closed:
            raise RuntimeError("FoldRun.run_epoch after close()")
        if self.epochs_run >= self.cfg.epochs:
            raise RuntimeError(f"FoldRun already ran its {self.cfg.epochs} epochs")
        start = time.perf_counter()
        lr = self.scheduler.lr
        with (
            oom_as_error(self.cfg, self.device),
            torch.random.fork_rng(devices=[self.device] if self._cuda else []),
        ):
            torch.set_rng_state(self._rng_state)
            if self._cuda_rng is not None:
                torch.cuda.set_rng_state(self._cuda_rng, self.device)
            train_loss, ips = self.train_one_epoch()
            self._rng_state = torch.get_rng_state()
            if self._cuda:
                self._cuda_rng = torch.cuda.get_rng_state(self.device)
            val_f1 = val_loss = None
            if self.val_idx is not None:
                val_f1, val_loss, probs = self.validate()
                if self.best_f1 is None or val_f1 > self.best_f1:
                    self.best_f1, self.best_epoch = val_f1, self.epochs_run + 1
                    self._best_probs = probs
                    self._best_state = _cpu_state(self.model)
            else:
                self.best_epoch = self.epochs_run + 1
        self.scheduler.step(val_f1 if self.val_idx is not None else train_loss)
        metrics = {
            "epoch": self.epochs_run + 1,
            "train_loss": train_loss,
            "val_f1": val_f1,
            "val_loss": val_loss,
            "lr": lr,
            "images_per_s": ips,
            "seconds": time.perf_counter() - start,
        }
        self.history.append(metrics)
        return metrics

    # -- results and cleanup ---------------------------------------------------------------

    def result(self) -> FitResult:
        """The best epoch's weights and validation probabilities (the last epoch's weights
        when there is no validation part)."""
        if self.val_idx is None or self._best_state is None:
            if self._closed and self._best_state is None:
                raise RuntimeError("FoldRun.result() after close() with no weights kept")
            if self.val_idx is None and not self._closed:
                self._best_state = _cpu_state(self.model)
        return FitResult(
            best_f1=self.best_f1,
            best_epoch=self.best_epoch,
            epochs_run=self.epochs_run,
            history=list(self.history),
            val_index=self.val_idx,
            val_probs=self._best_probs,
            state_dict=self._best_state or {},
            config=self.cfg,
            images_per_s=float(np.mean([h["images_per_s"] for h in self.history]))
            if self.history
            else 0.0,
            seconds=float(sum(h["seconds"] for h in self.history)),
        )

    def close(self) -> None:
        """Free the model, optimizer and loader (workers included); results stay readable."""
        if self._closed:
            return
        self._closed = True
        if self.val_idx is None and self.history and self._best_state is None:
            self._best_state = _cpu_state(self.model)
        self.model = self._step_model = self.optimizer = self.scheduler = self.loss_fn = None  # type: ignore[assignment]
        self.loader = None  # type: ignore[assignment]
        if self._own_pool is not None:  # a shared pool is its owner's to close
            self._own_pool.close()  # drops persistent workers
            self._own_pool = None
        self.images = None  # type: ignore[assignment]
        free_memory()

    def __enter__(self) -> FoldRun:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _cpu_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def fit(
    cfg: TrainConfig,
    data,
    fold: tuple[np.ndarray, np.ndarray] | None = None,
    on_epoch: Callable[[dict], Any] | None = None,
    device: str | torch.device = "auto",
    num_workers: int | None = None,
    soft_targets: np.ndarray | None = None,
) -> FitResult:
    """Train `cfg` on fold=(train_idx, val_idx), or on all of `data` when fold is None; with
    `soft_targets` (a teacher's probabilities in the data's order) a distilled student.

    `on_epoch(metrics)` runs after each epoch and may raise (the search raises
    optuna.TrialPruned): everything is freed and the exception goes on.
    """
    if fold is None:
        train_idx, val_idx = np.arange(len(data.labels())), None
    else:
        train_idx, val_idx = fold
    run = FoldRun(
        cfg,
        data,
        train_idx,
        val_idx,
        device=device,
        num_workers=num_workers,
        soft_targets=soft_targets,
    )
    try:
        for _ in range(cfg.epochs):
            metrics = run.run_epoch()
            if on_epoch is not None:
                on_epoch(metrics)
        return run.result()
    finally:
        run.close()


# -- measuring a placement (maskopt.trainer.placement: augment_on auto) --------------------


def _sync(device: torch.device) -> None:

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class _Clock:
    """Wraps a FoldRun's loader: passes `batches` batches on, then ends the epoch. It times
    from the first batch's arrival (the processes' start-up is not the steady rate) to the
    next batch's arrival after the last one passed on, with the device drained: `batches`
    training steps and the loading they waited for."""

    def __init__(self, feed, batches: int, device: torch.device) -> None:
        self.feed, self.batches, self.device = feed, batches, device
        self.images = 0
        self.seconds = 0.0

    def __len__(self) -> int:
        return min(len(self.feed), self.batches)

    def __iter__(self):
        start = None
        for i, (xb, yb, *_) in enumerate(self.feed):
            if i == 0:
                start = time.perf_counter()
            if i == self.batches:
                break
            self.images += len(yb)
            yield xb, yb
        _sync(self.device)  # the steps queued on the device have run
        self.seconds = 0.0 if start is None else time.perf_counter() - start


def measure_images_per_s(
    cfg: TrainConfig,
    data,
    device: torch.device,
    augment_on: str,
    num_workers: int,
    *,
    warmup: int = 2,
    batches: int | None = None,
) -> float:
    """Training images/s of `cfg` with `augment_on`: a throwaway FoldRun (from scratch, eager)
    on all of `data`, `warmup` batches untimed (kernel choice, process start),
    then `batches` timed (default max(8, 2 x loader processes): a whole number of rounds of
    the loader processes). The caller's torch RNG state is left as it was."""

    probe = replace(
        cfg, augment_on=augment_on, pretrained=False, weights=None, compile=False, freeze_epochs=0
    )
    batches = batches or max(8, 2 * num_workers)
    with (
        oom_as_error(cfg, device),  # the trial's own batch would not fit either: say so in a line
        torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
        FoldRun(
            probe, data, np.arange(len(data.labels())), None, device, num_workers=num_workers
        ) as run,
    ):
        feed = run.loader
        clocks = [_Clock(feed, warmup, device), _Clock(feed, batches, device)]
        for clock in clocks:
            run.loader = clock
            # a throwaway model that diverges (a trial's large lr) has still timed its steps
            with contextlib.suppress(ConfigError):
                run.train_one_epoch()
    return clocks[1].images / max(clocks[1].seconds, 1e-9)
