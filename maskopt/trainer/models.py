"""`create_model(cfg)`: a timm backbone and a head returning log-probabilities over 18 classes.

Both heads return the same thing, so losses, metrics and ensembling treat them alike:
- single: one 18-way layer, log_softmax;
- multi: mask (3), gender (2) and age (3) layers; log p(class) = log p(mask) + log p(gender)
  + log p(age), laid out by `labels.encode`, so the 18 probabilities sum to one.
"""

from __future__ import annotations

import logging
import socket
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import timm
import torch
from timm.models import get_pretrained_cfg
from torch import nn

from maskopt.data.cache import image_shape
from maskopt.data.labels import AGE_NAMES, GENDER_NAMES, MASK_NAMES, NUM_CLASSES, decode
from maskopt.errors import ConfigError
from maskopt.trainer.device import place_model

if TYPE_CHECKING:
    from maskopt.trainer.config import TrainConfig

log = logging.getLogger("maskopt.trainer")


def _mlp(in_features: int, hidden: tuple[int, ...], out_features: int, dropout: float):

    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Dropout(dropout), nn.Linear(in_features, width), nn.ReLU(inplace=True)]
        in_features = width
    layers += [nn.Dropout(dropout), nn.Linear(in_features, out_features)]
    return nn.Sequential(*layers)


class SingleHead(nn.Module):
    """One 18-way layer (after the MLP's hidden layers): log-probabilities of the classes."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        self.net = _mlp(in_features, hidden, NUM_CLASSES, dropout)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.net(feats).float(), dim=1)


class MultiHead(nn.Module):
    """Mask (3), gender (2) and age (3) layers; log p(class) is the sum of its parts' (the
    classes laid out by labels.encode), so the 18 probabilities sum to one."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        self.mask = _mlp(in_features, hidden, len(MASK_NAMES), dropout)
        self.gender = _mlp(in_features, hidden, len(GENDER_NAMES), dropout)
        self.age = _mlp(in_features, hidden, len(AGE_NAMES), dropout)
        # index_*[c]: the mask / gender / age class that class c is made of (labels.decode)
        m, g, a = (torch.as_tensor(v) for v in decode(np.arange(NUM_CLASSES)))
        self.index_mask: torch.Tensor
        self.index_gender: torch.Tensor
        self.index_age: torch.Tensor
        self.register_buffer("index_mask", m, persistent=False)
        self.register_buffer("index_gender", g, persistent=False)
        self.register_buffer("index_age", a, persistent=False)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        lm = torch.log_softmax(self.mask(feats).float(), dim=1)
        lg = torch.log_softmax(self.gender(feats).float(), dim=1)
        la = torch.log_softmax(self.age(feats).float(), dim=1)
        return lm[:, self.index_mask] + lg[:, self.index_gender] + la[:, self.index_age]


class MaskNet(nn.Module):
    """backbone (pooled features) -> head (log-probabilities over 18 classes)."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def create_model(cfg: TrainConfig, device: str | torch.device = "cpu") -> torch.nn.Module:
    """forward(x: float NCHW, normalised) -> log-probabilities (N, 18), float32; on `device`.

    Built (and randomly initialised from torch's CPU generator) on the CPU, then placed
    with `trainer.device.place_model`, so a seed gives the same weights on every device.
    """

    if cfg.pretrained:
        check_weights_reachable(cfg.backbone)
    try:
        backbone = _create_backbone(cfg)
    except ConfigError:
        raise
    except Exception as err:  # no network, no such pretrained tag, hub errors...
        if not cfg.pretrained:
            raise
        raise ConfigError(
            f"backbone {cfg.backbone!r} with pretrained=true: timm could not get the weights "
            f"({type(err).__name__}: {err}). Use an online machine, or a local file in 'weights'."
        ) from None
    if cfg.weights:
        load_backbone_weights(backbone, cfg.weights)
    head_cls = SingleHead if cfg.head == "single" else MultiHead
    model = MaskNet(backbone, head_cls(feature_width(backbone), cfg.head_hidden, cfg.dropout))
    return place_model(model, device)


# Seconds to wait for the weights' server before saying it cannot be reached (timm itself
# retries for about 45 s without a network before its error).
WEIGHTS_PROBE_S = 3.0


def check_weights_reachable(backbone: str) -> None:
    """`pretrained: true` needs timm's weights in the local cache or their server within reach:
    without either, ConfigError at once. Nothing is downloaded here."""

    try:
        source = get_pretrained_cfg(backbone)
    except RuntimeError:
        return  # an unknown tag: timm's own error says which tags there are
    if source is None or _weights_cached(source):
        return
    if source.hf_hub_id:
        from huggingface_hub import constants

        url = constants.ENDPOINT
    elif isinstance(source.url, str) and source.url:
        url = source.url
    else:
        return
    proxy = urllib.request.getproxies().get(urllib.parse.urlparse(url).scheme)
    where = urllib.parse.urlparse(proxy or url)
    host, port = where.hostname, where.port or (443 if where.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=WEIGHTS_PROBE_S).close()
    except OSError as err:
        raise ConfigError(
            f"backbone {backbone!r} with pretrained=true: its weights are not in the local cache "
            f"and {host}:{port} cannot be reached ({err.strerror or err}). Run it once on a "
            "machine with network access (the weights are cached), or give a local file in "
            "'weights'."
        ) from None


def _weights_cached(source: Any) -> bool:
    """Whether timm would find the weights of `source` (its PretrainedCfg) without the network."""
    if source.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = source.hf_hub_id.partition("@")
        files = [source.hf_hub_filename] if source.hf_hub_filename else []
        files += ["model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"]
        return any(
            isinstance(try_to_load_from_cache(repo, f, revision=revision or None), str)
            for f in files
        )
    if source.url:
        name = source.url.rsplit("/", 1)[-1]
        return (Path(torch.hub.get_dir()) / "checkpoints" / name).is_file()
    return True  # a file or state dict source: nothing to download


def feature_width(backbone: torch.nn.Module) -> int:
    """Width of the pooled features a timm backbone with num_classes=0 returns.

    Not always `num_features`: MobileNetV3 / GhostNet put a conv head after pooling
    (288 -> 1024 for mobilenetv3_small_050), which timm reports as `head_hidden_size`.
    """
    width: Any = getattr(backbone, "head_hidden_size", None) or backbone.num_features
    return int(width)


def _create_backbone(cfg: TrainConfig):
    """timm backbone with num_classes=0 (pooled features).

    Transformers (ViT, MaxViT...) are built for one input size: they get the portrait
    (5W/4, W) size of the images (timm resizes pretrained position embeddings); CNNs take
    any size and refuse the `img_size` argument, so they are built without it.
    """

    shape = image_shape(cfg.image_size)
    try:
        backbone = timm.create_model(
            cfg.backbone, pretrained=cfg.pretrained, num_classes=0, img_size=shape
        )
    except TypeError as err:
        if "img_size" not in str(err):
            raise
        return timm.create_model(cfg.backbone, pretrained=cfg.pretrained, num_classes=0)
    except AssertionError as err:
        raise _size_error(cfg, shape, err) from None
    # a size-bound model can still refuse the size at its first forward (patch or window
    # divisibility): find out now, with one image, rather than in the middle of a trial

    try:
        with torch.no_grad():
            backbone.eval()(torch.zeros(1, 3, *shape))
    except (AssertionError, RuntimeError) as err:  # "Input height (40) should be divisible..."
        raise _size_error(cfg, shape, err) from None
    return backbone.train()


def _size_error(cfg: TrainConfig, shape: tuple[int, int], err: BaseException) -> ConfigError:
    return ConfigError(
        f"backbone {cfg.backbone!r} cannot take image_size={cfg.image_size} "
        f"({shape[0]}x{shape[1]} px): {err}"
    )


def load_backbone_weights(backbone: torch.nn.Module, path: str) -> int:
    """Load a local weights file into `backbone` (strict=False); returns the keys that matched.

    Accepts a bare state dict, {"state_dict": ...} / {"model": ...}, and a maskopt checkpoint
    (its "backbone." keys). A file that matches no key is an error, not a silent no-op.
    """

    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(
            f"config key 'weights': expected a local weights file, "
            f"but {str(file)!r} does not exist."
        )
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(
            f"config key 'weights': cannot read {str(file)!r} as torch weights ({err})."
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ConfigError(f"config key 'weights': {str(file)!r} holds no state dict.")
    own = backbone.state_dict()
    cleaned = {}
    for k, v in state.items():
        for prefix in ("module.", "backbone."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        if k in own and tuple(own[k].shape) == tuple(v.shape):
            cleaned[k] = v
    if not cleaned:
        raise ConfigError(
            f"config key 'weights': no tensor in {str(file)!r} matches the backbone's "
            "keys and shapes."
        )
    backbone.load_state_dict(cleaned, strict=False)
    log.info("weights %s: %d of %d backbone tensors loaded", file, len(cleaned), len(own))
    return len(cleaned)
