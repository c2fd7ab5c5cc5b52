"""Which device runs the model, what it is fed, and a clear error when it runs out of memory."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import torch

from maskopt.data.augment import MEAN, STD
from maskopt.errors import ConfigError, MaskoptError

if TYPE_CHECKING:
    from maskopt.trainer.config import TrainConfig

DEVICES = ("auto", "cpu", "cuda", "mps")


class DeviceOutOfMemory(MaskoptError):
    """The model, batch and images do not fit in the device's memory."""


class DevicePlacementError(MaskoptError):
    """A model and its inputs are on different devices (a bug in the caller: see place_model)."""


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """auto: CUDA if there, else MPS if there, else CPU. `cuda:1` picks a GPU.

    A `torch.device` is taken as it is: it was resolved already (or a test chose it).
    """

    if isinstance(name, torch.device):
        return name
    kind = str(name).split(":")[0]
    if kind not in DEVICES:
        raise ConfigError(
            f"device: expected one of {', '.join(DEVICES)} (or cuda:N), but got {name!r}."
        )
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} asked for, but CUDA is not available on this machine.")
    if kind == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ConfigError(f"device: {name!r} asked for, but MPS is not available on this machine.")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"device: {name!r} is not a device name ({err}).") from None


def place_model(model: torch.nn.Module, device: str | torch.device) -> torch.nn.Module:
    """The one placement rule: `model` moved to `device`, in the memory layout that is fastest
    there (see `channels_last`). Every function that creates or loads a model calls this."""

    dev = resolve_device(device)
    model.to(dev)
    if channels_last(dev):
        model.to(memory_format=torch.channels_last)
    return model


def model_device(model: torch.nn.Module) -> torch.device | None:
    """The device of the model's first parameter (or buffer); None for a model without any."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return None


def same_device(a: torch.device, b: torch.device) -> bool:
    """`cuda` and `cuda:0` are the same device when 0 is the current one."""
    if a.type != b.type:
        return False
    if a.index is None or b.index is None:
        if a.type != "cuda":
            return True
        current = torch.cuda.current_device()
        return (a.index if a.index is not None else current) == (
            b.index if b.index is not None else current
        )
    return a.index == b.index


def check_placement(model: torch.nn.Module, device: torch.device, where: str) -> None:
    """DevicePlacementError naming both devices when `model` is not on `device`.

    Caught here, once a call, instead of as a dtype or device mismatch deep inside a
    convolution: the message says which step put the model where.
    """
    have = model_device(model)
    if have is not None and not same_device(have, device):
        raise DevicePlacementError(
            f"{where}: the model is on {have} but its inputs go to {device}; "
            f"create or load it with device={str(device)!r} (trainer.device.place_model)."
        )


def is_oom(err: BaseException) -> bool:

    return isinstance(err, torch.cuda.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err)
    )


@contextlib.contextmanager
def oom_as_error(cfg: TrainConfig, device: torch.device) -> Iterator[None]:
    """Turn a device out-of-memory into one line naming the config and what to lower."""
    try:
        yield
    except Exception as err:
        if not is_oom(err):
            raise
        raise DeviceOutOfMemory(
            f"out of memory on {device} training backbone={cfg.backbone!r}, "
            f"image_size={cfg.image_size}, batch_size={cfg.batch_size}: lower batch_size "
            f"(raise grad_accum to keep the effective batch), image_size, "
            "or use a smaller backbone."
        ) from None


def cpu_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX).

    There, bf16 autocast with channels_last trains about 2x faster than float32
    (resnet10t at 64 px on 2 Zen 4 cores: 19 -> 45 img/s); without it bf16 is emulated
    and slower, so float32 stays. MASKOPT_CPU_BF16=0 or 1 overrides the check.
    """

    env = os.environ.get("MASKOPT_CPU_BF16")
    if env is not None:
        return env.strip().lower() not in ("0", "false", "no", "off", "")
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def amp_dtype(device: torch.device):
    """bf16 autocast on CUDA (no loss scaling needed) and on CPUs with native bf16;
    full precision elsewhere (MPS, older CPUs)."""

    if device.type == "cuda" or (device.type == "cpu" and cpu_bf16()):
        return torch.bfloat16
    return None


def channels_last(device: torch.device) -> bool:
    """NHWC memory layout: faster convolutions on CUDA and with CPU bf16 (oneDNN)."""
    return device.type == "cuda" or (device.type == "cpu" and cpu_bf16())


def to_input(
    batch_uint8: torch.Tensor,
    device: torch.device,
    mean: torch.Tensor,
    std: torch.Tensor,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """NHWC uint8 (CPU, ideally pinned) -> normalised float NCHW on `device`.

    Normalising on the device keeps the loader's work (and the copy) at one byte a pixel.
    `augment` (maskopt.data.device_augment) runs on the float batch in 0..1, before the
    normalisation. Where convolutions run faster in it (see `channels_last`), the result is
    channels_last.
    """

    x = batch_uint8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    if augment is not None:
        x = augment(x.contiguous())
    x = x.sub_(mean).div_(std)
    if channels_last(device):
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def norm_tensors(device: torch.device):
    """MEAN and STD of the data layer as (1, 3, 1, 1) tensors on `device`."""

    mean = torch.tensor(MEAN, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return mean, std
