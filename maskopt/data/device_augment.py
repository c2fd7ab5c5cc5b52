"""The augmentation strengths 1..3 as batch operations on the training device (kornia).

The same steps as maskopt.data.augment (albumentations, per image, in the loader), mirrored
as closely as kornia allows, each with its own random parameters per sample:

    strength 1: horizontal flip (p 0.5); affine: shift +-6 %, scale 0.9..1.1 per axis,
                rotate +-10 deg, reflected border (p 0.7)
    strength 2: + brightness +-0.2 then contrast x0.8..1.2 (albumentations'
                RandomBrightnessContrast: kornia's ColorJiggle with a fixed order, p 0.5);
                colour jitter brightness/contrast 0.1, saturation 0.2, hue 0.03
                (torchvision's formulas: kornia's ColorJitter, p 0.5)
    strength 3: + Gaussian blur sigma 0.5..3 (p 0.2; a 5-px kernel, where albumentations
                also draws 3 px); 1..4 black holes of 5-12.5 % of each side (p 0.5)

Never vertical flips (faces are upright at an entrance camera). kornia's RandomErasing makes
one hole an image, so the holes are a few tensor operations here, drawn the same way.
Input and output: float NCHW in 0..1 on any device (the trainer normalises afterwards).

Random parameters come from torch's CPU generator (kornia's default; the holes likewise) and
are then moved to the device, so a seed repeats on the CPU and on a GPU alike; the trainer
forks that generator per run (maskopt.trainer.loop).
"""

from __future__ import annotations

import torch

from maskopt.data.augment import check_strength


class DeviceAugment:
    """float NCHW (0..1) -> float NCHW (0..1), each sample with its own random parameters."""

    def __init__(self, strength: int, steps: list, holes: bool) -> None:
        import kornia.augmentation as K

        self.strength = strength
        self._seq = K.AugmentationSequential(*steps)
        self._holes = holes

    @property
    def transforms(self) -> list[str]:
        names = [type(t).__name__ for t in self._seq.children()]
        return names + (["CoarseDropout"] if self._holes else [])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:

        with torch.no_grad():
            out = self._seq(x)
            if self._holes:
                out = coarse_dropout(out)
        return out

    def __repr__(self) -> str:
        return f"DeviceAugment(strength={self.strength}, {self.transforms})"


def create_device_augment(strength: int) -> DeviceAugment | None:
    """The kornia pipeline of ``strength`` 0..3 (None for 0: nothing to do)."""
    if check_strength(strength) == 0:
        return None
    import kornia.augmentation as K

    steps: list = [
        K.RandomHorizontalFlip(p=0.5),
        K.RandomAffine(
            degrees=10.0,
            translate=(0.06, 0.06),
            scale=(0.9, 1.1, 0.9, 1.1),  # x and y drawn apart, as albumentations' Affine does
            padding_mode="reflection",
            p=0.7,
        ),
    ]
    if strength >= 2:
        steps += [
            # order (1, 0): contrast, then brightness: x * alpha + beta, as albumentations
            K.ColorJiggle(brightness=0.2, contrast=0.2, order=(1, 0), p=0.5),
            K.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.2, hue=0.03, p=0.5),
        ]
    if strength >= 3:
        steps.append(K.RandomGaussianBlur(kernel_size=5, sigma=(0.5, 3.0), p=0.2))
    return DeviceAugment(strength, steps, holes=strength >= 3)


def coarse_dropout(
    x: torch.Tensor,
    *,
    p: float = 0.5,
    max_holes: int = 4,
    side: tuple[float, float] = (0.05, 0.125),
) -> torch.Tensor:
    """Black out 1..max_holes boxes (each side a `side` share of the image's) in a share `p`
    of the samples: albumentations' CoarseDropout, every sample drawn apart."""

    n, _, h, w = x.shape
    active = (torch.rand(n) < p)[:, None] & (
        torch.arange(max_holes)[None, :] < torch.randint(1, max_holes + 1, (n, 1))
    )
    hh = (torch.empty(n, max_holes).uniform_(*side) * h).round().long().clamp_min(1)
    ww = (torch.empty(n, max_holes).uniform_(*side) * w).round().long().clamp_min(1)
    y0 = (torch.rand(n, max_holes) * (h - hh + 1)).long()
    x0 = (torch.rand(n, max_holes) * (w - ww + 1)).long()
    y1 = torch.where(active, y0 + hh, y0)  # an inactive hole is empty
    holes = box_mask(y0.flatten(), y1.flatten(), x0.flatten(), (x0 + ww).flatten(), h, w, x.device)
    mask = holes.view(n, max_holes, h, w).any(dim=1, keepdim=True)
    return x.masked_fill(mask, 0.0)


def box_mask(
    y0: torch.Tensor,
    y1: torch.Tensor,
    x0: torch.Tensor,
    x1: torch.Tensor,
    h: int,
    w: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(N, 1, H, W) bool on `device`: True inside each sample's box [y0, y1) x [x0, x1).

    Built there from the N boxes (no image-sized mask crosses from the CPU)."""

    y0, y1, x0, x1 = (t.to(device).view(-1, 1, 1) for t in (y0, y1, x0, x1))
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    inside = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    return inside.unsqueeze(1)
