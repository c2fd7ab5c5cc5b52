"""The whole trainer learns: a small synthetic set, a tiny model, seconds on the CPU.

A smaller version of issue 3's "done when" (150 people, resnet10t, 64 px, 10 epochs,
macro F1 >= 0.6; measured in BENCHMARKS.md): 48 people, timm's test_resnet at 32 px.
"""

from __future__ import annotations

import numpy as np
import pytest

from maskopt.trainer.folds import create_folds
from maskopt.trainer.loop import fit
from maskopt.trainer.metrics import compute_metrics, macro_f1
from tests.trainer.conftest import tiny_cfg


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    from maskopt.data.layout import read_train
    from maskopt.data.synth import synthesize

    out = tmp_path_factory.mktemp("small") / "data"
    synthesize(out, people=48, eval_people=0, seed=0, size=(96, 128), progress=False)
    return read_train(out)


def test_a_tiny_model_learns_far_above_chance(small_set):
    train_idx, val_idx = create_folds(small_set.strata(), small_set.groups(), 3, seed=0)[0]
    cfg = tiny_cfg(epochs=10, lr=3e-3, augment=0)
    result = fit(cfg, small_set, (train_idx, val_idx), device="cpu")
    y = small_set.labels()[val_idx]
    rng = np.random.default_rng(0)
    # chance: the true labels of the validation part, shuffled (same class mix, no signal)
    chance = float(np.mean([macro_f1(y, rng.permutation(y)) for _ in range(50)]))
    m = compute_metrics(y, result.val_probs)
    assert result.best_f1 > 3 * chance, (result.best_f1, chance)
    assert m["mask_f1"] > 0.5 and m["gender_f1"] > 0.7, m
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.6 * losses[0]
