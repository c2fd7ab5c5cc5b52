"""Greedy forward selection with replacement (Caruana et al., 2004).

Start from an empty ensemble and repeatedly add the member (repeats allowed) whose addition
gives the best out-of-fold macro F1 of the combined votes; weights are counts / total. The
first pick is therefore the best single member, and a member is only added when it strictly
improves the score, so the chosen ensemble never scores below the best single member on the
predictions it was chosen on (which is also why that score is optimistic).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from maskopt.data.labels import NUM_CLASSES
from maskopt.ensemble.vote import TIE_BREAK, check_members, check_vote, one_hot
from maskopt.errors import ConfigError
from maskopt.trainer.metrics import macro_f1

Score = Callable[[np.ndarray, np.ndarray], float]
MIN_BAG = 5  # models in a bag of ensemble_selection at the least (or all there are)


@dataclass(frozen=True)
class Selection:
    """The outcome of greedy selection over candidate members (in the order given)."""

    counts: tuple[int, ...]  # times each candidate was picked
    weights: tuple[float, ...]  # counts / total: the voting weight of each candidate
    score: float  # the score of the chosen combination on the selection predictions
    history: tuple[float, ...]  # score after each accepted pick (first = best single)
    order: tuple[int, ...]  # candidate index of each accepted pick
    vote: str

    @property
    def members(self) -> list[int]:
        """Indices of the candidates with a non-zero weight."""
        return [i for i, c in enumerate(self.counts) if c > 0]


def default_score() -> Score:

    return macro_f1


def member_scores(
    probs: Sequence[np.ndarray], labels: np.ndarray, score: Score | None = None
) -> list[float]:
    """Each member's own score (macro F1 of its argmax by default)."""
    score = score or default_score()
    check_members(probs, None)
    return [float(score(labels, np.asarray(p).argmax(axis=1))) for p in probs]


def greedy_select(
    probs: Sequence[np.ndarray],
    labels: np.ndarray,
    *,
    rounds: int = 25,
    vote: str = "soft",
    score: Score | None = None,
    max_members: int | None = None,
) -> Selection:
    """Greedy forward selection with replacement on the score of the combined votes.

    Each round adds the candidate whose extra vote gives the best score; ties go to
    the earlier candidate (pass candidates best first). Stops after `rounds` picks
    or when no candidate strictly improves the score. With `max_members`, once that
    many distinct candidates are in, later picks only re-weight them.
    """
    check_vote(vote)
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, but got {rounds=}.")
    if max_members is not None and max_members < 1:
        raise ConfigError(f"max_members must be >= 1 or None, but got {max_members=}.")
    score = score or default_score()
    check_members(probs, None)
    labels = np.asarray(labels)
    if len(labels) != len(probs[0]):
        raise ValueError(
            f"labels has {len(labels)} rows, but the probabilities have {len(probs[0])}."
        )
    # What each candidate adds to the running sum: its probabilities or its one-hot vote.
    parts = [np.asarray(p, dtype=np.float64) if vote == "soft" else one_hot(p) for p in probs]
    soft_parts = [np.asarray(p, dtype=np.float64) for p in probs]
    counts = np.zeros(len(probs), dtype=np.int64)
    running = np.zeros_like(parts[0])
    running_soft = np.zeros_like(parts[0])
    best = -np.inf
    history: list[float] = []
    order: list[int] = []
    for _ in range(rounds):
        full = max_members is not None and int((counts > 0).sum()) >= max_members
        scores = []
        for i, (part, soft) in enumerate(zip(parts, soft_parts, strict=True)):
            if full and counts[i] == 0:
                scores.append(-np.inf)
                continue
            # argmax of (sum of votes + tiny soft sum) = the tie-broken combination
            combined = running + part
            if vote == "hard":
                combined = combined + TIE_BREAK * (running_soft + soft) / (counts.sum() + 1)
            scores.append(float(score(labels, combined.argmax(axis=1))))
        pick = int(np.argmax(scores))  # first of the equal best
        if scores[pick] <= best:
            break
        best = scores[pick]
        counts[pick] += 1
        running += parts[pick]
        running_soft += soft_parts[pick]
        history.append(best)
        order.append(pick)
    weights = counts / counts.sum()
    return Selection(
        counts=tuple(int(c) for c in counts),
        weights=tuple(float(w) for w in weights),
        score=best,
        history=tuple(history),
        order=tuple(order),
        vote=vote,
    )


def macro_f1_many(y_true: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """Macro F1 of each row of `preds` (C, n) against `y_true` (n,), as `macro_f1` computes it
    (over the classes present in the truth or that row's predictions), in one pass."""
    preds = np.asarray(preds)
    y = np.asarray(y_true)
    k = int(max(NUM_CLASSES, y.max(initial=0) + 1, preds.max(initial=0) + 1))
    c = len(preds)
    index = (np.arange(c)[:, None] * k + y[None, :]) * k + preds
    confusion = np.bincount(index.ravel(), minlength=c * k * k).reshape(c, k, k)
    tp = np.diagonal(confusion, axis1=1, axis2=2)
    denom = confusion.sum(2) + confusion.sum(1)  # 2 tp + fp + fn
    present = denom > 0
    f1 = np.where(present, 2 * tp / np.maximum(denom, 1), 0.0)
    return f1.sum(1) / np.maximum(present.sum(1), 1)


def ensemble_selection(
    probs: Sequence[np.ndarray],
    labels: np.ndarray,
    *,
    vote: str = "soft",
    rounds: int = 25,
    bags: int = 20,
    bag_fraction: float = 0.5,
    init_max: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Ensemble selection with replacement (Caruana et al. 2004) with the 2006 refinements:
    the voting weights (sum 1) over `probs` that score best on `labels`.

    - sorted initialisation: the ensemble starts as the n best models at equal weight, n in
      1..init_max chosen by the score (a start that is already an average overfits less than
      one model grown pick by pick);
    - selection with replacement: then up to `rounds` picks, each adding the model whose extra
      vote scores best (repeats allowed), and the best point on that path is kept;
    - bagging: done on `bags` random subsets of `bag_fraction` of the models (at least
      MIN_BAG) and the weights averaged, so no single lucky path decides (with one bag: all
      the models).
    """
    check_vote(vote)
    check_members(probs, None)
    labels = np.asarray(labels)
    if rounds < 1 or bags < 1 or init_max < 1 or not 0 < bag_fraction <= 1:
        raise ConfigError(
            f"expected rounds, bags, init_max >= 1 and bag_fraction in (0, 1], but got "
            f"{rounds=}, {bags=}, {init_max=}, {bag_fraction=}."
        )
    parts = np.stack(
        [np.asarray(p, np.float32) if vote == "soft" else one_hot(p) for p in probs]
    ).astype(np.float32)
    soft = np.stack([np.asarray(p, np.float32) for p in probs])
    own = macro_f1_many(labels, parts.argmax(2))
    rng = np.random.default_rng(seed)
    n_models = len(probs)
    total = np.zeros(n_models)
    for _ in range(bags):
        if bags == 1 or n_models == 1:
            pool = np.arange(n_models)
        else:
            # at least MIN_BAG models (or all): a bag of a small library that holds only weak
            # models would give them weight the whole library would not
            size = max(min(n_models, MIN_BAG), int(round(bag_fraction * n_models)))
            pool = np.sort(rng.choice(n_models, size=size, replace=False))
        counts = _select_path(parts[pool], soft[pool], own[pool], labels, vote, rounds, init_max)
        total[pool] += counts / counts.sum()
    return total / total.sum()


def _select_path(
    parts: np.ndarray,
    soft: np.ndarray,
    own: np.ndarray,
    labels: np.ndarray,
    vote: str,
    rounds: int,
    init_max: int,
) -> np.ndarray:
    """One bag: the pick counts at the best point of sorted initialisation then selection
    with replacement (see ensemble_selection). parts: (M, N, C) the models' votes."""
    order = np.argsort(-own, kind="stable")
    # sorted initialisation: the n best at equal weight, n by the score
    cum = np.cumsum(parts[order[:init_max]], axis=0)
    cum_soft = np.cumsum(soft[order[:init_max]], axis=0)
    starts = _combined(cum, cum_soft, np.arange(1, len(cum) + 1), vote)
    n = int(np.argmax(macro_f1_many(labels, starts))) + 1
    counts = np.zeros(len(parts))
    counts[order[:n]] = 1
    running, running_soft = cum[n - 1].copy(), cum_soft[n - 1].copy()
    best_score = float(macro_f1_many(labels, starts[n - 1 : n])[0])
    best_counts = counts.copy()
    for _ in range(rounds):
        # every model's extra vote at once: (M, N, C) -> predicted classes (M, N)
        totals = np.full(len(parts), counts.sum() + 1)
        trial = _combined(running[None] + parts, running_soft[None] + soft, totals, vote)
        scores = macro_f1_many(labels, trial)
        pick = int(np.argmax(scores))  # ties: the first (the better model by the order given)
        counts[pick] += 1
        running += parts[pick]
        running_soft += soft[pick]
        if scores[pick] > best_score:
            best_score, best_counts = float(scores[pick]), counts.copy()
    return best_counts


def _combined(votes: np.ndarray, soft: np.ndarray, n: np.ndarray, vote: str) -> np.ndarray:
    """Predicted classes of summed votes (K, N, C) of n[k] models each; a hard vote's ties go
    to the larger soft sum (TIE_BREAK, as vote.hard_vote)."""
    if vote == "hard":
        votes = votes + TIE_BREAK * soft / n[:, None, None]
    return votes.argmax(2)
