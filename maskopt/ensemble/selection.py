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

from maskopt.ensemble.vote import TIE_BREAK, check_members, check_vote, one_hot
from maskopt.errors import ConfigError
from maskopt.trainer.metrics import macro_f1

Score = Callable[[np.ndarray, np.ndarray], float]


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
