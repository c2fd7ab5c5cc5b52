"""Knowledge distillation in the trainer: soft targets through the loader, the KL loss at a
temperature, and soft targets mixed as CutMix / MixUp mix the images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskopt.trainer.loop import fit
from maskopt.trainer.losses import DISTILL_T, distill_loss, soften
from maskopt.trainer.mix import mix_batch
from maskopt.trainer.predict import predict_probs
from tests.trainer.conftest import tiny_cfg


def test_soften_keeps_the_ranking_and_spreads_the_mass() -> None:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(18) * 0.3, 50).astype(np.float32)
    assert np.allclose(soften(p, 1.0), p, atol=1e-5)
    s = soften(p, 3.0)
    assert np.allclose(s.sum(1), 1, atol=1e-5)
    assert (s.argmax(1) == p.argmax(1)).all()
    assert (s.max(1) < p.max(1)).all()  # softer: the top class holds less


def test_distill_loss_is_the_kl_to_the_softened_teacher_times_t_squared() -> None:
    gen = torch.Generator().manual_seed(0)
    logp = torch.log_softmax(torch.randn(8, 18, generator=gen), 1)
    teacher = torch.as_tensor(soften(torch.softmax(torch.randn(8, 18, generator=gen), 1).numpy()))
    student = torch.log_softmax(logp / DISTILL_T, 1)
    kl = torch.nn.functional.kl_div(student, teacher, reduction="batchmean")
    assert distill_loss(logp, teacher).item() == pytest.approx(kl.item() * DISTILL_T**2, rel=1e-5)
    # a student that already matches the softened teacher has nothing left to learn
    same = torch.log(torch.as_tensor(soften(teacher.numpy(), 1 / DISTILL_T)))
    assert distill_loss(same, teacher).item() == pytest.approx(0.0, abs=1e-5)


def test_soft_targets_are_mixed_with_the_images() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, 8, 8, generator=gen)
    y = torch.arange(6)
    soft = torch.softmax(torch.randn(6, 18, generator=gen), 1)
    torch.manual_seed(2)
    m = mix_batch(x, y, "mixup", 1.0, soft=soft)
    torch.manual_seed(2)
    plain = mix_batch(x, y, "mixup", 1.0)
    assert torch.equal(m.x, plain.x) and plain.soft is None  # the same draws
    partner = m.target_b  # y = arange: the partner's index is its target
    lam = m.lam.view(6, 1)
    assert m.soft is not None
    assert torch.allclose(m.soft, lam * soft + (1 - lam) * soft[partner])
    assert torch.allclose(m.soft.sum(1), torch.ones(6))


def test_a_student_learns_from_its_soft_targets(tiny_set) -> None:
    """A teacher that says class 5 for every photo: the student trained on it predicts 5 far
    more often than the same config trained on the labels alone."""
    n = len(tiny_set.labels())
    teacher = np.full((n, 18), 0.01 / 17, np.float32)
    teacher[:, 5] = 0.99
    cfg = tiny_cfg(epochs=3, lr=3e-3, augment=0, mix="mixup")
    taught = fit(cfg, tiny_set, device="cpu", soft_targets=teacher)
    alone = fit(cfg, tiny_set, device="cpu")
    images = tiny_set.images(cfg.image_size)

    def share_of_5(result) -> float:
        from maskopt.trainer.models import create_model

        model = create_model(cfg)
        model.load_state_dict(result.state_dict)
        return float((predict_probs(model, images).argmax(1) == 5).mean())

    assert share_of_5(taught) > share_of_5(alone) + 0.3
    assert taught.history[0]["train_loss"] != alone.history[0]["train_loss"]


def test_soft_targets_must_be_one_row_a_photo(tiny_set) -> None:
    with pytest.raises(ValueError, match="soft_targets: expected"):
        fit(tiny_cfg(epochs=1), tiny_set, device="cpu", soft_targets=np.ones((3, 18)))
