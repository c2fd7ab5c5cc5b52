"""FoldRun / fit on the real tiny synthetic set with a real tiny timm model."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch

from maskopt.data.labels import OLD_AGE
from maskopt.errors import ConfigError
from maskopt.trainer.config import load_config, save_config
from maskopt.trainer.device import DeviceOutOfMemory, oom_as_error
from maskopt.trainer.loop import FoldRun, fit
from maskopt.trainer.metrics import macro_f1
from tests.trainer.conftest import tiny_cfg

HISTORY_KEYS = {"epoch", "train_loss", "val_f1", "val_loss", "lr", "images_per_s", "seconds"}


def test_fit_reports_each_epoch_and_keeps_the_best(tiny_set, tiny_folds):
    cfg = tiny_cfg(dropout=0.1)
    seen = []
    r = fit(cfg, tiny_set, tiny_folds[0], on_epoch=seen.append, device="cpu")
    assert [m["epoch"] for m in seen] == [1, 2] and r.history == seen
    assert all(set(m) == HISTORY_KEYS for m in seen)
    assert r.best_f1 == max(m["val_f1"] for m in seen)
    assert seen[r.best_epoch - 1]["val_f1"] == r.best_f1 and r.epochs_run == 2
    train_idx, val_idx = tiny_folds[0]
    assert np.array_equal(r.val_index, val_idx) and r.val_probs.shape == (len(val_idx), 18)
    assert np.allclose(r.val_probs.sum(1), 1, atol=1e-4)
    # the best F1 is the macro F1 of the kept probabilities on the TRUE labels
    assert r.best_f1 == pytest.approx(macro_f1(tiny_set.labels()[val_idx], r.val_probs.argmax(1)))
    assert r.state_dict and all(v.device.type == "cpu" for v in r.state_dict.values())
    assert r.images_per_s > 0 and r.seconds > 0


def test_same_config_and_seed_give_the_same_f1(tiny_set, tiny_folds, tmp_path):
    cfg = tiny_cfg(dropout=0.2, seed=7)
    save_config(cfg, tmp_path / "cfg.yaml")
    loaded = load_config(tmp_path / "cfg.yaml")
    a = fit(cfg, tiny_set, tiny_folds[1], device="cpu")
    b = fit(loaded, tiny_set, tiny_folds[1], device="cpu")
    assert a.best_f1 == b.best_f1
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert np.array_equal(a.val_probs, b.val_probs)
    c = fit(tiny_cfg(dropout=0.2, seed=8), tiny_set, tiny_folds[1], device="cpu")
    assert [h["train_loss"] for h in c.history] != [h["train_loss"] for h in a.history]


def test_interleaved_runs_train_as_they_would_alone(tiny_set, tiny_folds):
    """The search trains folds epoch by epoch in turn; each run keeps its own RNG streams."""
    cfg = tiny_cfg(dropout=0.3)
    alone = fit(cfg, tiny_set, tiny_folds[0], device="cpu")
    runs = [FoldRun(cfg, tiny_set, *tiny_folds[k], device="cpu") for k in (0, 2)]
    try:
        for _ in range(cfg.epochs):
            for run in runs:
                run.run_epoch()
        assert [h["train_loss"] for h in runs[0].result().history] == [
            h["train_loss"] for h in alone.history
        ]
    finally:
        for run in runs:
            run.close()


def test_old_age_moves_training_targets_not_validation(tiny_set, tiny_folds):
    ages = np.array([r.age for r in tiny_set.records])
    moved = (ages >= 50) & (ages < OLD_AGE)
    assert moved.any(), "the tiny set should hold people aged 50-59"
    cfg = tiny_cfg(old_age=50, epochs=1)
    with FoldRun(cfg, tiny_set, *tiny_folds[0], device="cpu") as run:
        assert np.array_equal(run.targets, tiny_set.labels(50))
        assert (run.targets[moved] % 3 == 2).all() and (run.true_labels[moved] % 3 == 1).all()
        assert np.array_equal(run.targets[~moved], run.true_labels[~moved])
        m = run.run_epoch()
        r = run.result()
    val = tiny_folds[0][1]
    assert m["val_f1"] == pytest.approx(
        macro_f1(tiny_set.labels(OLD_AGE)[val], r.val_probs.argmax(1))
    )
    # the model saw old-age targets for the moved people: training batches carry them
    with FoldRun(cfg, tiny_set, *tiny_folds[0], device="cpu") as run:
        targets = torch.cat([y for _, y in run.loader]).numpy()
    assert np.isin(targets, np.unique(tiny_set.labels(50)[tiny_folds[0][0]])).all()


def test_full_data_trains_all_epochs_without_validation(tiny_set):
    cfg = tiny_cfg(scheduler="plateau")
    r = fit(cfg, tiny_set, None, device="cpu")
    assert r.best_f1 is None and r.val_probs is None and r.val_index is None
    assert r.best_epoch == cfg.epochs == r.epochs_run and r.state_dict
    assert all(h["val_f1"] is None for h in r.history)


def test_freeze_epochs_train_only_the_head(tiny_set, tiny_folds):
    cfg = tiny_cfg(freeze_epochs=1, augment=0)
    with FoldRun(cfg, tiny_set, *tiny_folds[0], device="cpu") as run:
        backbone0 = {k: v.clone() for k, v in run.model.backbone.state_dict().items()}
        head0 = {k: v.clone() for k, v in run.model.head.state_dict().items()}
        run.run_epoch()
        # frozen: weights and batch-norm statistics of the backbone unchanged, head trained
        assert all(torch.equal(v, backbone0[k]) for k, v in run.model.backbone.state_dict().items())
        assert not all(torch.equal(v, head0[k]) for k, v in run.model.head.state_dict().items())
        run.run_epoch()
        assert not all(
            torch.equal(v, backbone0[k]) for k, v in run.model.backbone.state_dict().items()
        )


def test_grad_accum_steps_the_optimizer_every_k_batches(tiny_set, tiny_folds):
    cfg = tiny_cfg(grad_accum=3, epochs=1)
    with FoldRun(cfg, tiny_set, *tiny_folds[0], device="cpu") as run:
        steps = []
        run.optimizer.register_step_post_hook(lambda *_: steps.append(1))
        run.run_epoch()
        n_batches = len(tiny_folds[0][0]) // cfg.batch_size
    assert len(steps) == -(-n_batches // 3)


def test_balanced_class_weights_train(tiny_set, tiny_folds):
    cfg = tiny_cfg(class_weights="balanced", loss="focal", head="multi", epochs=1)
    r = fit(cfg, tiny_set, tiny_folds[0], device="cpu")
    assert np.isfinite(r.history[0]["train_loss"]) and 0 <= r.best_f1 <= 1


def test_batch_larger_than_the_training_part_is_a_config_error(tiny_set, tiny_folds):
    cfg = tiny_cfg(batch_size=1000)
    with pytest.raises(ConfigError, match="batch_size"):
        fit(cfg, tiny_set, tiny_folds[0], device="cpu")


def test_an_exception_in_on_epoch_frees_the_run(tiny_set, tiny_folds, monkeypatch):
    import maskopt.trainer.loop as loop

    runs = []

    class Spy(loop.FoldRun):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            runs.append(self)

    monkeypatch.setattr(loop, "FoldRun", Spy)

    class Pruned(Exception):
        pass

    def prune(_m):
        raise Pruned

    with pytest.raises(Pruned):
        loop.fit(tiny_cfg(), tiny_set, tiny_folds[0], on_epoch=prune, device="cpu")
    assert runs[0]._closed and runs[0].model is None and runs[0].loader is None


def test_close_frees_the_model(tiny_set, tiny_folds):
    run = FoldRun(tiny_cfg(epochs=1), tiny_set, *tiny_folds[0], device="cpu")
    run.run_epoch()
    ref = weakref.ref(run.model)
    run.close()
    gc.collect()
    assert ref() is None
    assert run.result().best_epoch == 1  # results stay readable after close


def test_out_of_memory_names_the_config():
    cfg = tiny_cfg()
    with pytest.raises(DeviceOutOfMemory) as err:
        with oom_as_error(cfg, torch.device("cuda")):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    msg = str(err.value)
    assert (
        "test_resnet" in msg
        and "image_size=32" in msg
        and "batch_size=16" in msg
        and "lower" in msg
    )
    with pytest.raises(ValueError):  # anything else passes through
        with oom_as_error(cfg, torch.device("cpu")):
            raise ValueError("other")


def test_workers_give_the_same_batches(tiny_set, tiny_folds):
    """Augmentation is seeded per batch, so a worker process draws what the main process would."""
    cfg = tiny_cfg(augment=3, epochs=1)
    batches = []
    for workers in (0, 1):
        with FoldRun(cfg, tiny_set, *tiny_folds[0], device="cpu", num_workers=workers) as run:
            batches.append([x for x, _ in run.loader])
    assert all(torch.equal(a, b) for a, b in zip(batches[0], batches[1], strict=True))
    # and the augmentation did change the images
    with FoldRun(tiny_cfg(augment=0), tiny_set, *tiny_folds[0], device="cpu") as run:
        plain = [x for x, _ in run.loader]
    assert not torch.equal(plain[0], batches[0][0])


def test_default_workers(monkeypatch):
    from maskopt.trainer.loop import default_workers

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.delenv("MASKOPT_WORKERS")
    monkeypatch.delenv("MASKOPT_CPUS", raising=False)
    assert default_workers(cpu) == 0  # measured: augmenting in-process is faster on 2 cores
    # on a GPU: every core this process may use but the one driving the GPU
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert default_workers(cuda) == 15
    monkeypatch.setenv("MASKOPT_CPUS", "8")  # the search's share for one of 2 workers
    assert default_workers(cuda) == 7 and default_workers(cpu) == 0
    monkeypatch.setenv("MASKOPT_CPUS", "1")
    assert default_workers(cuda) == 1
    monkeypatch.setenv("MASKOPT_WORKERS", "3")
    assert default_workers(cpu) == 3 and default_workers(cuda) == 3
    monkeypatch.setenv("MASKOPT_WORKERS", "many")
    with pytest.raises(ConfigError, match="MASKOPT_WORKERS"):
        default_workers(cpu)
    monkeypatch.delenv("MASKOPT_WORKERS")
    monkeypatch.setenv("MASKOPT_CPUS", "0")
    with pytest.raises(ConfigError, match="MASKOPT_CPUS: expected an integer >= 1"):
        default_workers(cuda)


# -- one loader pool per trial -------------------------------------------------------------------


def _history(run_or_result):
    return [(h["train_loss"], h["val_f1"], h["val_loss"]) for h in run_or_result.history]


@pytest.mark.parametrize("augment_on", ["cpu", "device"])
def test_folds_on_a_shared_pool_train_as_each_alone_with_its_own(tiny_set, tiny_folds, augment_on):
    """The search's path (k folds interleaved on one pool of 2 processes) against each fold
    alone with a pool of its own and no loader process (what `fit` on the CPU does): the same
    batches, augmentation, dropout draws, hence the same losses, F1 and probabilities."""
    from maskopt.trainer.loop import LoaderPool

    cfg = tiny_cfg(dropout=0.3, augment=2, augment_on=augment_on, seed=5)
    alone = [fit(cfg, tiny_set, tiny_folds[k], device="cpu", num_workers=0) for k in (0, 1)]
    pool = LoaderPool(cfg, tiny_set, "cpu", num_workers=2)
    runs = [FoldRun(cfg, tiny_set, *tiny_folds[k], device="cpu", pool=pool) for k in (0, 1)]
    try:
        for _ in range(cfg.epochs):
            for run in runs:
                run.run_epoch()
        shared = [run.result() for run in runs]
    finally:
        for run in runs:
            run.close()
        pool.close()
    for a, s in zip(alone, shared, strict=True):
        assert _history(s) == _history(a)
        assert np.array_equal(s.val_probs, a.val_probs)


def test_every_pool_process_serves_the_training_fold(tiny_set, tiny_folds, tmp_path, monkeypatch):
    """Within one fold's epoch both loader processes of the trial's pool make its batches
    (with split pools each fold had one process, the others idle)."""
    import multiprocessing
    import os

    import maskopt.trainer.loop as loop

    if multiprocessing.get_start_method() != "fork":  # the patch below reaches forked workers only
        pytest.skip("loader processes are not forked here")
    log = tmp_path / "made.log"
    read = loop._BatchReader.__getitem__

    def logged(self, key):  # runs in the loader processes (forked: they see this patch)
        info = torch.utils.data.get_worker_info()
        with log.open("a") as f:
            f.write(f"{os.getpid()} {info.id if info else -1} {' '.join(map(str, key[2]))}\n")
        return read(self, key)

    monkeypatch.setattr(loop._BatchReader, "__getitem__", logged)
    cfg = tiny_cfg(epochs=1, augment=2)
    pool = loop.LoaderPool(cfg, tiny_set, "cpu", num_workers=2)
    runs = [FoldRun(cfg, tiny_set, *tiny_folds[k], device="cpu", pool=pool) for k in (0, 1)]
    try:
        made = []
        for run in runs:
            log.write_text("")
            run.run_epoch()
            made.append([line.split(" ", 2) for line in log.read_text().splitlines()])
            # every batch of this fold's epoch, once each, and nothing else
            want = sorted(" ".join(map(str, rows)) for _, _, rows in run.sampler)
            assert sorted(rows for _, _, rows in made[-1]) == want
    finally:
        for run in runs:
            run.close()
        pool.close()
    for fold_made in made:
        assert {w for _, w, _ in fold_made} == {"0", "1"}
        pids = {pid for pid, _, _ in fold_made}
        assert len(pids) == 2 and str(os.getpid()) not in pids
    # the same two processes served both folds: one pool, not one per fold
    assert {pid for pid, _, _ in made[0]} == {pid for pid, _, _ in made[1]}


def test_a_pool_refuses_a_run_it_cannot_feed(tiny_set, tiny_folds):
    from maskopt.trainer.loop import LoaderPool

    pool = LoaderPool(tiny_cfg(), tiny_set, "cpu", num_workers=0)
    try:
        with pytest.raises(ValueError, match="image_size, old_age, seed, cpu augment"):
            FoldRun(tiny_cfg(augment=2), tiny_set, *tiny_folds[0], device="cpu", pool=pool)
        with pytest.raises(ValueError, match="augment_on 'cpu'.*'device'"):
            FoldRun(tiny_cfg(augment_on="device"), tiny_set, *tiny_folds[0], "cpu", pool=pool)
        with pytest.raises(ValueError, match="num_workers"):
            FoldRun(tiny_cfg(), tiny_set, *tiny_folds[0], "cpu", num_workers=1, pool=pool)
        # a config that trains differently but reads the same batches shares it
        with FoldRun(tiny_cfg(lr=0.01, dropout=0.5), tiny_set, *tiny_folds[0], "cpu", pool=pool):
            pass
    finally:
        pool.close()


@pytest.mark.parametrize("workers", [0, 1])
def test_a_fold_that_takes_the_pool_over_ends_the_earlier_epoch(tiny_set, tiny_folds, workers):
    """Folds take turns on a pool: an epoch left unfinished cannot go on with another fold's
    batches once that fold has started its own."""
    from maskopt.trainer.loop import LoaderPool

    cfg = tiny_cfg(augment=0)
    pool = LoaderPool(cfg, tiny_set, "cpu", num_workers=workers)
    a, b = (FoldRun(cfg, tiny_set, *tiny_folds[k], device="cpu", pool=pool) for k in (0, 1))
    try:
        first = iter(a.loader)
        next(first)
        assert len(list(b.loader)) == len(b.sampler)  # b's whole epoch, only b's batches
        with pytest.raises(RuntimeError, match="fed another fold"):
            next(first)
        assert len(list(a.loader)) == len(a.sampler)  # a new epoch of a's is fine
    finally:
        a.close()
        b.close()
        pool.close()
    with pytest.raises(RuntimeError, match="after close"):
        next(iter(pool.feed(a.sampler)))
