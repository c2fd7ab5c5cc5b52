"""`--gpus` and the plan of the worker processes on one machine.

`--gpus 0,1` runs one worker on each of two GPUs; `--gpus 0,0,1,1` two on each (a small
backbone leaves most of an H200 idle, so two trials can share it: BENCHMARKS.md, bench:gpu);
`--gpus all` one on each GPU this process can see. Each worker process is told, through
its environment (set before it imports torch):

    CUDA_VISIBLE_DEVICES  its GPU (mapped through the parent's own CUDA_VISIBLE_DEVICES, so
                          `--gpus 0` is the first GPU the parent sees), and nothing without one
    MASKOPT_CPUS          its share of the machine's cores: cores // workers (at least 1)
    OMP_NUM_THREADS       on a GPU 1 (the process mostly launches kernels; its share of cores
                          goes to loader processes); on the CPU its share (N workers x all the
                          cores would spin against each other: measured on 2 busy cores,
                          1 thread trained ~9x faster than 2 when others competed)

and sizes its loader processes from its share (maskopt.trainer.loop.default_workers: on a
GPU MASKOPT_CPUS - 1, in one pool a trial that feeds whichever fold is training). A variable
the user has set already (OMP_NUM_THREADS, MASKOPT_WORKERS, MASKOPT_CPUS) is left as it is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from maskopt.errors import ConfigError
from maskopt.trainer.loop import cpu_share, default_workers


@dataclass(frozen=True)
class WorkerPlan:
    index: int
    gpu: str | None  # the --gpus entry, or None for a CPU worker
    cpus: int  # cores this worker's process may use (MASKOPT_CPUS)
    env: dict[str, str] = field(default_factory=dict)  # what the worker sets before starting

    def loader_workers(self, device_type: str) -> int:
        """The loader processes this worker's training runs get on `device_type`: what
        maskopt.trainer.loop.default_workers computes inside the worker."""

        return default_workers(torch.device(device_type), cpus=self.cpus)


def visible_gpu_count() -> int:
    """CUDA devices torch sees in this process (0 without CUDA)."""

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def parse_gpus(text: str | None, count: int | None = None) -> tuple[str, ...]:
    """'0,1' -> ('0', '1'); '0,0,1,1' -> two workers on each; 'all' -> one per visible GPU.

    `count` is the number of GPUs visible here (default: what torch sees); a GPU number
    beyond it, or any GPU on a machine without one, is a ConfigError.
    """
    if text is None or not text.strip():
        return ()
    text = text.strip()
    ids = tuple(part.strip() for part in text.split(","))
    if text != "all" and not all(i.isdigit() for i in ids):
        raise ConfigError(
            f"--gpus: expected GPU numbers such as 0,1 (0,0,1,1 for two workers on each) "
            f"or 'all', but got {text!r}."
        )
    n = visible_gpu_count() if count is None else count
    if n == 0:
        raise ConfigError(f"--gpus {text}: this machine has no CUDA GPU that torch can use.")
    if text == "all":
        return tuple(str(i) for i in range(n))
    beyond = sorted({i for i in ids if int(i) >= n}, key=int)
    if beyond:
        raise ConfigError(
            f"--gpus: GPU {', '.join(beyond)} asked for, but {n} GPU(s) are visible here "
            f"(0..{n - 1})."
        )
    return tuple(str(int(i)) for i in ids)


def plan_workers(
    gpus: tuple[str, ...],
    workers: int = 1,
    *,
    cpus: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[WorkerPlan]:
    """One WorkerPlan per worker process: one per `gpus` entry, else `workers` CPU workers.

    `cpus` defaults to the cores this process may use; `environ` (default os.environ) is the
    parent's environment: variables set there are kept, and CUDA_VISIBLE_DEVICES there maps
    the GPU numbers.
    """

    environ = os.environ if environ is None else environ
    slots: list[str | None] = list(gpus) if gpus else [None] * workers
    cpus = cpu_share() if cpus is None else cpus
    share = max(1, cpus // len(slots))
    if "MASKOPT_CPUS" in environ:  # the user's own share for each worker
        share = cpu_share(environ)
    parent_visible = environ.get("CUDA_VISIBLE_DEVICES")
    visible = [v.strip() for v in parent_visible.split(",")] if parent_visible else None
    plans = []
    for index, gpu in enumerate(slots):
        env: dict[str, str] = {}
        if gpu is not None:
            if visible is not None and int(gpu) >= len(visible):
                raise ConfigError(
                    f"--gpus: GPU {gpu} asked for, but CUDA_VISIBLE_DEVICES={parent_visible!r} "
                    f"makes {len(visible)} visible (0..{len(visible) - 1})."
                )
            env["CUDA_VISIBLE_DEVICES"] = visible[int(gpu)] if visible else gpu
        defaults = {"MASKOPT_CPUS": str(share), "OMP_NUM_THREADS": "1" if gpu else str(share)}
        env.update({k: v for k, v in defaults.items() if k not in environ})
        plans.append(WorkerPlan(index, gpu, share, env))
    return plans
