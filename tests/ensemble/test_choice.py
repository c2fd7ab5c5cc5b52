"""choose_ensemble: the out-of-sample, person-grouped, member-by-member ensemble choice.

Synthetic OOF probabilities for people with 7 photos each: a member is "right" on a
person (a strong logit on the true class for all that person's photos) or only
weakly informed there, so complementary, near-identical and pure-noise members can
be built exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from maskopt.ensemble.choice import TARGET_KEYS, choose_ensemble
from maskopt.ensemble.selection import greedy_select
from maskopt.ensemble.temperature import apply_temperature, fit_temperature
from maskopt.errors import ConfigError
from maskopt.trainer.metrics import macro_f1

PEOPLE, PHOTOS, CLASSES = 200, 7, 18


def people(seed: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(PEOPLE), PHOTOS)
    return rng.integers(0, CLASSES, len(groups)), groups, rng


def member(
    labels: np.ndarray,
    groups: np.ndarray,
    rng: np.random.Generator,
    right: np.ndarray,
    *,
    strong: float = 3.0,
    weak: float = 0.8,
    scale: float = 1.0,
) -> np.ndarray:
    """Probabilities with `strong` extra logit on the truth for the people in `right`,
    `weak` for the others; `scale` > 1 makes the member overconfident."""
    logits = rng.normal(0, 1, (len(labels), CLASSES))
    logits[np.arange(len(labels)), labels] += np.where(right[groups], strong, weak)
    logits *= scale
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def complementary(seed: int = 0, members: int = 3) -> tuple[list, np.ndarray, np.ndarray]:
    """Each member is right on a different third of the people."""
    labels, groups, rng = people(seed)
    part = rng.integers(0, members, PEOPLE)
    return [member(labels, groups, rng, part == m) for m in range(members)], labels, groups


def with_noise(seed: int = 0) -> tuple[list, np.ndarray, np.ndarray]:
    """One informed member and three members that know nothing of the labels."""
    labels, groups, rng = people(seed)
    good = member(labels, groups, rng, rng.random(PEOPLE) < 0.5)
    nobody = np.zeros(PEOPLE, dtype=bool)
    noise = [member(labels, groups, rng, nobody, strong=0, weak=0) for _ in range(3)]
    return [good, *noise], labels, groups


def with_weak(seed: int = 0) -> tuple[list, np.ndarray, np.ndarray]:
    """One informed member and three that know only a little about everyone."""
    labels, groups, rng = people(seed)
    good = member(labels, groups, rng, rng.random(PEOPLE) < 0.5)
    nobody = np.zeros(PEOPLE, dtype=bool)
    weak = [member(labels, groups, rng, nobody, strong=0, weak=0.35) for _ in range(3)]
    return [good, *weak], labels, groups


def near_identical(seed: int = 0) -> tuple[list, np.ndarray, np.ndarray]:
    """Four copies of one member, each jittered by 0.2% multiplicative noise (at 5%,
    averaging the jitter away is a real gain, and the test measures it as one)."""
    labels, groups, rng = people(seed)
    base = member(labels, groups, rng, rng.random(PEOPLE) < 0.5)
    out = []
    for _ in range(4):
        p = base * np.exp(rng.normal(0, 0.002, base.shape))
        out.append((p / p.sum(1, keepdims=True)).astype(np.float32))
    return out, labels, groups


def names(n: int) -> list[str]:
    return [f"trial {10 + i}" for i in range(n)]


@pytest.mark.parametrize("vote", ["soft", "hard"])
def test_complementary_members_are_kept_with_a_confident_out_of_sample_gain(vote) -> None:
    probs, labels, groups = complementary()
    c = choose_ensemble(probs, labels, groups, names=names(3), vote=vote)
    assert c.kept
    assert len(c.members) >= 2
    assert c.gain is not None
    assert c.gain.diff.value > 0
    assert c.gain.p_positive >= 0.9
    assert c.gain.diff.unit == "people"
    assert c.steps[0].size == 2 and c.steps[0].accepted
    assert c.decision.startswith(f"ensemble of {len(c.members)} kept")
    assert str(c.gain) in c.decision
    # what was exported scores what it says on the OOF predictions
    combined = sum(w * probs[i] for i, w in zip(c.members, c.weights, strict=True))
    if vote == "soft":
        assert macro_f1(labels, combined.argmax(1)) == pytest.approx(c.in_sample_f1)
    assert c.in_sample_f1 > c.best_f1


@pytest.mark.parametrize(
    ("case", "vote"),
    [(near_identical, "soft"), (with_noise, "soft"), (with_noise, "hard")],
)
def test_useless_members_leave_the_best_single_and_the_decision_says_why(case, vote) -> None:
    probs, labels, groups = case()
    c = choose_ensemble(probs, labels, groups, names=names(len(probs)), vote=vote)
    singles = [macro_f1(labels, p.argmax(1)) for p in probs]
    assert not c.kept
    assert c.members == (c.best,) and c.weights == (1.0,)
    assert c.best == int(np.argmax(singles))
    assert c.best_f1 == pytest.approx(max(singles))
    assert c.gain is not None and not (c.gain.diff.value > 0 and c.gain.p_positive >= 0.9)
    assert c.decision.startswith(f"best single {names(len(probs))[c.best]} exported")
    assert str(c.gain) in c.decision
    assert f"P(gain > 0) = {c.gain.p_positive:.3f}" in c.decision
    assert len(c.steps) == 1 and not c.steps[0].accepted


def test_a_candidate_with_another_old_age_is_never_averaged() -> None:
    # trial 12 would help (it is right on people the others miss), but it was trained
    # to call 60+ old while the best single calls 58+ old
    probs, labels, groups = complementary(seed=1, members=3)
    assert "old_age" in TARGET_KEYS
    best = int(np.argmax([macro_f1(labels, p.argmax(1)) for p in probs]))
    other = next(i for i in range(3) if i != best)
    odd = next(i for i in range(3) if i not in (best, other))
    targets = [{"old_age": 58}] * 3
    targets[odd] = {"old_age": 60}
    free = choose_ensemble(probs, labels, groups, names=names(3))
    assert odd in free.members  # without targets it would be a member
    c = choose_ensemble(probs, labels, groups, names=names(3), targets=targets)
    assert odd not in c.members
    assert c.left_out == (odd,)
    assert c.kept and set(c.members) == {best, other}
    assert f"{names(3)[odd]} left out: trained with old_age=60" in c.target_note
    assert f"best single {names(3)[best]} with old_age=58" in c.target_note
    # and when every candidate shares the best's target, the note says so
    same = choose_ensemble(probs, labels, groups, names=names(3), targets=[{"old_age": 58}] * 3)
    assert same.left_out == ()
    assert "all 3 candidates trained with old_age=58" in same.target_note


def test_no_candidate_shares_the_best_single_target() -> None:
    probs, labels, groups = complementary(seed=2)
    best = int(np.argmax([macro_f1(labels, p.argmax(1)) for p in probs]))
    targets = [{"old_age": 58 if i == best else 60} for i in range(3)]
    c = choose_ensemble(probs, labels, groups, names=names(3), targets=targets)
    assert (c.members, c.kept, c.gain) == ((best,), False, None)
    assert "no other candidate shares its training target" in c.decision


def test_same_seed_same_choice_and_the_manifest_form_is_json() -> None:
    probs, labels, groups = with_noise(seed=3)
    a = choose_ensemble(probs, labels, groups, seed=7, splits=8)
    b = choose_ensemble(probs, labels, groups, seed=7, splits=8)
    assert a == b
    assert json.loads(json.dumps(a.as_dict())) == a.as_dict()
    assert a.as_dict()["gain"]["p_positive"] == a.gain.p_positive
    # candidates in another order: the same members, by their new indices
    order = [2, 0, 3, 1]
    c = choose_ensemble([probs[i] for i in order], labels, groups, seed=7, splits=8)
    assert sorted(order[i] for i in c.members) == list(a.members)


@pytest.mark.parametrize("case", [complementary, with_noise, with_weak, near_identical])
def test_members_and_weights_are_valid(case) -> None:
    probs, labels, groups = case()
    c = choose_ensemble(probs, labels, groups, splits=6)
    assert list(c.members) == sorted(set(c.members))
    assert all(0 <= i < len(probs) for i in c.members)
    assert len(c.weights) == len(c.members) == len(c.temperatures)
    assert all(w > 0 for w in c.weights)
    assert sum(c.weights) == pytest.approx(1.0)
    assert c.best in c.members


def test_the_out_of_sample_gain_removes_greedy_optimism() -> None:
    # weak members carry a little real signal, so some gain is real; greedy on the
    # rows it scores claims more than the same choice earns on people it has not seen
    ins, outs = [], []
    for seed in range(4):
        probs, labels, groups = with_weak(seed=seed)
        c = choose_ensemble(probs, labels, groups, splits=10)
        assert c.gain is not None
        assert c.in_sample_gain > c.gain.diff.value
        ins.append(c.in_sample_gain)
        outs.append(c.gain.diff.value)
    assert np.mean(ins) - np.mean(outs) > 0.003


def test_fit_temperature_recovers_a_known_overconfidence() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, (4000, CLASSES))
    calibrated = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(CLASSES, p=p) for p in calibrated])
    sharp = apply_temperature(calibrated, 1 / 3)  # three times overconfident
    assert fit_temperature(sharp, labels) == pytest.approx(3.0, rel=0.15)
    assert fit_temperature(calibrated, labels) == pytest.approx(1.0, rel=0.15)
    # a temperature never changes a member's own prediction
    assert (sharp.argmax(1) == calibrated.argmax(1)).all()
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
        apply_temperature(sharp, 0.0)


def test_temperature_is_kept_only_when_it_helps_out_of_sample() -> None:
    # member 0 is four times overconfident: in a plain mean its wrong votes drown the others
    labels, groups, rng = people(5)
    part = rng.integers(0, 3, PEOPLE)
    scales = (4.0, 1.0, 1.0)
    probs = [member(labels, groups, rng, part == m, scale=s) for m, s in enumerate(scales)]
    c = choose_ensemble(probs, labels, groups, names=names(3))
    assert c.temperature_gain is not None
    assert c.temperature_kept and c.kept
    assert c.temperature_gain.diff.value > 0 and c.temperature_gain.p_positive >= 0.9
    assert "temperature scaling kept" in c.temperature_note
    t = dict(zip(c.members, c.temperatures, strict=True))
    assert t[0] > 2 * max(t[i] for i in c.members if i != 0)
    tempered = [apply_temperature(probs[i], t[i]) for i in c.members]
    combined = sum(w * p for w, p in zip(c.weights, tempered, strict=True))
    assert macro_f1(labels, combined.argmax(1)) == pytest.approx(c.in_sample_f1)
    # members alike in confidence: measured, not kept, temperatures all 1
    probs, labels, groups = complementary()
    c = choose_ensemble(probs, labels, groups)
    assert c.temperature_gain is not None and not c.temperature_kept
    assert "temperature scaling not kept" in c.temperature_note
    assert set(c.temperatures) == {1.0}
    # a hard vote counts argmaxes: nothing to scale
    hard = choose_ensemble(probs, labels, groups, vote="hard", splits=4)
    assert hard.temperature_gain is None and not hard.temperature_kept
    assert "not measured" in hard.temperature_note


def test_greedy_max_members_caps_the_distinct_members() -> None:
    probs, labels, _ = complementary(members=4)
    for cap in (1, 2, 3):
        sel = greedy_select(probs, labels, max_members=cap)
        assert 1 <= len(sel.members) <= cap
    assert len(greedy_select(probs, labels, max_members=1).order) == 1
    with pytest.raises(ConfigError, match="max_members must be >= 1"):
        greedy_select(probs, labels, max_members=0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"confidence": 1.0}, ConfigError, r"confidence must be in \[0.5, 1\)"),
        ({"splits": 0}, ConfigError, "splits must be >= 1"),
        ({"vote": "median"}, ConfigError, "vote must be one of"),
        ({"names": ["a"]}, ValueError, "one of names per candidate"),
        ({"targets": [{"old_age": 60}]}, ValueError, "one of targets per candidate"),
    ],
)
def test_bad_arguments_say_what_came(kwargs, error, match) -> None:
    probs, labels, groups = complementary()
    with pytest.raises(error, match=match):
        choose_ensemble(probs, labels, groups, **kwargs)


def test_groups_must_match_rows() -> None:
    probs, labels, groups = complementary()
    with pytest.raises(ValueError, match="groups has"):
        choose_ensemble(probs, labels, groups[:-1])


def test_the_k_best_at_equal_weight_is_a_way_of_weighting() -> None:
    # three members, each right on its own random half of the rows and confidently wrong
    # elsewhere: any two together beat one, all three beat two
    rng = np.random.default_rng(7)
    people = 300
    groups = np.repeat(np.arange(people), 7)
    labels = rng.integers(0, 18, len(groups))
    probs = []
    for m in range(4):
        right = rng.random(len(groups)) < (0.55 if m < 3 else 0.2)
        guess = np.where(right, labels, rng.integers(0, 18, len(groups)))
        p = rng.dirichlet(np.ones(18) * 0.5, len(groups)) * 0.4
        p[np.arange(len(groups)), guess] += 0.6
        probs.append((p / p.sum(1, keepdims=True)).astype(np.float32))
    c = choose_ensemble(probs, labels, groups, names=names(4), methods=("uniform",))
    singles = [macro_f1(labels, p.argmax(1)) for p in probs]
    assert c.kept and c.method == "uniform"
    top = sorted(range(4), key=lambda i: -singles[i])[: len(c.members)]
    assert sorted(c.members) == sorted(top) and len(set(c.weights)) == 1
    assert "at equal weight" in c.decision and c.gain is not None and c.gain.p_positive >= 0.9
    both = choose_ensemble(probs, labels, groups, names=names(4))
    assert both.method in ("greedy", "uniform") and both.kept
    with pytest.raises(ConfigError, match="methods must be some of greedy, uniform"):
        choose_ensemble(probs, labels, groups, methods=("median",))
