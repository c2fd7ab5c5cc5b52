"""Where augmentation runs: `augment_on: auto` resolved by measurement.

"cpu" runs albumentations per image in the loader processes; "device" runs the same
strengths as kornia batch operations on the training device (maskopt.data.device_augment).
Which one trains faster depends on the backbone, the image size, the batch, the strength,
and on how many loader processes feed the device, so `auto` measures instead of guessing:

  * on a CPU device: "cpu", unmeasured (kornia's colour operations are several times slower
    than albumentations on a CPU: BENCHMARKS.md, bench:gpu);
  * with augment 0: "cpu", unmeasured (nothing to place; the loader only reads rows);
  * elsewhere: a few batches of the real training step (loop.measure_images_per_s: a FoldRun, its own
    loader pool of the run's size, a throwaway model from scratch) with each placement, and
    the faster one. Measured once per (device, backbone, image size, batch size, strength) in
    a process and kept for its lifetime (`_MEASURED`): a search worker pays it once, a few
    seconds, for all its trials of that shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from maskopt.trainer.config import TrainConfig

PLACEMENTS = ("cpu", "device")
# a measurement: (cfg, data, device, placement, num_workers) -> training images/s
Measure = Callable[..., float]


@dataclass(frozen=True)
class Placement:
    chosen: str  # "cpu" or "device": where the run augments
    cpu_images_per_s: float | None = None  # measured training rates (None: not measured)
    device_images_per_s: float | None = None

    @property
    def measured(self) -> bool:
        return self.cpu_images_per_s is not None

    def to_attr(self) -> dict[str, Any]:
        """The JSON form a trial records (maskopt.studies.records.AUGMENT_PLACEMENT)."""

        def rate(v: float | None) -> float | None:
            return None if v is None else round(v, 1)

        return {
            "chosen": self.chosen,
            "cpu_images_per_s": rate(self.cpu_images_per_s),
            "device_images_per_s": rate(self.device_images_per_s),
        }


# (device, backbone, image_size, batch_size, augment) -> the placement measured for it
_MEASURED: dict[tuple, Placement] = {}


def resolve_augment_on(
    cfg: TrainConfig,
    data,
    device: torch.device,
    *,
    num_workers: int = 0,
    measure: Measure | None = None,
) -> Placement:
    """The placement a run of `cfg` on `device` augments with: `cfg.augment_on` when it is a
    fixed choice, else (auto) as the module docstring says, `measure` giving the training
    rate of a placement (maskopt.trainer.loop.measure_images_per_s; a stub in tests)."""
    if cfg.augment_on != "auto":
        return Placement(cfg.augment_on)
    if device.type == "cpu" or cfg.augment == 0:
        return Placement("cpu")
    key = (str(device), cfg.backbone, cfg.image_size, cfg.batch_size, cfg.augment)
    if key not in _MEASURED:
        if measure is None:
            raise ValueError("augment_on auto on a GPU needs a measure function to decide.")
        rates = {on: float(measure(cfg, data, device, on, num_workers)) for on in PLACEMENTS}
        _MEASURED[key] = Placement(
            "device" if rates["device"] > rates["cpu"] else "cpu", rates["cpu"], rates["device"]
        )
    return _MEASURED[key]
