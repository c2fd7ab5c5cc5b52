"""choose_ensemble: the export chosen by its expected macro F1 on new people (person-grouped
cross-fitting), among the best single, the k best averaged and ensemble selection.

Synthetic OOF probabilities for people with 7 photos each: a member is "right" on a
person (a strong logit on the true class for all that person's photos) or only
weakly informed there, so complementary, near-identical and pure-noise members can
be built exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from maskopt.ensemble.choice import MARGIN, TARGET_KEYS, choose_ensemble, default_splits
from maskopt.ensemble.selection import ensemble_selection, greedy_select, macro_f1_many
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


def singles(probs, labels) -> list[float]:
    return [macro_f1(labels, p.argmax(1)) for p in probs]


@pytest.mark.parametrize("vote", ["soft", "hard"])
def test_where_averaging_truly_helps_an_ensemble_is_exported(vote) -> None:
    probs, labels, groups = complementary()
    c = choose_ensemble(probs, labels, groups, names=names(3), vote=vote, splits=8)
    assert c.kept and len(c.members) >= 2 and c.method in ("top", "selection")
    pick = c.options[c.chosen]
    single = c.options[0]
    assert single.kind == "single" and single.members == (c.best,)
    assert pick.expected.value > single.expected.value + MARGIN
    assert pick.gain is not None and pick.gain.diff.value > 0 and pick.gain.diff.unit == "people"
    assert c.decision.startswith(pick.name) and "expected macro F1 on new people" in c.decision
    # what was exported scores what it says on the OOF predictions
    if vote == "soft":
        combined = sum(w * probs[i] for i, w in zip(c.members, c.weights, strict=True))
        assert macro_f1(labels, combined.argmax(1)) == pytest.approx(c.in_sample_f1)
    assert c.in_sample_f1 > c.best_f1
    assert c.teacher == c.chosen and "learns from the export" in c.teacher_note


@pytest.mark.parametrize(
    ("case", "vote"),
    [(near_identical, "soft"), (with_noise, "soft"), (with_noise, "hard")],
)
def test_where_averaging_hurts_or_adds_nothing_the_best_single_is_exported(case, vote) -> None:
    probs, labels, groups = case()
    c = choose_ensemble(probs, labels, groups, names=names(len(probs)), vote=vote, splits=8)
    assert not c.kept and c.method == "single" and c.chosen == 0
    assert c.members == (c.best,) and c.weights == (1.0,)
    assert c.best == int(np.argmax(singles(probs, labels)))
    assert c.best_f1 == pytest.approx(max(singles(probs, labels)))
    best_other = max(o.expected.value for o in c.options[1:])
    assert c.options[0].expected.value >= best_other - MARGIN  # nothing expects more
    assert c.decision.startswith(f"best single {names(len(probs))[c.best]} exported")
    # a student still gets a teacher: the best average of the top trials
    assert c.teacher is not None and c.options[c.teacher].kind == "top"
    assert "the export is a single model" in c.teacher_note


def test_every_option_is_judged_and_the_best_expected_wins_unless_a_simpler_is_close() -> None:
    probs, labels, groups = complementary(seed=4, members=4)
    c = choose_ensemble(probs, labels, groups, top=4, splits=8)
    assert [o.name for o in c.options] == [
        "best single",
        "top 2 averaged",
        "top 3 averaged",
        "top 4 averaged",
        "ensemble selection",
    ]
    for o in c.options:
        assert o.expected.low <= o.expected.value <= o.expected.high
        assert sum(o.weights) == pytest.approx(1.0)
        if o.kind == "top":
            assert len(o.members) == o.k and len(set(o.weights)) == 1
    top = max(o.expected.value for o in c.options)
    assert c.options[c.chosen].expected.value >= top - MARGIN
    fewer = [
        o
        for o in c.options
        if len(o.members) < len(c.options[c.chosen].members) and o.expected.value >= top - MARGIN
    ]
    assert fewer == []  # no option with fewer members is within the margin
    # a margin of 0 takes the highest expected score, whatever its size
    exact = choose_ensemble(probs, labels, groups, top=4, splits=8, margin=0)
    assert exact.options[exact.chosen].expected.value == top


def test_a_candidate_with_another_old_age_is_never_averaged() -> None:
    # trial 12 would help (it is right on people the others miss), but it was trained
    # to call 60+ old while the best single calls 58+ old
    probs, labels, groups = complementary(seed=1, members=3)
    assert "old_age" in TARGET_KEYS
    best = int(np.argmax(singles(probs, labels)))
    other = next(i for i in range(3) if i != best)
    odd = next(i for i in range(3) if i not in (best, other))
    targets = [{"old_age": 58}] * 3
    targets[odd] = {"old_age": 60}
    free = choose_ensemble(probs, labels, groups, names=names(3), splits=8)
    assert odd in free.members  # without targets it would be a member
    c = choose_ensemble(probs, labels, groups, names=names(3), targets=targets, splits=8)
    assert odd not in c.members and all(odd not in o.members for o in c.options)
    assert c.left_out == (odd,)
    assert c.kept and set(c.members) == {best, other}
    assert f"{names(3)[odd]} left out: trained with old_age=60" in c.target_note
    assert f"best single {names(3)[best]} with old_age=58" in c.target_note
    same = choose_ensemble(
        probs, labels, groups, names=names(3), targets=[{"old_age": 58}] * 3, splits=4
    )
    assert same.left_out == ()
    assert "all 3 candidates trained with old_age=58" in same.target_note


def test_fewer_halvings_as_people_grow() -> None:
    assert [default_splits(n) for n in (24, 120, 240, 300, 900, 2700)] == [20, 20, 20, 16, 5, 4]
    probs, labels, groups = complementary()  # 200 people: all 20
    assert choose_ensemble(probs, labels, groups, top=2).splits == 20


def test_top_1_asks_for_the_best_single_alone() -> None:
    probs, labels, groups = complementary()
    c = choose_ensemble(probs, labels, groups, top=1, splits=4)
    assert [o.kind for o in c.options] == ["single"] and c.members == (c.best,) and not c.kept


def test_no_candidate_shares_the_best_single_target() -> None:
    probs, labels, groups = complementary(seed=2)
    best = int(np.argmax(singles(probs, labels)))
    targets = [{"old_age": 58 if i == best else 60} for i in range(3)]
    c = choose_ensemble(probs, labels, groups, names=names(3), targets=targets, splits=4)
    assert (c.members, c.kept, c.gain, len(c.options)) == ((best,), False, None, 1)
    assert "no other candidate shares its training target" in c.decision
    assert c.teacher is None and "no ensemble to distil" in c.teacher_note


def test_same_seed_same_choice_and_the_manifest_form_is_json() -> None:
    probs, labels, groups = complementary(seed=3)
    a = choose_ensemble(probs, labels, groups, seed=7, splits=6)
    b = choose_ensemble(probs, labels, groups, seed=7, splits=6)
    assert a == b
    assert json.loads(json.dumps(a.as_dict())) == a.as_dict()
    assert (
        a.as_dict()["options"][a.chosen]["expected"]["value"] == a.options[a.chosen].expected.value
    )
    # candidates in another order: the same members, by their new indices
    order = [2, 0, 1]
    c = choose_ensemble([probs[i] for i in order], labels, groups, seed=7, splits=6)
    assert sorted(order[i] for i in c.members) == list(a.members)


@pytest.mark.parametrize("case", [complementary, with_noise, with_weak, near_identical])
def test_members_and_weights_are_valid(case) -> None:
    probs, labels, groups = case()
    c = choose_ensemble(probs, labels, groups, splits=4)
    assert list(c.members) == sorted(set(c.members))
    assert all(0 <= i < len(probs) for i in c.members)
    assert len(c.weights) == len(c.members) == len(c.temperatures)
    assert all(w > 0 for w in c.weights)
    assert sum(c.weights) == pytest.approx(1.0)
    assert c.kept == (len(c.members) > 1)


def test_the_expected_score_removes_in_sample_optimism() -> None:
    # weak members carry a little real signal; selection on the rows it scores claims more
    # than the same procedure earns on people it has not seen
    ins, outs = [], []
    for seed in range(3):
        probs, labels, groups = with_weak(seed=seed)
        c = choose_ensemble(probs, labels, groups, splits=6)
        sel = next(o for o in c.options if o.kind == "selection")
        ins.append(sel.in_sample_f1)
        outs.append(sel.expected.value)
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
    c = choose_ensemble(probs, labels, groups, names=names(3), splits=8)
    assert c.kept and c.temperature_gain is not None and c.temperature_kept
    assert c.temperature_gain.diff.value > MARGIN
    assert "temperature scaling kept" in c.temperature_note
    t = dict(zip(c.members, c.temperatures, strict=True))
    if 0 in t:
        assert t[0] > 2 * max(t[i] for i in c.members if i != 0)
    tempered = [apply_temperature(probs[i], t[i]) for i in c.members]
    combined = sum(w * p for w, p in zip(c.weights, tempered, strict=True))
    assert macro_f1(labels, combined.argmax(1)) == pytest.approx(c.in_sample_f1)
    # members alike in confidence: measured, not kept, temperatures all 1
    probs, labels, groups = complementary()
    c = choose_ensemble(probs, labels, groups, splits=8)
    assert c.temperature_gain is not None and not c.temperature_kept
    assert "temperature scaling not kept" in c.temperature_note
    assert set(c.temperatures) == {1.0}
    # a hard vote counts argmaxes: nothing to scale
    hard = choose_ensemble(probs, labels, groups, vote="hard", splits=4)
    assert hard.temperature_gain is None and not hard.temperature_kept
    assert "not measured" in hard.temperature_note


def test_ensemble_selection_weighs_the_helpful_and_starts_from_the_best() -> None:
    probs, labels, groups = complementary(members=3)
    noise, _, _ = with_noise(seed=1)
    pool = [*probs, noise[1], noise[2]]  # two members that know nothing of these labels
    w = ensemble_selection(pool, labels, bags=10, seed=0)
    assert w.shape == (5,) and w.sum() == pytest.approx(1.0) and (w >= 0).all()
    assert w[:3].min() > 0.1 and w[3:].sum() < 0.1
    one = ensemble_selection(pool, labels, bags=1, rounds=1, init_max=1)
    best = int(np.argmax(singles(pool, labels)))
    assert one[best] > 0  # the path starts from the best model
    with pytest.raises(ConfigError, match="bag_fraction"):
        ensemble_selection(pool, labels, bag_fraction=0)


def test_macro_f1_many_is_macro_f1_row_by_row() -> None:
    rng = np.random.default_rng(3)
    for n, k in ((200, 18), (40, 5), (7, 2)):
        y = rng.integers(0, k, n)
        preds = rng.integers(0, k, (6, n))
        preds[0] = y
        assert np.allclose(macro_f1_many(y, preds), [macro_f1(y, p) for p in preds])


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
        ({"margin": 0.5}, ConfigError, r"margin must be in \[0, 0.1\)"),
        ({"splits": 0}, ConfigError, "splits must be >= 1"),
        ({"top": 0}, ConfigError, "top must be >= 1"),
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
