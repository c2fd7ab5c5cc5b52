"""`augment_on: auto`: resolved without measuring on the CPU, measured once per shape elsewhere."""

from __future__ import annotations

import pytest
import torch

import maskopt.trainer.placement as placement
from maskopt.errors import ConfigError
from maskopt.trainer.config import config_from_dict
from maskopt.trainer.loop import FoldRun, LoaderPool, fit, measure_images_per_s
from maskopt.trainer.placement import Placement, resolve_augment_on
from tests.trainer.conftest import tiny_cfg

CUDA = torch.device("cuda")  # only a cache key and a branch here: nothing touches a GPU


@pytest.fixture(autouse=True)
def _empty_cache(monkeypatch):
    monkeypatch.setattr(placement, "_MEASURED", {})


class StubRates:
    """A measurement that records its calls and returns fixed images/s per placement."""

    def __init__(self, cpu: float, device: float) -> None:
        self.rates = {"cpu": cpu, "device": device}
        self.calls: list[tuple] = []

    def __call__(self, cfg, data, device, augment_on, num_workers):
        self.calls.append((cfg.backbone, cfg.batch_size, str(device), augment_on, num_workers))
        return self.rates[augment_on]


def _never(*_a, **_k):
    raise AssertionError("measured where it should not")


def test_auto_is_a_config_value_and_a_bad_one_names_what_is_allowed():
    assert config_from_dict({"augment_on": "auto"}).augment_on == "auto"
    with pytest.raises(ConfigError) as err:
        config_from_dict({"augment_on": "gpu"})
    assert str(err.value) == (
        "config key 'augment_on': expected one of 'cpu', 'device', 'auto', but got 'gpu'."
    )


def test_auto_on_the_cpu_is_cpu_without_measuring(tiny_set):
    got = resolve_augment_on(
        tiny_cfg(augment_on="auto"), tiny_set, torch.device("cpu"), measure=_never
    )
    assert got == Placement("cpu") and not got.measured
    assert got.to_attr() == {"chosen": "cpu", "cpu_images_per_s": None, "device_images_per_s": None}
    # fixed choices stay what they say, on any device; augment 0 has nothing to place
    for on in ("cpu", "device"):
        assert resolve_augment_on(tiny_cfg(augment_on=on), tiny_set, CUDA, measure=_never) == (
            Placement(on)
        )
    cfg = tiny_cfg(augment_on="auto", augment=0)
    assert resolve_augment_on(cfg, tiny_set, CUDA, measure=_never) == Placement("cpu")
    assert placement._MEASURED == {}


def test_auto_elsewhere_measures_both_once_per_shape_and_takes_the_faster(tiny_set):
    stub = StubRates(cpu=300.0, device=750.0)
    cfg = tiny_cfg(augment_on="auto", augment=2)
    got = resolve_augment_on(cfg, tiny_set, CUDA, num_workers=3, measure=stub)
    assert got == Placement("device", 300.0, 750.0) and got.measured
    assert got.to_attr() == {
        "chosen": "device",
        "cpu_images_per_s": 300.0,
        "device_images_per_s": 750.0,
    }
    assert stub.calls == [
        ("test_resnet", 16, "cuda", "cpu", 3),
        ("test_resnet", 16, "cuda", "device", 3),
    ]
    # the same shape again (another trial of the worker; lr, loss and the rest differ): cached
    again = resolve_augment_on(
        tiny_cfg(augment_on="auto", augment=2, lr=0.1, loss="focal"), tiny_set, CUDA, measure=stub
    )
    assert again == got and len(stub.calls) == 2
    # another batch size is another shape: measured once more
    stub.rates = {"cpu": 500.0, "device": 200.0}
    other = resolve_augment_on(replace_batch(cfg, 8), tiny_set, CUDA, measure=stub)
    assert other == Placement("cpu", 500.0, 200.0) and len(stub.calls) == 4
    assert resolve_augment_on(replace_batch(cfg, 8), tiny_set, CUDA, measure=stub) == other
    assert len(stub.calls) == 4 and len(placement._MEASURED) == 2


def replace_batch(cfg, batch_size):
    from dataclasses import replace

    return replace(cfg, batch_size=batch_size)


def test_the_real_measurement_times_both_placements_and_leaves_the_rng_alone(tiny_set):
    cfg = tiny_cfg(augment_on="auto", augment=2, dropout=0.2)
    before = torch.get_rng_state()
    rates = {
        on: measure_images_per_s(cfg, tiny_set, torch.device("cpu"), on, 0, batches=3)
        for on in ("cpu", "device")
    }
    assert all(r > 0 for r in rates.values()), rates
    assert torch.equal(torch.get_rng_state(), before)


def test_a_run_with_auto_on_the_cpu_trains_as_cpu(tiny_set, tiny_folds):
    """fit (what `maskopt train` and the export's retraining call) resolves auto itself."""
    pool = LoaderPool(tiny_cfg(augment_on="auto"), tiny_set, "cpu", num_workers=0)
    assert pool.augment_on == "cpu" and pool.loader.dataset.augment is not None
    pool.close()
    with FoldRun(tiny_cfg(augment_on="auto"), tiny_set, *tiny_folds[0], device="cpu") as run:
        assert run.augment_on == "cpu" and run.batch_augment is None
    auto = fit(tiny_cfg(augment_on="auto", epochs=1), tiny_set, tiny_folds[0], device="cpu")
    cpu = fit(tiny_cfg(augment_on="cpu", epochs=1), tiny_set, tiny_folds[0], device="cpu")
    assert auto.history[0]["train_loss"] == cpu.history[0]["train_loss"]
    assert auto.config.augment_on == "auto"  # what was asked for stays in the config


def test_the_pool_takes_the_measured_placement(tiny_set):
    """On a GPU the trial's pool is made with the placement measured for its shape (here the
    cache holds a stub's, so the pool is made for a CUDA device it never iterates)."""
    cfg = tiny_cfg(augment_on="auto", augment=3)
    measured = resolve_augment_on(cfg, tiny_set, CUDA, measure=StubRates(cpu=90.0, device=400.0))
    pool = LoaderPool(cfg, tiny_set, CUDA, num_workers=0)
    try:
        assert pool.placement == measured and pool.augment_on == "device"
        assert pool.loader.dataset.augment is None  # the loader only reads rows
    finally:
        pool.close()
