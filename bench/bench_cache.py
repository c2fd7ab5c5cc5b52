"""Images/s of the data pipeline: the decoded cache vs. decoding JPEGs every epoch.

Both sides produce the same thing, a normalised float batch (B, 3, 5W/4, W), from the
same photos with the same augmentation, through the same DataLoader settings, in one run:

- baseline (the competition's): per item PIL open, CenterCrop((320, 256)), Resize,
  augment, ToTensor, Normalize; the loader stacks the float tensors.
- cached: per item a row of `TrainSet.images(W)` (uint8 memmap, already cropped and
  resized), augment; the loader stacks uint8, and the batch is normalised at once.

The one-off cache build is timed and reported apart (it is paid once per data set and
size, then every epoch of every fold of every trial reads the cache).

    .venv/bin/python bench/bench_cache.py            # 100 synthetic people, 64 and 224 px
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from bench._report import write_section  # noqa: E402
from maskopt.data.augment import MEAN, STD, create_augment  # noqa: E402
from maskopt.data.crop import image_shape  # noqa: E402
from maskopt.data.layout import read_train  # noqa: E402


class JpegEachEpoch(Dataset):
    """The competition baseline: decode, crop, resize, augment, tensor, normalise per item."""

    def __init__(self, paths: list[Path], image_size: int, augment) -> None:
        from torchvision import transforms as T

        self.paths, self.augment = paths, augment
        self.crop = T.Compose([T.CenterCrop((320, 256)), T.Resize(image_shape(image_size))])
        self.to_tensor = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            image = self.crop(im.convert("RGB"))
        if self.augment is not None:
            image = self.augment(np.asarray(image))
        return self.to_tensor(image)


class FromCache(Dataset):
    """A row of the decoded cache, augmented; normalised per batch by `normalise`."""

    def __init__(self, images: np.ndarray, augment) -> None:
        self.images, self.augment = images, augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        image = np.asarray(self.images[i])
        if self.augment is not None:
            image = self.augment(image)
        return torch.from_numpy(np.ascontiguousarray(image))


# (x/255 - mean) / std as one multiply-add on the channels-last batch
_SCALE = 1 / (torch.tensor(STD) * 255)
_SHIFT = -torch.tensor(MEAN) / torch.tensor(STD)


def normalise(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> normalised float (B, 3, H, W), channels-last in memory.

    The trainer does this on the device; here it runs on the CPU so that both sides of
    the benchmark end in the same normalised float batch."""
    return batch.float().mul_(_SCALE).add_(_SHIFT).permute(0, 3, 1, 2)


def images_per_s(dataset: Dataset, batch_size: int, workers: int, post=None) -> tuple[float, tuple]:
    """One full epoch through a shuffling DataLoader; returns (images/s, batch shape)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)
    n, shape = 0, ()
    start = time.perf_counter()
    for batch in loader:
        if post is not None:
            batch = post(batch)
        n += len(batch)
        shape = tuple(batch.shape)
    return n / (time.perf_counter() - start), shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="existing data folder (default: synthesize one)")
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    parser.add_argument("--augment", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers, both sides")
    parser.add_argument("--repeats", type=int, default=3, help="epochs per side; the best counts")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the per-item work is single-threaded on both sides
    # ToTensor of a read-only augmented array: harmless here, noisy in the output
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

    load = os.getloadavg()[0]  # the machine is shared: say how busy it was
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from maskopt.data.synth import synthesize

            data = Path(tmp) / "data"
            synthesize(data, people=args.people, eval_people=0, seed=0, progress=False)
        ds = read_train(data, cache_dir=Path(tmp) / "cache", progress=False)
        rows = []
        for size in args.sizes:
            start = time.perf_counter()
            images = ds.images(size)
            build = time.perf_counter() - start
            for strength in args.augment:
                augment = create_augment(strength, seed=0)
                base = JpegEachEpoch(ds.paths, size, augment)
                cached = FromCache(images, augment)
                b, c, u = [], [], []
                for _ in range(args.repeats):  # interleaved: load changes hit all three alike
                    b.append(images_per_s(base, args.batch, args.workers))
                    c.append(images_per_s(cached, args.batch, args.workers, normalise))
                    u.append(images_per_s(cached, args.batch, args.workers))
                assert b[0][1] == c[0][1], (b[0][1], c[0][1])  # same output batch
                jpeg, cache, raw = (max(r[0] for r in x) for x in (b, c, u))
                rows.append((size, strength, len(ds), jpeg, cache, raw, build))
                print(
                    f"{size}px augment {strength}: jpeg {jpeg:6.0f} img/s  cache {cache:6.0f} img/s"
                    f"  x{cache / jpeg:5.1f}  (uint8 batch {raw:6.0f} img/s x{raw / jpeg:5.1f};"
                    f" cache build {build:.1f}s, {len(ds)} images)",
                    flush=True,
                )

    command = "python bench/bench_cache.py " + " ".join(sys.argv[1:])
    table = [
        "| size (W x 5W/4) | augment | JPEG each epoch (img/s) | cache, normalised on CPU "
        "(img/s) | ratio | cache, uint8 batch (img/s) | ratio | one-off cache build (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, strength, _, jpeg, cache, raw, build in rows:
        h, w = image_shape(size)
        table.append(
            f"| {w}x{h} | {strength} | {jpeg:,.0f} | {cache:,.0f} | **{cache / jpeg:.1f}x** "
            f"| {raw:,.0f} | {raw / jpeg:.1f}x | {build:.1f} |"
        )
    markdown = "\n".join(
        [
            "## Decoded-image cache vs. decoding JPEGs each epoch (`bench/bench_cache.py`)",
            "",
            f"Command: `{command.strip()}` ({len(ds)} images of {ds.n_people} synthetic people, "
            "384x512 JPEGs; "
            f"batch {args.batch}, {args.workers} DataLoader workers, one thread, best of "
            f"{args.repeats} interleaved epochs per side; {platform.machine()}, "
            f"{os.cpu_count()} cores, shared: load average {load:.1f} at the start).",
            "",
            "Both sides: same photos, same output (normalised float batch), same augmentation "
            "(0 none, 1 hflip + affine) in one run. Baseline = PIL open, CenterCrop((320, 256)), "
            "Resize, augment, ToTensor, Normalize per item. Cache = memmap row, augment, "
            "batch normalised at once. The uint8 column stops before normalising: that is "
            "what the trainer's loader hands over (it normalises on the device), and a "
            "quarter of the bytes to copy.",
            "",
            *table,
        ]
    )
    print(markdown)
    if not args.no_write:
        write_section("cache", markdown)


if __name__ == "__main__":
    main()
