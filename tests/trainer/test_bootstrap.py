"""Count-based macro F1 and the bootstrap intervals over people or images."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from maskopt.trainer.metrics import (
    bootstrap_f1,
    bootstrap_gain,
    macro_f1,
    resample_weights,
    resampled_f1,
)


def _noisy(rng: np.random.Generator, n: int, right: float) -> tuple[np.ndarray, np.ndarray]:
    truth = rng.integers(0, 18, n)
    pred = np.where(rng.random(n) < right, truth, rng.integers(0, 18, n))
    return truth, pred


def test_macro_f1_equals_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        truth, pred = _noisy(rng, int(rng.integers(1, 80)), 0.5)
        want = f1_score(truth, pred, average="macro", zero_division=0)
        assert macro_f1(truth, pred) == pytest.approx(want, abs=1e-12)
    assert macro_f1(np.array([], dtype=int), np.array([], dtype=int)) == 0.0


def test_resampled_f1_with_unit_weights_is_the_plain_score() -> None:
    rng = np.random.default_rng(1)
    truth, pred = _noisy(rng, 200, 0.6)
    groups = np.arange(200) // 4
    weights, unit, name = resample_weights(200, groups, 3, seed=0)
    assert name == "people" and weights.shape == (3, 50) and (weights.sum(1) == 50).all()
    once = np.ones((1, 50))
    assert resampled_f1(truth, pred, once, unit)[0] == pytest.approx(macro_f1(truth, pred))
    # a resample drawing person 0 twice scores like the data with person 0's rows repeated
    twice = once.copy()
    twice[0, 0], twice[0, 1] = 2, 0
    rows = np.r_[np.arange(4), np.arange(4), np.arange(8, 200)]
    assert resampled_f1(truth, pred, twice, unit)[0] == pytest.approx(
        macro_f1(truth[rows], pred[rows])
    )


def test_interval_over_people_is_wider_than_over_images_for_correlated_rows() -> None:
    rng = np.random.default_rng(2)
    person_truth, person_pred = _noisy(rng, 150, 0.6)
    truth, pred = np.repeat(person_truth, 7), np.repeat(person_pred, 7)  # a person's 7 photos
    groups = np.repeat(np.arange(150), 7)
    people = bootstrap_f1(truth, pred, groups, resamples=500)
    images = bootstrap_f1(truth, pred, None, resamples=500)
    assert people.unit == "people" and people.n_units == 150
    assert images.unit == "images" and images.n_units == 1050
    assert people.low <= people.value <= people.high
    assert people.high - people.low > 1.5 * (images.high - images.low)
    assert "bootstrap over 150 people" in str(people)


def test_paired_gain_sees_a_consistent_improvement() -> None:
    rng = np.random.default_rng(3)
    truth, base = _noisy(rng, 2000, 0.6)
    better = np.where(rng.random(2000) < 0.15, truth, base)  # fixes some errors, breaks none
    gain = bootstrap_gain(truth, better, base, np.arange(2000) // 5, resamples=400)
    assert gain.diff.value > 0 and gain.diff.low > 0 and gain.p_positive == 1.0
    same = bootstrap_gain(truth, base, base, None, resamples=50)
    assert same.diff.value == 0 and same.p_positive == 0.0


def test_groups_must_match_the_rows() -> None:
    with pytest.raises(ValueError, match="groups has 3 rows"):
        bootstrap_f1(np.zeros(4, int), np.zeros(4, int), np.zeros(3))
