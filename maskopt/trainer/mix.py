"""CutMix and MixUp as batch operations on the device (training only; off by default).

Each sample is mixed with a partner from the same batch (a random permutation) at its own
share lam ~ Beta(alpha, alpha) of itself:
  * mixup: the two images blended, lam * own + (1 - lam) * partner (Zhang et al. 2018);
  * cutmix: a box of the partner pasted in, covering 1 - lam of the image (Yun et al. 2019);
    the box is clipped at the border, so lam is then set to the share of pixels actually kept.
The loss scores a mixed sample as lam of its own target plus 1 - lam of its partner's (every
loss in maskopt.trainer.losses takes `target_b` and `lam`).

The random draws (shares, partners, boxes) come from torch's CPU generator, which FoldRun
forks per run, and are then moved to the device: the same seed mixes the same way on the CPU
and on a GPU, and folds interleaved epoch by epoch mix as they would alone.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from maskopt.data.device_augment import box_mask


class Mixed(NamedTuple):
    x: torch.Tensor  # the mixed batch, same shape, dtype, device and memory format as the input
    target_b: torch.Tensor  # (N,) the partner's targets
    lam: torch.Tensor  # (N,) float32: the share of each sample that is its own
    soft: torch.Tensor | None = None  # (N, C) soft targets mixed as the images are


def mix_batch(
    x: torch.Tensor,
    target: torch.Tensor,
    kind: str,
    alpha: float,
    soft: torch.Tensor | None = None,
) -> Mixed:
    """Mix a float NCHW batch and return it with the partners' targets and the shares; soft
    targets (a distillation's, (N, C)), when given, are mixed at the same shares."""

    if kind not in ("mixup", "cutmix"):
        raise ValueError(f"mix: expected 'mixup' or 'cutmix', but got {kind!r}.")
    n, _, h, w = x.shape
    lam = torch.distributions.Beta(alpha, alpha).sample((n,))  # CPU generator: see the header
    perm = torch.randperm(n)
    partner = x[perm.to(x.device)]
    out = torch.empty_like(x)  # keeps channels_last where the input has it
    if kind == "mixup":
        lam_d = lam.to(x.device, x.dtype).view(n, 1, 1, 1)
        torch.lerp(partner, x, lam_d, out=out)
    else:
        # a box of sides sqrt(1 - lam) * (H, W) centred at a uniform point, clipped
        cut = (1.0 - lam).sqrt()
        cy, cx = torch.rand(n) * h, torch.rand(n) * w
        y0 = (cy - cut * h / 2).round().clamp(0, h).long()
        y1 = (cy + cut * h / 2).round().clamp(0, h).long()
        x0 = (cx - cut * w / 2).round().clamp(0, w).long()
        x1 = (cx + cut * w / 2).round().clamp(0, w).long()
        lam = 1.0 - ((y1 - y0) * (x1 - x0)).float() / (h * w)
        box = box_mask(y0, y1, x0, x1, h, w, x.device)
        torch.where(box, partner, x, out=out)
    lam = lam.to(target.device)
    mixed_soft = None
    if soft is not None:
        share = lam.to(soft.device, soft.dtype).view(n, 1)
        mixed_soft = share * soft + (1 - share) * soft[perm.to(soft.device)]
    return Mixed(out, target[perm.to(target.device)], lam, mixed_soft)
