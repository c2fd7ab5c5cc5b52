"""Soft voting, hard voting and greedy forward selection as pure functions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from maskopt.ensemble.selection import greedy_select, member_scores
from maskopt.ensemble.vote import combine, hard_vote, soft_vote
from maskopt.errors import ConfigError


def f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(f1_score(y_true, y_pred, average="macro"))


def noisy_members(n: int = 600, classes: int = 18, members: int = 4, seed: int = 0):
    """Members that are right on different, partly overlapping parts of the data."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    out = []
    for m in range(members):
        logits = rng.normal(0, 1, (n, classes))
        right = rng.random(n) < 0.45 + 0.05 * m
        logits[np.arange(n), labels] += np.where(right, 2.5, 0.0)
        p = np.exp(logits)
        out.append((p / p.sum(1, keepdims=True)).astype(np.float32))
    return out, labels


def test_soft_vote_is_weighted_mean() -> None:
    a = np.array([[0.8, 0.2], [0.1, 0.9]], np.float32)
    b = np.array([[0.2, 0.8], [0.5, 0.5]], np.float32)
    np.testing.assert_allclose(soft_vote([a, b]), (a + b) / 2, rtol=1e-6)
    np.testing.assert_allclose(soft_vote([a, b], [3, 1]), 0.75 * a + 0.25 * b, rtol=1e-6)
    np.testing.assert_allclose(soft_vote([a, b], [1, 0]), a)
    assert soft_vote([a, b]).dtype == np.float32
    assert hard_vote([a, b]).dtype == np.float64


def test_hard_vote_counts_votes_and_breaks_ties_by_soft_mean() -> None:
    # three members: class 0, class 1, class 1 for row 0 -> class 1 wins despite low probs
    a = np.array([[0.99, 0.01]], np.float32)
    b = np.array([[0.45, 0.55]], np.float32)
    shares = hard_vote([a, b, b])
    assert shares.argmax(1).tolist() == [1]
    np.testing.assert_allclose(shares.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(shares[0], [1 / 3, 2 / 3], atol=1e-3)  # the tie-break: < 1e-3
    # two members, one vote each: the soft mean (0.72 vs 0.28) decides
    assert hard_vote([a, b]).argmax(1).tolist() == [0]
    # weights count as votes
    assert hard_vote([a, b], [2, 1]).argmax(1).tolist() == [0]
    assert hard_vote([a, b], [1, 2]).argmax(1).tolist() == [1]


@pytest.mark.parametrize(
    ("probs", "weights", "match"),
    [
        ([], None, "at least one"),
        ([np.zeros((3, 2)), np.zeros((4, 2))], None, "shape"),
        ([np.zeros(3)], None, r"\(N, classes\)"),
        ([np.zeros((3, 2))] * 2, [1.0], "one weight per member"),
        ([np.zeros((3, 2))] * 2, [1.0, -1.0], ">= 0"),
        ([np.zeros((3, 2))] * 2, [0.0, 0.0], "not all 0"),
    ],
)
def test_bad_inputs_say_what_came(probs, weights, match) -> None:
    with pytest.raises(ValueError, match=match):
        soft_vote(probs, weights)


def test_unknown_vote_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="vote must be one of soft, hard"):
        combine([np.ones((2, 2))], vote="median")


def test_greedy_starts_with_the_best_single_and_never_scores_below_it() -> None:
    probs, labels = noisy_members()
    singles = member_scores(probs, labels, score=f1)
    for vote in ("soft", "hard"):
        sel = greedy_select(probs, labels, vote=vote, score=f1)
        assert sel.order[0] == int(np.argmax(singles))
        assert sel.history[0] == pytest.approx(max(singles))
        assert sel.score >= max(singles)
        # history strictly increases: every accepted pick improved the score
        assert all(b > a for a, b in zip(sel.history, sel.history[1:], strict=False))
        assert sum(sel.counts) == len(sel.order) == len(sel.history)
        assert sum(sel.weights) == pytest.approx(1.0)
        # the reported score is the score of the combination the weights describe
        combined = combine(probs, sel.weights, vote=vote)
        assert f1(labels, combined.argmax(1)) == pytest.approx(sel.score)


def test_greedy_beats_the_best_single_on_complementary_members() -> None:
    probs, labels = noisy_members(members=4, seed=1)
    sel = greedy_select(probs, labels, score=f1)
    singles = member_scores(probs, labels, score=f1)
    assert len(sel.members) >= 2
    assert sel.score > max(singles) + 0.02


def test_greedy_keeps_one_member_when_the_others_only_hurt() -> None:
    probs, labels = noisy_members(members=1, seed=2)
    rng = np.random.default_rng(3)
    junk = rng.dirichlet(np.ones(18), size=len(labels)).astype(np.float32)
    sel = greedy_select([junk, probs[0]], labels, score=f1)
    assert sel.counts == (0, 1)
    assert sel.weights == (0.0, 1.0)


def test_greedy_repeats_a_member_to_weight_it() -> None:
    # Three kinds of rows. X: A sure and right, B unsure and wrong. Y: A unsure and wrong,
    # B sure and right. Z: A fairly sure and right, B sure and wrong. A alone gets X+Z
    # (65%), A+B at 1:1 gets X+Y (75%), only A:B = 2:1 gets all three.
    n, c = 400, 5
    labels = np.arange(n) % c
    kind = np.array(["X"] * 8 + ["Y"] * 7 + ["Z"] * 5)[np.arange(n) % 20]
    w1, w2 = (labels + 1) % c, (labels + 2) % c
    rows = np.arange(n)

    def member(spec: dict[str, dict[str, float]]) -> np.ndarray:
        p = np.zeros((n, c))
        for k, probs in spec.items():
            sel = kind == k
            rest = (1 - sum(probs.values())) / (c - len(probs))
            p[sel] = rest
            for name, v in probs.items():
                col = {"label": labels, "w1": w1, "w2": w2}[name]
                p[rows[sel], col[sel]] = v
        return p.astype(np.float32)

    a = member({"X": {"label": 0.9}, "Y": {"label": 0.25, "w1": 0.35}, "Z": {"label": 0.5}})
    b = member({"X": {"label": 0.15, "w1": 0.4}, "Y": {"label": 0.9}, "Z": {"w2": 0.7}})
    sel = greedy_select([a, b], labels, rounds=10, score=f1)
    assert sel.order[:3] == (0, 1, 0)
    assert sel.counts == (2, 1)
    assert sel.score == pytest.approx(1.0)


def test_rounds_caps_the_picks() -> None:
    probs, labels = noisy_members(seed=4)
    sel = greedy_select(probs, labels, rounds=1, score=f1)
    assert sum(sel.counts) == 1
    with pytest.raises(ConfigError, match="rounds must be >= 1"):
        greedy_select(probs, labels, rounds=0, score=f1)


def test_labels_must_match_rows() -> None:
    probs, labels = noisy_members()
    with pytest.raises(ValueError, match="labels has"):
        greedy_select(probs, labels[:-1], score=f1)


def test_default_score_is_the_trainers_macro_f1() -> None:
    from maskopt.trainer.metrics import macro_f1

    probs, labels = noisy_members(seed=5)
    assert member_scores(probs, labels) == [macro_f1(labels, p.argmax(1)) for p in probs]
    assert greedy_select(probs, labels).score == greedy_select(probs, labels, score=f1).score
