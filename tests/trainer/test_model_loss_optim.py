"""Each head, loss, optimizer and scheduler trains a real tiny timm model a few steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskopt.data.labels import decode
from maskopt.errors import ConfigError
from maskopt.trainer.config import TrainConfig
from maskopt.trainer.losses import class_weights, create_loss, cross_entropy, focal
from maskopt.trainer.models import create_model, load_backbone_weights
from maskopt.trainer.optim import create_optimizer, create_scheduler

TINY = dict(backbone="test_resnet", image_size=32, batch_size=8, epochs=4)


def _batch(seed=0, n=12):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 40, 32, generator=g), torch.randint(0, 18, (n,), generator=g)


def _train_steps(cfg: TrainConfig, steps: int = 8) -> tuple[float, float]:
    """(loss before, loss after) `steps` optimizer steps on one fixed batch."""
    torch.manual_seed(cfg.seed)
    model = create_model(cfg)
    loss_fn = create_loss(cfg)
    opt = create_optimizer(cfg, model)
    x, y = _batch()
    model.train()
    losses = []
    for _ in range(steps):
        loss = loss_fn(model(x), y)
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():  # train mode: batch statistics, as during the steps
        final = float(loss_fn(model(x), y))
    return losses[0], final


@pytest.mark.parametrize("head", ["single", "multi"])
@pytest.mark.parametrize("hidden", [(), (16,), (16, 8)])
def test_heads_return_log_probs_over_18_classes(head, hidden):
    torch.manual_seed(0)
    model = create_model(TrainConfig(**TINY, head=head, head_hidden=hidden, dropout=0.2)).eval()
    x, _ = _batch()
    with torch.no_grad():
        logp = model(x)
    assert logp.shape == (12, 18) and logp.dtype == torch.float32
    assert torch.allclose(logp.exp().sum(1), torch.ones(12), atol=1e-5)


@pytest.mark.parametrize("backbone", ["mobilenetv3_small_050", "test_vit", "test_efficientnet"])
def test_backbones_with_a_conv_head_or_tokens(backbone):
    """Pooled feature width differs from num_features for some (MobileNetV3: 288 -> 1024)."""
    cfg = TrainConfig(**{**TINY, "backbone": backbone, "image_size": 64}, head="multi")
    model = create_model(cfg).eval()
    x = torch.randn(2, 3, 80, 64)  # portrait, as the cache stores them
    with torch.no_grad():
        logp = model(x)
    assert logp.shape == (2, 18) and torch.allclose(logp.exp().sum(1), torch.ones(2), atol=1e-5)


def test_a_size_a_transformer_cannot_take_is_a_config_error():
    with pytest.raises(ConfigError, match="image_size=32"):
        create_model(TrainConfig(**{**TINY, "backbone": "test_vit", "image_size": 32}))


def test_multi_head_combines_parts_by_label_encoding():
    torch.manual_seed(0)
    model = create_model(TrainConfig(**TINY, head="multi")).eval()
    x, _ = _batch()
    with torch.no_grad():
        feats = model.backbone(x)
        pm = model.head.mask(feats).softmax(1)
        pg = model.head.gender(feats).softmax(1)
        pa = model.head.age(feats).softmax(1)
        p = model(x).exp()
    for c in range(18):
        m, g, a = decode(c)
        assert torch.allclose(p[:, c], pm[:, m] * pg[:, g] * pa[:, a], atol=1e-5)


@pytest.mark.parametrize("head", ["single", "multi"])
@pytest.mark.parametrize(
    "loss",
    [
        dict(loss="cross_entropy"),
        dict(loss="focal", focal_gamma=2.0),
        dict(loss="label_smoothing", label_smoothing=0.1),
        dict(loss="f1"),
        dict(loss="cross_entropy", class_weights=tuple(float(i % 3 + 1) for i in range(18))),
    ],
)
def test_each_loss_falls_on_a_fixed_batch(head, loss):
    before, after = _train_steps(TrainConfig(**TINY, head=head, lr=3e-3, **loss))
    assert after < before * 0.8


@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.05), ("adam", 3e-3), ("adamw", 3e-3)])
def test_each_optimizer_fits_a_fixed_batch(optimizer, lr):
    before, after = _train_steps(TrainConfig(**TINY, optimizer=optimizer, lr=lr, weight_decay=1e-4))
    assert after < before * 0.8


def test_no_weight_decay_on_biases_and_norms():
    model = create_model(TrainConfig(**TINY))
    opt = create_optimizer(TrainConfig(**TINY, weight_decay=0.05), model)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])


def test_focal_gamma_zero_is_cross_entropy():
    logp = torch.log_softmax(torch.randn(20, 18), 1)
    y = torch.randint(0, 18, (20,))
    w = torch.rand(18) + 0.1
    assert torch.allclose(focal(logp, y, gamma=0.0), cross_entropy(logp, y))
    assert torch.allclose(focal(logp, y, w, gamma=0.0), cross_entropy(logp, y, w))
    assert torch.allclose(cross_entropy(logp, y), torch.nn.functional.nll_loss(logp, y))
    assert torch.allclose(
        cross_entropy(logp, y, w), torch.nn.functional.nll_loss(logp, y, weight=w)
    )
    # gamma > 0 down-weights every example
    assert focal(logp, y, gamma=2.0) < cross_entropy(logp, y)


def test_label_smoothing_matches_torch():
    logits = torch.randn(20, 18)
    y = torch.randint(0, 18, (20,))
    cfg = TrainConfig(**TINY, loss="label_smoothing", label_smoothing=0.2)
    ours = create_loss(cfg)(torch.log_softmax(logits, 1), y)
    assert torch.allclose(ours, torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.2))


def test_soft_f1_is_zero_when_perfect():
    y = torch.tensor([0, 5, 17])
    logp = torch.log(torch.nn.functional.one_hot(y, 18).float() * (1 - 1e-6) + 1e-7)
    assert float(create_loss(TrainConfig(**TINY, loss="f1"))(logp, y)) < 1e-3


def test_balanced_class_weights_are_inverse_frequency():
    y = np.array([0] * 6 + [1] * 2 + [17] * 1)
    w = class_weights(TrainConfig(**TINY, class_weights="balanced"), y)
    assert w[1] / w[0] == pytest.approx(3.0) and w[17] / w[0] == pytest.approx(6.0)
    assert class_weights(TrainConfig(**TINY), y) is None


def _lrs(cfg: TrainConfig, metrics=None) -> list[float]:
    model = create_model(cfg)
    opt = create_optimizer(cfg, model)
    sched = create_scheduler(cfg, opt)
    out = []
    for e in range(cfg.epochs):
        out.append(sched.lr)
        x, y = _batch(n=4)
        loss = cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step(None if metrics is None else metrics[e])
    return out


def test_schedulers():
    base = dict(TINY, epochs=6, lr=0.1, optimizer="sgd")
    step = _lrs(TrainConfig(**base, scheduler="step"))
    assert step == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    cos = _lrs(TrainConfig(**base, scheduler="cosine"))
    assert cos[0] == pytest.approx(0.1)
    assert all(a > b for a, b in zip(cos[:-1], cos[1:], strict=True))
    warm = _lrs(TrainConfig(**base, scheduler="cosine", warmup_epochs=2))
    assert warm[:3] == pytest.approx([0.1 / 3, 0.2 / 3, 0.1]) and warm[3] < 0.1
    # plateau (mode max, patience 1): lowers the rate after 2 epochs without a better F1
    plat = _lrs(TrainConfig(**base, scheduler="plateau"), metrics=[0.1, 0.2, 0.2, 0.2, 0.3, 0.3])
    assert plat[:4] == pytest.approx([0.1] * 4) and plat[4] == pytest.approx(0.03)
    assert _lrs(TrainConfig(**base, scheduler="none")) == pytest.approx([0.1] * 6)


def test_local_weights_file(tmp_path):
    cfg = TrainConfig(**TINY)
    torch.manual_seed(1)
    source = create_model(cfg)
    path = tmp_path / "backbone.pt"
    torch.save(
        {"state_dict": {"module." + k: v for k, v in source.backbone.state_dict().items()}}, path
    )
    torch.manual_seed(2)
    model = create_model(TrainConfig(**TINY, weights=str(path)))
    for k, v in source.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v)
    with pytest.raises(ConfigError, match="does not exist"):
        create_model(TrainConfig(**TINY, weights=str(tmp_path / "nope.pt")))
    torch.save({"unrelated": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="no tensor"):
        load_backbone_weights(model.backbone, str(tmp_path / "bad.pt"))
