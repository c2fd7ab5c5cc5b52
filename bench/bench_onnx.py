"""Bundle inference on the CPU: the PyTorch path against the bundle's model.onnx in onnxruntime.

    .venv/bin/python -m bench.bench_onnx [--backbones resnet10t,mobilenetv3_small_050]
        [--size 48] [--images 512] [--repeats 5] [--threads N] [--legacy]

A bundle of one member per backbone (random weights: speed does not depend on them), soft
vote, without and with hflip TTA. Each side predicts the same uint8 images (already cropped
and resized, as `bundle.predict_images` gets them): "torch fp32" is `predict_images` with
MASKOPT_CPU_BF16=0, "torch default" the same with maskopt's CPU default (bf16 autocast where
the CPU computes bf16 natively), "onnxruntime" is `predict_onnx` on model.onnx made by
`export_onnx` (torch's dynamo exporter). The sides alternate, best of --repeats each, after
one warm-up. `--legacy` also times a graph made by the deprecated TorchScript exporter.
Writes the BENCHMARKS.md section "onnx".
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def build_bundle(folder: Path, backbones: list[str], size: int, tta: bool):
    from maskopt.bundle.manifest import Manifest, Member, write_manifest
    from maskopt.trainer.checkpoint import save_checkpoint
    from maskopt.trainer.config import TrainConfig, config_to_dict
    from maskopt.trainer.models import create_model

    members = []
    for i, backbone in enumerate(backbones):
        cfg = TrainConfig(backbone=backbone, image_size=size, pretrained=False, seed=i)
        ck = f"models/m{i}.pt"
        save_checkpoint(folder / ck, create_model(cfg).state_dict(), cfg)
        members.append(
            Member(i, 1 / len(backbones), config_to_dict(cfg), (ck,), 0.0, True, cfg.epochs)
        )
    manifest = Manifest("bench", "soft", tta, "center", tuple(members), 0.0, "bench")
    write_manifest(folder, manifest)
    return manifest


def legacy_export(folder: Path, manifest, out: Path) -> None:
    import warnings

    import torch

    from maskopt.bundle.onnx_graph import ensemble_module
    from maskopt.bundle.onnx_runtime import OUTPUT, input_sizes
    from maskopt.data.cache import image_shape

    sizes = input_sizes(manifest)
    examples = tuple(
        torch.zeros((2, *image_shape(w), 3), dtype=torch.uint8) for w in sizes.values()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            ensemble_module(folder, manifest),
            examples,
            str(out),
            dynamo=False,
            input_names=list(sizes),
            output_names=[OUTPUT],
            dynamic_axes={name: {0: "batch"} for name in sizes},
        )
    import onnx  # the same metadata as model.onnx, so predict_onnx takes it for this bundle

    proto = onnx.load(str(out))
    proto.metadata_props.extend(onnx.load(str(folder / "model.onnx")).metadata_props)
    onnx.save(proto, str(out))


def measure(folder: Path, manifest, images, args, bf16: bool, tta: bool) -> list[tuple]:
    """Alternate the runtimes on the same images; one row per runtime."""
    import numpy as np

    from maskopt.bundle.onnx_runtime import onnx_session, predict_onnx
    from maskopt.bundle.predict import predict_images
    from maskopt.trainer.checkpoint import load_model

    def images_for(size: int) -> np.ndarray:
        return images

    def session(name: str):
        return onnx_session(folder / name, threads=args.threads)

    def torch_side(fp32: bool):
        def run():
            os.environ["MASKOPT_CPU_BF16"] = "0" if fp32 or not bf16 else "1"
            return predict_images(folder, images_for, device="cpu", manifest=manifest)

        return run, lambda: [
            load_model(folder / ck) for m in manifest.members for ck in m.checkpoints
        ]

    def onnx_side(name: str):
        return (
            lambda: predict_onnx(folder, images_for, manifest=manifest, session=session(name)),
            lambda: session(name),
        )

    # (predict, including loading the models; loading alone)
    sides = {"torch fp32": torch_side(True)}
    if bf16:
        sides["torch bf16 (maskopt's CPU default here)"] = torch_side(False)
    sides["onnxruntime"] = onnx_side("model.onnx")
    kept = session("model.onnx")  # a server keeps its session: no loading per call
    sides["onnxruntime, session kept open"] = (
        lambda: predict_onnx(folder, images_for, manifest=manifest, session=kept),
        lambda: None,
    )
    if args.legacy:
        sides["onnxruntime, TorchScript export"] = onnx_side("legacy.onnx")
    outputs = {name: run() for name, (run, _) in sides.items()}  # warm-up
    best = dict.fromkeys(sides, float("inf"))
    load = dict.fromkeys(sides, float("inf"))
    for _ in range(args.repeats):
        for name, (run, load_only) in sides.items():
            t = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t)
            t = time.perf_counter()
            load_only()
            load[name] = min(load[name], time.perf_counter() - t)
    os.environ.pop("MASKOPT_CPU_BF16", None)
    ref = outputs["torch fp32"]
    rows = []
    for name in sides:
        diff = float(np.abs(outputs[name] - ref).max())
        same = float((outputs[name].argmax(1) == ref.argmax(1)).mean())
        rows.append((tta, name, len(images) / best[name], load[name], diff, same))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", default="resnet10t,mobilenetv3_small_050")
    p.add_argument("--size", type=int, default=48)
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, help="threads for both runtimes (default: theirs)")
    p.add_argument("--legacy", action="store_true", help="also time the TorchScript exporter")
    args = p.parse_args()

    import numpy as np
    import onnxruntime as ort
    import torch

    from bench._report import write_section
    from maskopt.bundle.onnx_graph import export_onnx
    from maskopt.data.cache import image_shape
    from maskopt.trainer.device import cpu_bf16

    if args.threads:
        torch.set_num_threads(args.threads)
    backbones = args.backbones.split(",")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, *image_shape(args.size), 3), dtype=np.uint8)
    bf16 = cpu_bf16()
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        for tta in (False, True):
            folder = Path(tmp) / f"tta{int(tta)}"
            manifest = build_bundle(folder, backbones, args.size, tta)
            t = time.perf_counter()
            export_onnx(folder, manifest=manifest)
            export_s = time.perf_counter() - t
            legacy_s = None
            if args.legacy:
                t = time.perf_counter()
                legacy_export(folder, manifest, folder / "legacy.onnx")
                legacy_s = time.perf_counter() - t
            rows += measure(folder, manifest, images, args, bf16, tta)
            rows.append((tta, "export (s)", export_s, legacy_s, None, None))
    os.environ.pop("MASKOPT_CPU_BF16", None)

    threads = args.threads or torch.get_num_threads()
    lines = [
        "## Bundle inference: PyTorch against model.onnx in onnxruntime (`bench/bench_onnx.py`)",
        "",
        f"Command: `python -m bench.bench_onnx --backbones {args.backbones} --size {args.size} "
        f"--images {args.images} --repeats {args.repeats}"
        + (f" --threads {args.threads}" if args.threads else "")
        + (" --legacy" if args.legacy else "")
        + "`",
        "",
        f"{len(backbones)} members ({', '.join(backbones)}, random weights) at "
        f"{args.size}x{image_shape(args.size)[0]} px, soft vote; {args.images} uint8 images "
        f"already prepared; best of {args.repeats} alternating runs after a warm-up; "
        f"{threads} threads; {platform.machine()}, {os.cpu_count()} cores, shared "
        f"(load average {load:.1f} at the start); CPU bf16: {'native' if bf16 else 'no'}; "
        f"torch {torch.__version__}, onnxruntime {ort.__version__}.",
        "",
        "| TTA | runtime | images/s (a call, loading the models included) | vs torch fp32 | "
        "loading alone (s) | max abs diff vs torch fp32 | same labels |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    ref = {r[0]: r[2] for r in rows if r[1] == "torch fp32"}
    for tta, name, ips, load_s, diff, same in rows:
        if name == "export (s)":
            continue
        lines.append(
            f"| {'hflip' if tta else 'none'} | {name} | {ips:,.0f} | **{ips / ref[tta]:.2f}x** | "
            f"{load_s:.2f} | {diff:.1e} | {same:.0%} |"
        )
    exports = [r for r in rows if r[1] == "export (s)"]
    text = ", ".join(
        f"{'with' if r[0] else 'without'} TTA {r[2]:.1f} s"
        + (f" (TorchScript exporter {r[3]:.1f} s)" if r[3] is not None else "")
        for r in exports
    )
    lines += ["", f"Export time (dynamo exporter, whole ensemble): {text}."]
    print("\n".join(lines))
    write_section("onnx", "\n".join(lines))


if __name__ == "__main__":
    main()
