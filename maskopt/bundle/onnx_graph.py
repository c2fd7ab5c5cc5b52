"""The whole ensemble of a bundle as one ONNX graph: `model.onnx`, run with onnxruntime.

    images (N, 5W/4, W, 3) uint8   ->   probabilities (N, 18) float32

Inside the graph, exactly what `bundle.predict_images` does in PyTorch: the ImageNet
normalisation, each member's checkpoints (mean of their probabilities), the mirror-image TTA
when the bundle has it (the images and their mirror images in one batch: half the graph, the
same numbers, as models in eval mode treat each image on its own), and the weighted soft vote
or the hard vote (with its soft-vote tie-break, in float64 as `ensemble.hard_vote` computes it). Members trained at different
image sizes each read their own input, `images_<W>`; a bundle of one size has one input,
`images`. The crop and resize stay outside (`data.crop.prepare_image` does them, as for
every maskopt prediction), and the graph's metadata names the crop and each input's size.

The graph is made by torch's dynamo exporter (torch.onnx.export(dynamo=True): the supported
one; the TorchScript exporter is deprecated) with a dynamic batch axis. The metadata also
holds a key of the manifest it was made from, so a model.onnx left beside another ensemble
is refused instead of silently disagreeing with the bundle.

`maskopt best --export --onnx` writes it (after `check_exportable` on randomly initialised
models of the chosen configs, before any retraining); `maskopt predict BUNDLE --runtime onnx`
runs it (`bundle.predict_images(..., runtime="onnx")`); `onnx_images_per_s` times it.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from maskopt import timing
from maskopt.bundle.manifest import ONNX_FILE, Manifest, Member, read_manifest
from maskopt.bundle.onnx_runtime import (
    META,
    OUTPUT,
    check_onnx,
    graph_key,
    input_sizes,
    onnx_session,
    predict_onnx,
)
from maskopt.data.cache import image_shape
from maskopt.ensemble.vote import TIE_BREAK
from maskopt.errors import MaskoptError
from maskopt.outputs import atomic_path
from maskopt.trainer.checkpoint import load_model, save_checkpoint
from maskopt.trainer.config import config_to_dict
from maskopt.trainer.device import norm_tensors
from maskopt.trainer.models import create_model

if TYPE_CHECKING:
    from maskopt.trainer.config import TrainConfig


class OnnxExportError(MaskoptError):
    """The exporter could not turn a bundle's models into an ONNX graph."""


class EnsembleGraph(nn.Module):
    """uint8 NHWC images (one tensor per input size) -> the bundle's probabilities."""

    def __init__(
        self,
        members: Sequence[Sequence[nn.Module]],
        member_input: Sequence[int],
        weights: Sequence[float],
        *,
        tta: bool,
        vote: str,
        mean: torch.Tensor,
        std: torch.Tensor,
        temperatures: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.norm_mean: torch.Tensor
        self.norm_std: torch.Tensor
        self.weights: torch.Tensor
        self.tie_break: torch.Tensor
        self.members = nn.ModuleList(nn.ModuleList(models) for models in members)
        self.member_input = list(member_input)
        self.tta = tta
        self.vote = vote
        # bundle.member_probs: each member's mean tempered (ensemble.apply_temperature)
        self.temperatures = [float(t) for t in temperatures or [1.0] * len(members)]
        self.register_buffer("norm_mean", mean)
        self.register_buffer("norm_std", std)
        # float64 tensors, not Python floats: the exporter would store those as float32
        w = torch.tensor(list(weights), dtype=torch.float64)
        self.voters = [i for i, wi in enumerate(weights) if wi > 0]  # as ensemble's votes
        self.register_buffer("weights", w / w.sum())  # normalised as ensemble._check does
        # hard_vote's (shares + t * soft) / (1 + t), written as shares - c * (shares - soft)
        # with c = t / (1 + t): onnxscript's optimizer (0.7) takes a Mul or Div by a constant
        # within 1e-5 of 1 for one and drops it, which would undo the tie-break
        tie = torch.tensor(TIE_BREAK, dtype=torch.float64)
        self.register_buffer("tie_break", tie / (1 + tie))

    def forward(self, *images: torch.Tensor) -> torch.Tensor:
        # trainer.device.to_input: NHWC uint8 -> normalised float NCHW
        xs = [
            im.permute(0, 3, 1, 2).float().div(255.0).sub(self.norm_mean).div(self.norm_std)
            for im in images
        ]
        probs: list[
            torch.Tensor
        ] = []  # bundle.member_probs: float64 mean of the checkpoints, then float32
        for models, k in zip(self.members, self.member_input, strict=True):
            assert isinstance(models, nn.ModuleList)
            total: torch.Tensor | None = None
            x = xs[k]
            for model in models:
                if self.tta:  # trainer.predict_probs, in float32; both halves in one call
                    both = model(torch.cat([x, x.flip(3)])).float().exp()
                    p = (both[: x.shape[0]] + both[x.shape[0] :]) / 2
                else:
                    p = model(x).float().exp()
                total = p.double() if total is None else total + p.double()
            assert total is not None
            p = (total / len(models)).float()
            t = self.temperatures[len(probs)]
            if t != 1.0:  # softmax(log p / t), log p floored at 1e-12 as ensemble._log
                z = p.clamp_min(1e-12).log()
                p = torch.softmax((z - z.amax(dim=1, keepdim=True)) / t, dim=1)
            probs.append(p)
        soft: torch.Tensor | None = None  # ensemble.soft_vote: float64 sum, then float32
        for i in self.voters:
            part = self.weights[i] * probs[i].double()
            soft = part if soft is None else soft + part
        assert soft is not None
        if self.vote == "soft":
            return soft.float()
        shares: torch.Tensor | None = None  # ensemble.hard_vote
        for i in self.voters:
            one_hot = torch.nn.functional.one_hot(probs[i].argmax(dim=1), probs[i].shape[1])
            part = self.weights[i] * one_hot.double()
            shares = part if shares is None else shares + part
        assert shares is not None
        hard = shares - self.tie_break * (shares - soft.float().double())
        return hard.float()


def ensemble_module(folder: Path, manifest: Manifest) -> torch.nn.Module:
    """The bundle's ensemble as one torch module (CPU, float32, eval) over uint8 NHWC inputs."""

    widths = list(input_sizes(manifest).values())
    members, member_input = [], []
    for m in manifest.members:
        models = []
        for ck in m.checkpoints:
            model, _ = load_model(Path(folder) / ck, device="cpu")
            models.append(model.to(memory_format=torch.contiguous_format).float().eval())
        members.append(models)
        member_input.append(widths.index(int(m.config["image_size"])))
    mean, std = norm_tensors(torch.device("cpu"))
    graph = EnsembleGraph(
        members,
        member_input,
        manifest.weights,
        tta=manifest.tta,
        vote=manifest.vote,
        mean=mean,
        std=std,
        temperatures=[m.temperature for m in manifest.members],
    )
    return graph.eval()


def export_onnx(folder: Path, *, manifest: Manifest | None = None, out: Path | None = None) -> Path:
    """Write the bundle's ensemble as `out` (default `folder/model.onnx`, atomically).

    `manifest` lets an export that is still building the bundle write the graph before
    manifest.json exists. OnnxExportError, in one line, when the exporter fails.
    """
    folder = Path(folder)
    manifest = manifest or read_manifest(folder)
    return _export(folder, manifest, Path(out) if out is not None else folder / ONNX_FILE)


def _export(folder: Path, manifest: Manifest, out: Path, what: str | None = None) -> Path:
    """export_onnx; `what` names the ensemble in an error (default: the bundle folder)."""
    check_onnx(export=True)

    import onnx

    sizes = input_sizes(manifest)
    graph = ensemble_module(folder, manifest)
    examples = tuple(
        torch.zeros((2, *image_shape(w), 3), dtype=torch.uint8) for w in sizes.values()
    )
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on its own internals
            program = torch.onnx.export(
                graph,
                examples,
                dynamo=True,
                input_names=list(sizes),
                output_names=[OUTPUT],
                dynamic_shapes=(tuple({0: batch} for _ in sizes),),  # forward(*images)
                external_data=False,
                verbose=False,
            )
    except Exception as err:
        backbones = ", ".join(sorted({str(m.config["backbone"]) for m in manifest.members}))
        raise OnnxExportError(
            f"cannot export {what or f'bundle {folder}'} ({backbones}) to ONNX: "
            f"{_export_failure(err)}"
        ) from None
    assert program is not None
    proto = program.model_proto
    meta = {
        "graph_key": graph_key(manifest),
        "inputs": json.dumps({name: list(image_shape(w)) for name, w in sizes.items()}),
        "crop": manifest.crop,
        "vote": manifest.vote,
        "tta": json.dumps(manifest.tta),
        "study": manifest.study,
    }
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = META + key, value
    with atomic_path(out) as tmp:
        onnx.save_model(proto, str(tmp))
    return out


def _export_failure(err: BaseException) -> str:
    """The line of an exporter error that says what went wrong (torch's first line is advice)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if "## Exception summary" in lines[:-1]:
        return lines[lines.index("## Exception summary") + 1]
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def _random_bundle(
    folder: Path, configs: Sequence[TrainConfig], weights: Sequence[float], *, vote: str, tta: bool
) -> Manifest:
    """Checkpoints of randomly initialised models of `configs` in `folder` (one per member) and
    the manifest that would hold them (not written): the graph's ops and speed do not depend
    on the weights, so they stand in for trained models."""

    members = []
    for i, (cfg, weight) in enumerate(zip(configs, weights, strict=True)):
        cfg = dataclasses.replace(cfg, pretrained=False, weights=None)  # nothing downloaded
        ck = f"models/random-{i}.pt"
        save_checkpoint(Path(folder) / ck, create_model(cfg).state_dict(), cfg)
        members.append(Member(i, float(weight), config_to_dict(cfg), (ck,), 0.0, False, 1))
    return Manifest("random", vote, tta, "center", tuple(members), 0.0, "random")


def check_exportable(
    configs: Sequence[TrainConfig], weights: Sequence[float], *, vote: str, tta: bool
) -> None:
    """OnnxExportError, in one line, unless an ensemble of models of `configs` (these weights,
    vote and TTA) exports to ONNX: the export checks this before hours of retraining."""
    check_onnx(export=True)
    with tempfile.TemporaryDirectory(prefix="maskopt-onnx-check-") as tmp:
        manifest = _random_bundle(Path(tmp), configs, weights, vote=vote, tta=tta)
        _export(Path(tmp), manifest, Path(tmp) / ONNX_FILE, "the chosen members' models")


def onnx_images_per_s(
    cfg: TrainConfig, images: np.ndarray, tta: bool, threads: int | None = None
) -> float:
    """Inference throughput of one model of this config through ONNX in onnxruntime on the CPU
    (as `export.tradeoff.images_per_s` times PyTorch): a randomly initialised model exported
    to a temporary model.onnx, timed by timing.images_per_s."""
    with tempfile.TemporaryDirectory(prefix="maskopt-onnx-speed-") as tmp:
        folder = Path(tmp)
        manifest = _random_bundle(folder, [cfg], [1.0], vote="soft", tta=tta)
        _export(folder, manifest, folder / ONNX_FILE, "a model")
        session = onnx_session(folder / ONNX_FILE, threads=threads)  # loaded: the file may go
    images = np.asarray(images)

    def run(x: np.ndarray) -> None:
        predict_onnx(folder, lambda _size: x, manifest=manifest, session=session)

    return timing.images_per_s(run, images)
