"""The out-of-sample choice of the ensemble: members, weights and temperatures, or the best
single.

`choose_ensemble` decides whether an ensemble is worth exporting, out of sample:

- Only candidates trained for the same target as the best single one (`TARGET_KEYS`,
  e.g. `old_age` 58 vs 60) are averaged: a mean of different targets moves a class
  boundary (who counts as old) instead of adding variety.
- Cross-fitting over people: each of `splits` repeats halves the people at random
  (all of a person's rows together); the whole selection (best single, eligible
  candidates, greedy weights, temperatures) is fitted on one half and predicts the
  other, and vice versa. Every row thus gets an ensemble and a best-single prediction
  chosen without seeing that row's person.
- A gain is the macro F1 of one set of cross-fitted predictions minus another's, with
  a paired bootstrap over people (`bootstrap_gain`). The repeats are pooled: each row
  counts once per repeat, F1 is taken on the pooled counts (as a multi-fold score is),
  and a person's rows of all repeats are resampled together. Pooling averages out the
  luck of any one halving, and the bootstrap over people is not made narrower by the
  repeats, since they hold the same people.
- Member by member: at most k distinct members are kept over at most k - 1 (1 = the
  best single) only while the gain is > 0 with P(gain > 0) >= `confidence`; otherwise
  growing stops and, at k = 2, the best single is exported. Two ways of weighting grow
  side by side (`METHODS`): greedy selection (`max_members=k`), and the k best eligible
  candidates at equal weight, which has nothing to fit but the ranking and so overfits
  the OOF less (on the demo-sized bench a plain top-3 average beat the best single on
  every seed). The one whose ensemble gains more out of sample over the best single is
  exported: a choice between two, a small optimism the confidence level absorbs. The
  final members and weights are that method on all the OOF predictions with its cap.
- Per-member temperature scaling (softmax(log p / T), T fitted by NLL on the fitting
  half) is measured the same way, tempered against plain uncapped ensembles, and kept
  only when it passes the same test (soft vote only: a hard vote ignores it).

Selection fitted on half the people is a little weaker than on all of them, so the
reported out-of-sample gain errs on the low side, which is the safe side for this
decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maskopt.ensemble.selection import Score, default_score, greedy_select, member_scores
from maskopt.ensemble.temperature import fit_log_temperature, log_probs, softmax
from maskopt.ensemble.vote import check_members, check_vote, combine
from maskopt.errors import ConfigError
from maskopt.trainer.metrics import Gain, bootstrap_gain

METHODS = ("greedy", "uniform")  # how choose_ensemble weights members (see its docstring)


# Config keys that change what a model is trained to predict (not how well): averaging
# members that disagree on them moves a class boundary instead of adding variety.
TARGET_KEYS = ("old_age",)


@dataclass(frozen=True)
class Step:
    """One member-by-member test: at most `size` distinct members against `size - 1`."""

    size: int
    gain: Gain  # out of sample, cross-fitted and pooled over the repeats
    accepted: bool  # gain > 0 with P(gain > 0) >= confidence

    def as_dict(self) -> dict[str, Any]:
        return {"size": self.size, "accepted": self.accepted, **_gain_dict(self.gain)}


@dataclass(frozen=True)
class Choice:
    """What `choose_ensemble` chose and why, in candidate indices."""

    members: tuple[int, ...]  # candidates with a vote, in candidate order
    weights: tuple[float, ...]  # one per member, sum 1
    kept: bool  # an ensemble of >= 2 members; False: the best single alone
    best: int  # the best single candidate (OOF macro F1)
    best_f1: float  # its OOF macro F1
    in_sample_f1: float  # OOF macro F1 of the members with their weights (optimistic)
    # greedy's gain over the best single on the rows it was chosen on (optimistic), at
    # the size `gain` is about: the kept size, or 2 when the best single is exported
    in_sample_gain: float
    gain: Gain | None  # that size's gain out of sample (None: no second eligible candidate)
    steps: tuple[Step, ...]  # the member-by-member tests of `method`, in order
    method: str  # how the weights were chosen: "greedy", "uniform" (k best, equal) or "single"
    decision: str  # one line for the user
    left_out: tuple[int, ...]  # candidates with another training target than the best
    target_note: str
    temperatures: tuple[float, ...]  # one per member, 1.0 = none; apply_temperature first
    temperature_kept: bool
    temperature_gain: Gain | None  # tempered ensemble over the plain one, out of sample
    temperature_note: str
    vote: str
    splits: int
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-able, for the bundle's manifest."""
        return {
            "members": list(self.members),
            "weights": list(self.weights),
            "kept": self.kept,
            "best": self.best,
            "best_f1": self.best_f1,
            "in_sample_f1": self.in_sample_f1,
            "in_sample_gain": self.in_sample_gain,
            "gain": None if self.gain is None else _gain_dict(self.gain),
            "steps": [s.as_dict() for s in self.steps],
            "method": self.method,
            "decision": self.decision,
            "left_out": list(self.left_out),
            "target_note": self.target_note,
            "temperatures": list(self.temperatures),
            "temperature_kept": self.temperature_kept,
            "temperature_gain": (
                None if self.temperature_gain is None else _gain_dict(self.temperature_gain)
            ),
            "temperature_note": self.temperature_note,
            "vote": self.vote,
            "splits": self.splits,
            "confidence": self.confidence,
        }


def _gain_dict(g: Gain) -> dict[str, Any]:
    return {"diff": g.diff.as_dict(), "p_positive": g.p_positive}


def _target(t: Mapping[str, Any] | None) -> tuple[Any, ...]:
    return tuple((t or {}).get(k) for k in TARGET_KEYS)


def _target_str(key: tuple[Any, ...]) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(TARGET_KEYS, key, strict=True))


@dataclass
class _CrossFit:
    """Selection fitted on one half of the people and applied to the other, cached by
    (size cap, tempered): the (splits, N) out-of-sample predicted classes."""

    probs: list[np.ndarray]
    labels: np.ndarray
    targets: list[tuple[Any, ...]]
    halves: list[tuple[np.ndarray, np.ndarray]]
    vote: str
    rounds: int
    score: Score
    logs: list[np.ndarray] = field(init=False)
    # per (repeat, fitting half): the best single chosen on that half, its temperatures
    bests: dict[tuple[int, int], int] = field(default_factory=dict)
    temps: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    preds: dict[tuple[int | None, bool, str], np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.logs = [log_probs(p) for p in self.probs]

    def votes(
        self, which: Sequence[int], rows: np.ndarray, temps: list[float] | None
    ) -> list[np.ndarray]:
        """Candidates `which`'s probabilities on `rows`, tempered when `temps` are given."""
        if temps is None:
            return [self.probs[i][rows] for i in which]
        return [softmax(self.logs[i][rows] / temps[i]) for i in which]

    def best(self, rows: np.ndarray) -> int:
        """The best single candidate on `rows` (a temperature never changes it)."""
        scores = member_scores([p[rows] for p in self.probs], self.labels[rows], self.score)
        return int(np.argmax(scores))

    def select(
        self,
        rows: np.ndarray,
        best: int,
        cap: int | None,
        temps: list[float] | None,
        method: str = "greedy",
    ) -> tuple[np.ndarray, float]:
        """Weights over all candidates (0 = not in), chosen on `rows` alone among the
        candidates with the target of `best`, and their score there; cap 1 = `best` alone.
        `method` "greedy": greedy selection with at most `cap` distinct members; "uniform":
        the `cap` best of them on `rows` at equal weight."""
        weights = np.zeros(len(self.probs))
        if cap == 1:
            weights[best] = 1.0
            return weights, float(self.score(self.labels[rows], self.probs[best][rows].argmax(1)))
        eligible = [i for i, t in enumerate(self.targets) if t == self.targets[best]]
        if method == "uniform":
            scores = member_scores([self.probs[i][rows] for i in eligible], self.labels[rows])
            order = sorted(
                range(len(eligible)), key=lambda j: -scores[j]
            )  # stable: ties keep order
            top = [eligible[j] for j in order[: cap or len(eligible)]]
            weights[top] = 1.0 / len(top)
            votes = self.votes(top, rows, temps)
            mixed = combine(votes, weights[top], self.vote).argmax(axis=1)
            return weights, float(self.score(self.labels[rows], mixed))
        sel = greedy_select(
            self.votes(eligible, rows, temps),
            self.labels[rows],
            rounds=self.rounds,
            vote=self.vote,
            score=self.score,
            max_members=cap,
        )
        weights[eligible] = sel.weights
        return weights, sel.score

    def fit_temperatures(self, rows: np.ndarray) -> list[float]:
        return [fit_log_temperature(z[rows], self.labels[rows]) for z in self.logs]

    def predict(self, cap: int | None, tempered: bool, method: str = "greedy") -> np.ndarray:
        key = (cap, tempered, method)
        if key not in self.preds:
            out = np.zeros((len(self.halves), len(self.labels)), dtype=np.int64)
            for r, (a, b) in enumerate(self.halves):
                for h, (fit, apply) in enumerate(((a, b), (b, a))):
                    if (r, h) not in self.bests:
                        self.bests[(r, h)] = self.best(fit)
                    if tempered and (r, h) not in self.temps:
                        self.temps[(r, h)] = self.fit_temperatures(fit)
                    temps = self.temps[(r, h)] if tempered else None
                    w, _ = self.select(fit, self.bests[(r, h)], cap, temps, method)
                    on = [int(i) for i in np.flatnonzero(w)]
                    votes = self.votes(on, apply, temps)
                    out[r, apply] = combine(votes, w[on], self.vote).argmax(axis=1)
            self.preds[key] = out
        return self.preds[key]


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


def choose_ensemble(
    probs: Sequence[np.ndarray],
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    names: Sequence[str] | None = None,
    targets: Sequence[Mapping[str, Any]] | None = None,
    vote: str = "soft",
    rounds: int = 25,
    splits: int = 20,
    confidence: float = 0.9,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
) -> Choice:
    """Choose the members, weights and temperatures of the ensemble, or the best single.

    `probs`: each candidate's out-of-fold (N, C) probabilities, any order; `labels`: the
    true classes; `groups`: the person of each row; `names`: how messages call each
    candidate (e.g. "trial 5"); `targets`: each candidate's values of `TARGET_KEYS`.
    The procedure and its reasons are in the section docstring at the top of the module.
    """
    check_vote(vote)
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, but got {rounds=}.")
    if splits < 1:
        raise ConfigError(f"splits must be >= 1, but got {splits=}.")
    if not 0.5 <= confidence < 1:
        raise ConfigError(f"confidence must be in [0.5, 1), but got {confidence=}.")
    if not methods or any(m not in METHODS for m in methods):
        raise ConfigError(f"methods must be some of {', '.join(METHODS)}, but got {methods=}.")
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
    score = default_score()
    cf = _CrossFit(
        probs=[np.asarray(p, dtype=np.float32) for p in probs],
        labels=labels,
        targets=keys,
        halves=_halves(groups, splits, seed),
        vote=vote,
        rounds=rounds,
        score=score,
    )

    def gain(new: tuple[int | None, bool, str], base: tuple[int | None, bool, str]) -> Gain:
        # the repeats pooled: every row once per repeat, a person's rows of every repeat
        # resampled together, F1 from the pooled counts (the project's pooled-OOF habit)
        return bootstrap_gain(
            np.tile(labels, splits),
            cf.predict(*new).ravel(),
            cf.predict(*base).ravel(),
            np.tile(groups, splits),
            seed=seed,
        )

    def passes(g: Gain) -> bool:
        return g.diff.value > 0 and g.p_positive >= confidence

    everyone = np.arange(n_rows)
    best = cf.best(everyone)
    best_f1 = float(score(labels, cf.probs[best].argmax(axis=1)))
    eligible = [i for i in range(n_cands) if keys[i] == keys[best]]
    left_out = tuple(i for i in range(n_cands) if keys[i] != keys[best])
    target_note = _target_note(names, keys, best, left_out, targets is not None)

    # Temperature first, on the uncapped ensemble: it changes what the votes are, and
    # the member-by-member tests then run on the votes that will be exported.
    temp_gain: Gain | None = None
    if vote == "hard":
        temp_note = "temperature scaling not measured: a hard vote only counts each argmax."
    elif len(eligible) < 2:
        temp_note = "temperature scaling not measured: no ensemble to scale."
    else:
        temp_gain = gain((None, True, "greedy"), (None, False, "greedy"))
        temp_note = (
            f"per-member temperature scaling {'kept' if passes(temp_gain) else 'not kept'}: "
            f"out-of-sample gain of the tempered ensemble {temp_gain}, "
            f"P(gain > 0) = {temp_gain.p_positive:.2f}."
        )
    tempered = temp_gain is not None and passes(temp_gain)

    # Member by member, for each way of weighting: greedy weights, or the k best at
    # equal weight (which overfits the OOF less); the one that gains more out of sample.
    grown: dict[str, tuple[int, list[Step], Gain | None]] = {}
    for method in methods:
        steps: list[Step] = []
        size = 1
        while size < len(eligible):
            g = gain((size + 1, tempered, method), (size, tempered, method))
            steps.append(Step(size + 1, g, passes(g)))
            if not steps[-1].accepted:
                break
            size += 1
        total = gain((size, tempered, method), (1, tempered, method)) if size > 2 else None
        grown[method] = (size, steps, total or (steps[0].gain if steps else None))

    def rank(m: str) -> tuple[bool, float]:  # an ensemble before none, then the larger gain
        size, _, g = grown[m]
        return size > 1, g.diff.value if g is not None else 0.0

    method = max(methods, key=rank)
    size, steps, out_gain = grown[method]

    temps = cf.fit_temperatures(everyone) if tempered else None
    weights, in_f1 = cf.select(everyone, best, size, temps, method)
    members = tuple(int(i) for i in np.flatnonzero(weights))
    kept = len(members) > 1
    tested = max(size, 2)
    full_f1 = in_f1 if size == tested else cf.select(everyone, best, tested, temps, method)[1]
    in_gain = full_f1 - best_f1 if len(eligible) > 1 else 0.0
    alone = ""
    if len(eligible) < 2:
        alone = (
            "it is the only candidate"
            if n_cands == 1
            else "no other candidate shares its training target"
        )
    decision = _decision(
        names=names,
        method=method,
        best=best,
        best_f1=best_f1,
        weights=weights,
        gain=out_gain,
        in_gain=in_gain,
        steps=steps,
        alone=alone,
        confidence=confidence,
    )
    if tempered and not kept:
        temp_note += " Unused: the best single alone is exported."
    return Choice(
        members=members,
        weights=tuple(float(weights[i]) for i in members),
        kept=kept,
        best=best,
        best_f1=best_f1,
        in_sample_f1=float(in_f1),
        in_sample_gain=float(in_gain),
        gain=out_gain,
        steps=tuple(steps),
        method=method if kept else "single",
        decision=decision,
        left_out=left_out,
        target_note=target_note,
        temperatures=tuple(float(temps[i]) if temps and kept else 1.0 for i in members),
        temperature_kept=tempered and kept,
        temperature_gain=temp_gain,
        temperature_note=temp_note,
        vote=vote,
        splits=splits,
        confidence=confidence,
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
    *,
    names: list[str],
    method: str,
    best: int,
    best_f1: float,
    weights: np.ndarray,
    gain: Gain | None,
    in_gain: float,
    steps: list[Step],
    alone: str,
    confidence: float,
) -> str:
    """One line: what is exported and the out-of-sample number that decided it."""
    single = f"best single {names[best]} exported (OOF macro F1 {best_f1:.4f})"
    if alone:
        return f"{single}: {alone}."
    assert gain is not None and steps
    members = np.flatnonzero(weights)
    if len(members) < 2 and steps[0].accepted:  # the cross-fit said yes, all the OOF: no
        return (
            f"{single}: a second member gains {gain} out of sample, P(gain > 0) = "
            f"{gain.p_positive:.3f}, but on all the OOF predictions greedy selection adds none."
        )
    if len(members) < 2:
        return (
            f"{single}: adding a second member gains {gain} out of sample, "
            f"P(gain > 0) = {gain.p_positive:.3f} (needs > 0 with P >= {confidence:.2f}; "
            f"in sample it looked like {in_gain:+.4f})."
        )
    picks = ", ".join(f"{names[i]} x{weights[i]:.2f}" for i in members)
    how = "greedy weights" if method == "greedy" else f"the {len(members)} best at equal weight"
    stop = steps[-1]
    more = (
        f"; member {stop.size} would add {stop.gain}, P = {stop.gain.p_positive:.2f}"
        if not stop.accepted
        else "; every eligible candidate helps"
    )
    return (
        f"ensemble of {len(members)} kept ({picks}; {how}): out-of-sample gain over the best single "
        f"{names[best]} {gain}, P(gain > 0) = {gain.p_positive:.2f} "
        f"(in sample {in_gain:+.4f}){more}."
    )
