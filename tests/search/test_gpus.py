"""`--gpus`: parsing (repeats, `all`), the per-worker plan (GPU, share of cores, threads,
loader processes), and two real worker processes started for `--gpus 0,0`."""

from __future__ import annotations

import os

import optuna
import pytest

from maskopt.errors import ConfigError
from maskopt.search.gpus import parse_gpus, plan_workers
from maskopt.search.options import SearchOptions
from maskopt.search.runner import run_search
from maskopt.store.records import StudySettings

ENV_KEYS = ("CUDA_VISIBLE_DEVICES", "MASKOPT_CPUS", "OMP_NUM_THREADS", "MASKOPT_WORKERS")


def test_a_gpu_named_twice_gets_two_workers():
    assert parse_gpus("0,0,1,1", count=2) == ("0", "0", "1", "1")
    assert parse_gpus(" 1, 0 ", count=2) == ("1", "0")
    assert parse_gpus("0,0", count=1) == ("0", "0")
    assert parse_gpus(None) == () and parse_gpus("") == ()


def test_all_is_one_worker_per_visible_gpu(monkeypatch):
    assert parse_gpus("all", count=4) == ("0", "1", "2", "3")
    monkeypatch.setattr("maskopt.search.gpus.visible_gpu_count", lambda: 2)  # a faked machine
    assert SearchOptions(gpus=parse_gpus("all")).n_workers == 2


@pytest.mark.parametrize(
    "text,count,message",
    [
        ("0,x", 2, "expected GPU numbers such as 0,1"),
        ("-1", 2, "expected GPU numbers"),
        ("all,0", 2, "expected GPU numbers"),
        ("0,2", 2, "GPU 2 asked for, but 2 GPU(s) are visible here (0..1)"),
        ("0", 0, "no CUDA GPU"),
        ("all", 0, "no CUDA GPU"),
    ],
)
def test_bad_gpus_are_one_clear_error(text, count, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_gpus(text, count=count)


def test_options_check_workers_and_device_against_gpus():
    assert SearchOptions(gpus=("0", "0")).n_workers == 2
    assert SearchOptions(gpus=("0", "0"), workers=2, device="cuda").n_workers == 2
    with pytest.raises(ConfigError, match="--workers"):
        SearchOptions(gpus=("0", "0"), workers=3)
    with pytest.raises(ConfigError, match="--device: expected auto or cuda with --gpus"):
        SearchOptions(gpus=("0",), device="cpu")


def test_plan_for_two_workers_on_one_gpu_of_a_16_core_machine():
    plans = plan_workers(("0", "0"), cpus=16, environ={})
    assert [p.index for p in plans] == [0, 1]
    for p in plans:
        assert p.env == {"CUDA_VISIBLE_DEVICES": "0", "MASKOPT_CPUS": "8", "OMP_NUM_THREADS": "1"}
        assert p.cpus == 8 and p.loader_workers("cuda") == 7  # 8 cores: 7 loaders + the driver
        assert p.loader_workers("cpu") == 0
    four = plan_workers(("0", "0", "1", "1"), cpus=16, environ={})
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in four] == ["0", "0", "1", "1"]
    assert {p.loader_workers("cuda") for p in four} == {3}
    # more workers than cores: each still gets one core and one loader process
    assert {p.loader_workers("cuda") for p in plan_workers(("0",) * 4, cpus=2, environ={})} == {1}


def test_plan_for_cpu_workers_keeps_the_thread_rule():
    plans = plan_workers((), 3, cpus=12, environ={})
    assert [p.gpu for p in plans] == [None] * 3
    assert all(p.env == {"MASKOPT_CPUS": "4", "OMP_NUM_THREADS": "4"} for p in plans)


def test_plan_keeps_what_the_user_set_and_maps_through_their_visible_devices():
    environ = {"CUDA_VISIBLE_DEVICES": "4,6", "OMP_NUM_THREADS": "2", "MASKOPT_CPUS": "3"}
    plans = plan_workers(("1", "0", "1"), cpus=64, environ=environ)
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plans] == ["6", "4", "6"]
    assert all("OMP_NUM_THREADS" not in p.env and "MASKOPT_CPUS" not in p.env for p in plans)
    assert {p.cpus for p in plans} == {3}
    with pytest.raises(ConfigError, match="CUDA_VISIBLE_DEVICES='4,6' makes 2 visible"):
        plan_workers(("2",), cpus=8, environ=environ)


class EnvObjective:
    """Records, as user attrs, the environment its worker process was started with and the
    loader processes a CUDA training run in it would get."""

    def __init__(self, opts) -> None:
        self.settings = StudySettings(
            data_fingerprint="env",
            n_folds=opts.folds,
            space="env",
            epochs=1,
            crop=opts.crop,
            report=opts.report,
            n_images=0,
        )

    def __call__(self, trial: optuna.Trial) -> float:
        import time

        import torch

        from maskopt.trainer.loop import default_workers

        for key in ENV_KEYS:
            trial.set_user_attr(key, os.environ.get(key))
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("loader_workers_cuda", default_workers(torch.device("cuda")))
        trial.set_user_attr("torch_threads", torch.get_num_threads())
        time.sleep(1.0)  # long enough that both workers take a trial
        return trial.suggest_float("x", 0.0, 1.0)


def create_env_objective(opts) -> EnvObjective:
    return EnvObjective(opts)


@pytest.mark.slow
def test_gpus_0_0_starts_two_workers_with_the_same_gpu(tmp_path, monkeypatch):
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))  # a 16-core host
    opts = SearchOptions(
        storage=f"sqlite:///{tmp_path / 'maskopt.db'}",
        artifacts=tmp_path / "artifacts",
        trials=4,
        gpus=("0", "0"),
        pruner="none",
        heartbeat=2,
        objective="tests.search.test_gpus:create_env_objective",
    )
    summary = run_search(opts, show_progress=False)
    assert summary.finished >= 4 and not summary.problems  # exact counts: issue 10
    study = optuna.load_study(study_name=opts.study, storage=opts.storage)
    attrs = [t.user_attrs for t in study.trials]
    assert len({a["pid"] for a in attrs}) == 2 and os.getpid() not in {a["pid"] for a in attrs}
    for a in attrs:
        assert a["CUDA_VISIBLE_DEVICES"] == "0"
        assert a["MASKOPT_CPUS"] == "8" and a["OMP_NUM_THREADS"] == "1"
        assert a["MASKOPT_WORKERS"] is None and a["loader_workers_cuda"] == 7
        assert a["torch_threads"] == 1
