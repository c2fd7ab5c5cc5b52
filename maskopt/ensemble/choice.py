"""The export's choice: which combination of trials is expected to score best on new people.

The candidates for the export, each a way to build it from the trials' out-of-fold (OOF)
probabilities:

- the best single trial;
- the k best at equal weight, for each k from 2 to `top` (nothing to fit but the ranking,
  so they overfit the OOF least);
- ensemble selection with replacement over every trial given (Caruana et al. 2004, with
  sorted initialisation and bagging from 2006: `selection.ensemble_selection`).

Each is judged by the same person-grouped cross-fitting: `splits` times the people are halved
at random (all of a person's rows together), the candidate is fitted on one half (its best
single, its ranking, its selection) and predicts the other, and vice versa. Every row thus gets
a prediction chosen without seeing that row's person, and a candidate's expected macro F1 on
new people is the F1 of its cross-fitted predictions, the repeats pooled (each row counts once
per repeat, F1 from the pooled counts), with a 95% interval from a bootstrap over people (a
person's rows of every repeat resampled together). Fitting on half the people is a little
weaker than on all, the same for every candidate, so the comparison is fair.

The export is the candidate with the highest expected score; a simpler one (fewer members:
the single, then the smaller averages) is preferred when it is within MARGIN of it.
Then, for an ensemble under a soft vote, per-member temperature scaling (softmax(log p / T),
T fitted by NLL on the fitting half) is judged the same way and kept when it scores higher by
more than MARGIN.

Only candidates trained for the same target as the best single (`TARGET_KEYS`, e.g. `old_age`
58 vs 60) are averaged: a mean of different targets moves a class boundary (who counts as old)
instead of adding variety.

For distillation (`best --export --distill`) the choice also names a teacher: the export when
it is an ensemble, else the k-best average with the best expected score (a student needs a
teacher better than itself).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskopt.ensemble.selection import ensemble_selection, macro_f1_many
from maskopt.ensemble.temperature import fit_log_temperature, log_probs, softmax
from maskopt.ensemble.vote import check_members, check_vote, combine
from maskopt.errors import ConfigError
from maskopt.trainer.metrics import Gain, Interval, bootstrap_f1, bootstrap_gain, macro_f1

# Config keys that change what a model is trained to predict (not how well): averaging
# members that disagree on them moves a class boundary instead of adding variety.
TARGET_KEYS = ("old_age",)
# A simpler export is preferred when its expected macro F1 is within this of the best one's:
# about the size of a difference the cross-fit cannot tell from noise on a demo-sized study.
MARGIN = 0.002
SELECTION_BAGS = 10
# Halvings of the people: the pooled estimate's spread comes from which people there are, and
# each halving of many people already averages over many: fewer are needed as people grow,
# and each costs an ensemble selection per half (minutes with 100 trials of 2,700 people).
MAX_SPLITS, MIN_SPLITS, PEOPLE_FOR_ALL_SPLITS = 20, 4, 240


def default_splits(n_people: int) -> int:
    """20 halvings up to 240 people, then fewer in proportion, at least 4 (2,700 people: 4)."""
    return max(MIN_SPLITS, min(MAX_SPLITS, round(MAX_SPLITS * PEOPLE_FOR_ALL_SPLITS / n_people)))


@dataclass(frozen=True)
class Option:
    """One candidate for the export, judged out of sample."""

    name: str  # "best single", "top 3 averaged", "ensemble selection"
    kind: str  # "single" | "top" | "selection"
    k: int  # members of a top-k average (1 for the single, 0 for selection)
    members: tuple[int, ...]  # fitted on all the OOF: the candidates with a vote
    weights: tuple[float, ...]  # one per member, sum 1
    expected: Interval  # macro F1 on new people: cross-fitted, pooled, 95% CI over people
    gain: Gain | None  # over the best single on the same cross-fitted rows (None: the single)
    in_sample_f1: float  # on all the OOF it was fitted on (optimistic)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "k": self.k,
            "members": list(self.members),
            "weights": list(self.weights),
            "expected": self.expected.as_dict(),
            "gain": None if self.gain is None else _gain_dict(self.gain),
            "in_sample_f1": self.in_sample_f1,
        }


@dataclass(frozen=True)
class Choice:
    """What `choose_ensemble` chose and why, in candidate indices."""

    members: tuple[int, ...]  # candidates with a vote, in candidate order
    weights: tuple[float, ...]  # one per member, sum 1
    kept: bool  # an ensemble of >= 2 members; False: the best single alone
    best: int  # the best single candidate (OOF macro F1)
    best_f1: float  # its OOF macro F1
    in_sample_f1: float  # OOF macro F1 of the members with their weights (optimistic)
    method: str  # the chosen option's kind: "single", "top" or "selection"
    options: tuple[Option, ...]  # every candidate for the export, judged the same way
    chosen: int  # index into options
    decision: str  # one line for the user: what was exported and why
    left_out: tuple[int, ...]  # candidates with another training target than the best
    target_note: str
    temperatures: tuple[float, ...]  # one per member, 1.0 = none; apply_temperature first
    temperature_kept: bool
    temperature_gain: Gain | None  # tempered export over the plain one, out of sample
    temperature_note: str
    teacher: int | None  # index into options: what a student learns from (None: no ensemble)
    teacher_note: str
    vote: str
    splits: int
    margin: float = MARGIN
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def gain(self) -> Gain | None:
        """The export's expected gain over the best single (None when it is the single)."""
        return self.options[self.chosen].gain

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, for the bundle's manifest."""
        return {
            "members": list(self.members),
            "weights": list(self.weights),
            "kept": self.kept,
            "best": self.best,
            "best_f1": self.best_f1,
            "in_sample_f1": self.in_sample_f1,
            "method": self.method,
            "options": [o.as_dict() for o in self.options],
            "chosen": self.chosen,
            "gain": None if self.gain is None else _gain_dict(self.gain),
            "decision": self.decision,
            "left_out": list(self.left_out),
            "target_note": self.target_note,
            "temperatures": list(self.temperatures),
            "temperature_kept": self.temperature_kept,
            "temperature_gain": (
                None if self.temperature_gain is None else _gain_dict(self.temperature_gain)
            ),
            "temperature_note": self.temperature_note,
            "teacher": self.teacher,
            "teacher_note": self.teacher_note,
            "vote": self.vote,
            "splits": self.splits,
            "margin": self.margin,
        }


def _gain_dict(g: Gain) -> dict[str, Any]:
    return {"diff": g.diff.as_dict(), "p_positive": g.p_positive}


def _target(t: Mapping[str, Any] | None) -> tuple[Any, ...]:
    return tuple((t or {}).get(k) for k in TARGET_KEYS)


def _target_str(key: tuple[Any, ...]) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(TARGET_KEYS, key, strict=True))


def _halves(groups: np.ndarray, splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`splits` random halvings of the people: (rows of half A, rows of half B) each."""
    people, person = np.unique(groups, return_inverse=True)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(splits):
        in_a = np.zeros(len(people), dtype=bool)
        in_a[rng.permutation(len(people))[: len(people) // 2]] = True
        rows_a = in_a[person.ravel()]
        out.append((np.flatnonzero(rows_a), np.flatnonzero(~rows_a)))
    return out


Spec = tuple[str, int]  # (kind, k): ("single", 1), ("top", k), ("selection", 0)


@dataclass
class _CrossFit:
    """Fits an option on some rows and predicts others; caches the (splits, N) cross-fitted
    predicted classes of each (option, tempered)."""

    probs: list[np.ndarray]
    labels: np.ndarray
    groups: np.ndarray
    targets: list[tuple[Any, ...]]
    halves: list[tuple[np.ndarray, np.ndarray]]
    vote: str
    rounds: int
    seed: int
    logs: list[np.ndarray] = field(init=False)
    preds: dict[tuple[Spec, bool], np.ndarray] = field(default_factory=dict)
    temps: dict[tuple[int, int], list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.logs = [log_probs(p) for p in self.probs]

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """Each candidate's own macro F1 on `rows`."""
        own = np.stack([p[rows].argmax(1) for p in self.probs])
        return macro_f1_many(self.labels[rows], own)

    def votes(self, which: Sequence[int], rows: np.ndarray, temps: list[float] | None) -> list:
        if temps is None:
            return [self.probs[i][rows] for i in which]
        return [softmax(self.logs[i][rows] / temps[i]) for i in which]

    def fit(self, spec: Spec, rows: np.ndarray, temps: list[float] | None) -> np.ndarray:
        """The option's weights over all candidates (0: no vote), chosen on `rows` alone."""
        kind, k = spec
        scores = self.scores(rows)
        best = int(np.argmax(scores))
        weights = np.zeros(len(self.probs))
        if kind == "single":
            weights[best] = 1.0
            return weights
        eligible = [i for i, t in enumerate(self.targets) if t == self.targets[best]]
        if kind == "top":
            ranked = sorted(eligible, key=lambda i: -scores[i])  # stable: ties keep order
            weights[ranked[:k]] = 1.0 / len(ranked[:k])
            return weights
        ranked = sorted(eligible, key=lambda i: -scores[i])
        picked = ensemble_selection(
            self.votes(ranked, rows, temps),
            self.labels[rows],
            vote=self.vote,
            rounds=self.rounds,
            bags=SELECTION_BAGS,
            seed=self.seed,
        )
        weights[ranked] = picked
        return weights

    def apply(self, weights: np.ndarray, rows: np.ndarray, temps: list[float] | None) -> np.ndarray:
        on = [int(i) for i in np.flatnonzero(weights)]
        return combine(self.votes(on, rows, temps), weights[on], self.vote).argmax(axis=1)

    def fit_temperatures(self, rows: np.ndarray) -> list[float]:
        return [fit_log_temperature(z[rows], self.labels[rows]) for z in self.logs]

    def predict(self, spec: Spec, tempered: bool) -> np.ndarray:
        """(splits, N): each row predicted by the option fitted on the other half's people."""
        key = (spec, tempered)
        if key not in self.preds:
            out = np.zeros((len(self.halves), len(self.labels)), dtype=np.int64)
            for r, (a, b) in enumerate(self.halves):
                for h, (fit, apply) in enumerate(((a, b), (b, a))):
                    temps = None
                    if tempered:
                        if (r, h) not in self.temps:
                            self.temps[(r, h)] = self.fit_temperatures(fit)
                        temps = self.temps[(r, h)]
                    out[r, apply] = self.apply(self.fit(spec, fit, temps), apply, temps)
            self.preds[key] = out
        return self.preds[key]

    def pooled(self) -> tuple[np.ndarray, np.ndarray]:
        """The labels and people of the pooled repeats (each row once per split)."""
        splits = len(self.halves)
        return np.tile(self.labels, splits), np.tile(self.groups, splits)

    def expected(self, spec: Spec, tempered: bool = False) -> Interval:
        labels, groups = self.pooled()
        return bootstrap_f1(labels, self.predict(spec, tempered).ravel(), groups, seed=self.seed)

    def gain(self, new: tuple[Spec, bool], base: tuple[Spec, bool]) -> Gain:
        labels, groups = self.pooled()
        return bootstrap_gain(
            labels,
            self.predict(*new).ravel(),
            self.predict(*base).ravel(),
            groups,
            seed=self.seed,
        )


def _name(kind: str, k: int) -> str:
    return {"single": "best single", "selection": "ensemble selection"}.get(
        kind, f"top {k} averaged"
    )


def choose_ensemble(
    probs: Sequence[np.ndarray],
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    names: Sequence[str] | None = None,
    targets: Sequence[Mapping[str, Any]] | None = None,
    top: int = 5,
    vote: str = "soft",
    rounds: int = 25,
    splits: int | None = None,
    seed: int = 0,
    margin: float = MARGIN,
) -> Choice:
    """Choose the export among the best single, the k best averaged (k <= `top`) and ensemble
    selection over all candidates, by expected macro F1 on new people (module docstring);
    `top` 1 asks for the best single alone.

    `probs`: each candidate's out-of-fold (N, C) probabilities, best first or in any order;
    `labels`: the true classes; `groups`: the person of each row; `names`: how messages call
    each candidate (e.g. "trial 5"); `targets`: each candidate's values of `TARGET_KEYS`;
    `splits`: the halvings of the people (default_splits of their number when None).
    """
    if splits is None:
        splits = default_splits(len(np.unique(np.asarray(groups))))
    check_vote(vote)
    for key, value, low in (("rounds", rounds, 1), ("splits", splits, 1), ("top", top, 1)):
        if value < low:
            raise ConfigError(f"{key} must be >= {low}, but got {key}={value}.")
    if not 0 <= margin < 0.1:
        raise ConfigError(f"margin must be in [0, 0.1), but got {margin=}.")
    check_members(probs, None)
    n_cands, n_rows = len(probs), len(probs[0])
    labels = np.asarray(labels, dtype=np.int64)
    groups = np.asarray(groups)
    for what, arr in (("labels", labels), ("groups", groups)):
        if len(arr) != n_rows:
            raise ValueError(f"{what} has {len(arr)} rows, but the probabilities have {n_rows}.")
    if len(np.unique(groups)) < 2:
        raise ValueError("need at least 2 people in groups to split them in halves, but got 1.")
    names = list(names) if names is not None else [f"candidate {i}" for i in range(n_cands)]
    for what, seq in (("names", names), ("targets", targets)):
        if seq is not None and len(seq) != n_cands:
            raise ValueError(f"need one of {what} per candidate ({n_cands}), but got {len(seq)}.")
    keys = [_target(t) for t in targets] if targets is not None else [()] * n_cands
    cf = _CrossFit(
        probs=[np.asarray(p, dtype=np.float32) for p in probs],
        labels=labels,
        groups=groups,
        targets=keys,
        halves=_halves(groups, splits, seed),
        vote=vote,
        rounds=rounds,
        seed=seed,
    )
    everyone = np.arange(n_rows)
    best = int(np.argmax(cf.scores(everyone)))
    best_f1 = float(macro_f1(labels, cf.probs[best].argmax(axis=1)))
    eligible = [i for i in range(n_cands) if keys[i] == keys[best]]
    left_out = tuple(i for i in range(n_cands) if keys[i] != keys[best])

    specs: list[Spec] = [("single", 1)]
    if len(eligible) >= 2 and top >= 2:  # top 1: the best single, nothing else
        specs += [("top", k) for k in range(2, min(top, len(eligible)) + 1)]
        specs.append(("selection", 0))
    single = (specs[0], False)
    options = []
    for spec in specs:
        w = cf.fit(spec, everyone, None)
        on = tuple(int(i) for i in np.flatnonzero(w))
        options.append(
            Option(
                name=_name(*spec),
                kind=spec[0],
                k=spec[1],
                members=on,
                weights=tuple(float(w[i]) for i in on),
                expected=cf.expected(spec),
                gain=None if spec == specs[0] else cf.gain((spec, False), single),
                in_sample_f1=float(macro_f1(labels, cf.apply(w, everyone, None))),
            )
        )
    top_value = max(o.expected.value for o in options)
    # the simplest within the margin: fewest members on all the OOF, the single first
    simplest = sorted(range(len(options)), key=lambda i: (len(options[i].members), i))
    chosen = next(i for i in simplest if options[i].expected.value >= top_value - margin)
    pick = options[chosen]
    spec = specs[chosen]

    # temperatures: judged the same way, for an ensemble under a soft vote
    temp_gain: Gain | None = None
    if vote == "hard":
        temp_note = "temperature scaling not measured: a hard vote only counts each argmax."
    elif len(pick.members) < 2:
        temp_note = "temperature scaling not measured: the export is a single model."
    else:
        temp_gain = cf.gain((spec, True), (spec, False))
        kept_t = temp_gain.diff.value > margin
        temp_note = (
            f"per-member temperature scaling {'kept' if kept_t else 'not kept'}: expected gain "
            f"of the tempered {pick.name} {temp_gain}"
            + ("." if kept_t else f" (needs more than +{margin:.3f}).")
        )
    tempered = temp_gain is not None and temp_gain.diff.value > margin
    temps = cf.fit_temperatures(everyone) if tempered else None
    weights = cf.fit(spec, everyone, temps)
    members = tuple(int(i) for i in np.flatnonzero(weights))
    in_f1 = float(macro_f1(labels, cf.apply(weights, everyone, temps)))

    averages = [i for i, o in enumerate(options) if o.kind == "top"]
    teacher: int | None = chosen if len(members) > 1 else None
    if teacher is None and averages:
        teacher = max(averages, key=lambda i: options[i].expected.value)
    teacher_note = (
        "no ensemble to distil: no other candidate shares the best single's training target."
        if teacher is None
        else f"the student learns from the export, {options[teacher].name}."
        if teacher == chosen
        else f"the export is a single model; the student learns from {options[teacher].name} "
        f"(expected {options[teacher].expected.value:.4f}), the best average of the top trials."
    )
    return Choice(
        members=members,
        weights=tuple(float(weights[i]) for i in members),
        kept=len(members) > 1,
        best=best,
        best_f1=best_f1,
        in_sample_f1=in_f1,
        method=pick.kind,
        options=tuple(options),
        chosen=chosen,
        decision=_decision(names, options, chosen, top_value, margin, best, len(eligible)),
        left_out=left_out,
        target_note=_target_note(names, keys, best, left_out, targets is not None),
        temperatures=tuple(float(temps[i]) if temps else 1.0 for i in members),
        temperature_kept=tempered,
        temperature_gain=temp_gain,
        temperature_note=temp_note,
        teacher=teacher,
        teacher_note=teacher_note,
        vote=vote,
        splits=splits,
        margin=margin,
    )


def _target_note(
    names: list[str],
    keys: list[tuple[Any, ...]],
    best: int,
    left_out: tuple[int, ...],
    known: bool,
) -> str:
    if not known:
        return f"training targets ({', '.join(TARGET_KEYS)}) not given: none left out for them."
    mine = _target_str(keys[best])
    if not left_out:
        return f"all {len(keys)} candidates trained with {mine}, as the best single {names[best]}."
    parts = []
    for key in dict.fromkeys(keys[i] for i in left_out):
        who = [names[i] for i in left_out if keys[i] == key]
        parts.append(f"{', '.join(who)} left out: trained with {_target_str(key)}")
    return (
        f"{'; '.join(parts)}; the best single {names[best]} with {mine} (averaging "
        "different training targets moves the class boundary instead of adding variety)."
    )


def _decision(
    names: list[str],
    options: list[Option],
    chosen: int,
    top_value: float,
    margin: float,
    best: int,
    n_eligible: int,
) -> str:
    """One line: what is exported and the out-of-sample numbers that decided it."""
    pick = options[chosen]
    what = (
        f"best single {names[best]}"
        if pick.kind == "single"
        else f"{pick.name} ("
        + ", ".join(f"{names[i]} x{w:.2f}" for i, w in zip(pick.members, pick.weights, strict=True))
        + ")"
    )
    if n_eligible < 2:
        why = (
            "it is the only candidate"
            if len(names) == 1
            else "no other candidate shares its training target"
        )
        return f"{what} exported: {why}."
    leader = max(range(len(options)), key=lambda i: options[i].expected.value)
    line = f"{what} exported: expected macro F1 on new people {pick.expected.value:.4f}"
    if pick.gain is not None:
        line += f", {pick.gain} over the best single"
    if leader == chosen:
        return line + ", the highest of the options."
    return (
        line + f"; {options[leader].name} expects {top_value:.4f}, within {margin:.3f}, "
        "so the simpler export."
    )
