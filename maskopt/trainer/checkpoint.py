"""Checkpoints: the weights, the config that built them (`asdict(cfg)`) and any extras.

Written atomically (temporary name, then rename), so a checkpoint on disk is always whole.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

import maskopt
from maskopt.errors import MaskoptError
from maskopt.outputs import atomic_path
from maskopt.trainer.config import TrainConfig, config_from_dict, config_to_dict
from maskopt.trainer.device import place_model
from maskopt.trainer.models import create_model


class CheckpointError(MaskoptError):
    """A checkpoint file is missing, unreadable or not a maskopt checkpoint."""


def save_checkpoint(
    path: str | os.PathLike, state_dict: dict, cfg: TrainConfig, **extra: Any
) -> Path:
    """{"state_dict", "config": asdict(cfg), "maskopt_version", **extra}, written atomically.

    Extras must be plain Python values (numbers, strings, lists, dicts) so the file loads
    with torch's safe `weights_only=True`.
    """

    payload = {
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "config": config_to_dict(cfg),
        "maskopt_version": maskopt.__version__,
        **extra,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint's dict (tensors on the CPU); CheckpointError when it is not one."""

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read ({type(err).__name__}: {err})."
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "config" not in ckpt:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a maskopt checkpoint "
            "(expected 'state_dict' and 'config')."
        )
    return ckpt


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, TrainConfig]:
    """The checkpoint's model in eval mode on `device`, and its config."""

    ckpt = read_checkpoint(path)
    cfg = config_from_dict(ckpt["config"])
    # the weights come from the checkpoint: never download or read the config's weight file again
    build_cfg = TrainConfig(**{**cfg.__dict__, "pretrained": False, "weights": None})
    model = create_model(build_cfg)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not fit its own config: {err}"
        ) from None
    return place_model(model, device).eval(), cfg
