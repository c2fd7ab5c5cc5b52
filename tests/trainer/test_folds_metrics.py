from __future__ import annotations

import numpy as np
import pytest

from maskopt.errors import ConfigError
from maskopt.trainer.folds import create_folds
from maskopt.trainer.metrics import compute_metrics, macro_f1


def _people(n_people: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    person_strata = rng.choice(6, size=n_people, p=[0.3, 0.2, 0.05, 0.25, 0.15, 0.05])
    groups = np.repeat(np.arange(n_people), 7)
    strata = np.repeat(person_strata, 7)
    return strata, groups


def test_folds_keep_people_together_and_cover_everything():
    strata, groups = _people(60)
    folds = create_folds(strata, groups, 5, seed=1)
    assert len(folds) == 5
    seen = np.concatenate([val for _, val in folds])
    assert np.array_equal(np.sort(seen), np.arange(len(groups)))
    for train, val in folds:
        assert not set(groups[train]) & set(groups[val])
        assert len(train) + len(val) == len(groups)


def test_folds_are_stratified():
    strata, groups = _people(300)
    overall = np.bincount(strata, minlength=6) / len(strata)
    for _, val in create_folds(strata, groups, 5, seed=0):
        share = np.bincount(strata[val], minlength=6) / len(val)
        assert np.abs(share - overall).max() < 0.03


def test_folds_are_seeded():
    strata, groups = _people(60)
    a = create_folds(strata, groups, 4, seed=3)
    b = create_folds(strata, groups, 4, seed=3)
    c = create_folds(strata, groups, 4, seed=4)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("n", [1, 61, True])
def test_bad_fold_count(n):
    strata, groups = _people(60)
    with pytest.raises(ConfigError, match="folds"):
        create_folds(strata, groups, n, seed=0)


def test_macro_f1_uses_classes_in_truth_or_prediction():
    y = np.array([0, 0, 1, 1])
    assert macro_f1(y, y) == 1.0
    # class 2 appears only in the prediction: it counts with F1 0
    assert macro_f1(y, np.array([0, 0, 1, 2])) == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_compute_metrics():
    y = np.array([0, 7, 17, 17])
    probs = np.full((4, 18), 0.01)
    probs[[0, 1, 2, 3], [0, 7, 17, 16]] = 0.9  # last one wrong: 16 vs 17 differ in age only
    m = compute_metrics(y, probs)
    assert m["accuracy"] == 0.75
    assert m["mask_f1"] == 1.0 and m["gender_f1"] == 1.0 and m["age_f1"] < 1.0
    assert m["class_f1"][0] == 1.0 and m["class_f1"][16] == 0.0
    assert np.array(m["confusion"]).sum() == 4 and m["confusion"][17][16] == 1
    assert m["per_class"][17]["support"] == 2 and m["per_class"][17]["recall"] == 0.5
    assert m["macro_f1"] == pytest.approx(macro_f1(y, probs.argmax(1)))
