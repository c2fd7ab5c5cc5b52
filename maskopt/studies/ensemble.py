"""Combining members' class probabilities: soft voting, hard voting, greedy selection.

Pure functions on numpy arrays, so they are cheap to test exhaustively. A "member"
is one trial's (N, 18) probabilities over the same images in the same order.

Greedy forward selection with replacement (Caruana et al., 2004): start from an empty
ensemble and repeatedly add the member (repeats allowed) whose addition gives the best
out-of-fold macro F1 of the combined votes; weights are counts / total. The first pick
is therefore the best single member, and a member is only added when it strictly
improves the score, so the chosen ensemble never scores below the best single member
on the predictions it was chosen on (which is also why that score is optimistic).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from maskopt.errors import ConfigError

VOTES = ("soft", "hard")
# Hard votes tie often (two members, two classes); the soft average breaks the tie,
# scaled so it can never outvote a single whole vote: with weights counts / T, vote shares
# differ by at least 1/T and the tie-break by less than _TIE_BREAK (soft averages lie in
# [0, 1]), so any T <= 1000 votes is safe (greedy selection makes at most `rounds`). Large
# enough to survive float32 (bundle predictions, model.onnx): near a tied share <= 0.5 the
# float32 step is 6e-8, so ties whose soft averages differ by more than 6e-5 keep their winner.
_TIE_BREAK = 1e-3

Score = Callable[[np.ndarray, np.ndarray], float]
Weights = Sequence[float] | np.ndarray | None


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


def _check(probs: Sequence[np.ndarray], weights: Weights) -> np.ndarray:
    if len(probs) == 0:
        raise ValueError("need at least one member's probabilities, but got none.")
    shape = np.shape(probs[0])
    if len(shape) != 2:
        raise ValueError(f"probabilities must be (N, classes), but got shape {shape}.")
    for i, p in enumerate(probs):
        if np.shape(p) != shape:
            raise ValueError(f"member {i} has shape {np.shape(p)}, but member 0 has {shape}.")
    w = np.ones(len(probs)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(probs),):
        raise ValueError(f"need one weight per member ({len(probs)}), but got {w.shape}.")
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all 0, but got {w.tolist()}.")
    return w / w.sum()


def check_vote(vote: str) -> str:
    if vote not in VOTES:
        raise ConfigError(f"vote must be one of {', '.join(VOTES)}, but got {vote=}.")
    return vote


def soft_vote(probs: Sequence[np.ndarray], weights: Weights = None) -> np.ndarray:
    """Weighted mean of the members' probabilities, (N, C) float32."""
    w = _check(probs, weights)
    out = np.zeros(np.shape(probs[0]), dtype=np.float64)
    for wi, p in zip(w, probs, strict=True):
        if wi > 0:
            out += wi * np.asarray(p, dtype=np.float64)
    return out.astype(np.float32)


def _one_hot(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p)
    out = np.zeros(p.shape, dtype=np.float64)
    out[np.arange(len(p)), p.argmax(axis=1)] = 1.0
    return out


def hard_vote(probs: Sequence[np.ndarray], weights: Weights = None) -> np.ndarray:
    """Weighted share of the members' votes (each votes for its argmax), (N, C) float64.

    Rows sum to 1. Ties between classes with equal vote share go to the class with
    the higher soft-voted probability (see _TIE_BREAK for why that survives float32).
    """
    w = _check(probs, weights)
    shares = np.zeros(np.shape(probs[0]), dtype=np.float64)
    for wi, p in zip(w, probs, strict=True):
        if wi > 0:
            shares += wi * _one_hot(p)
    soft = soft_vote(probs, w).astype(np.float64)
    return (shares + _TIE_BREAK * soft) / (1.0 + _TIE_BREAK)


def combine(probs: Sequence[np.ndarray], weights: Weights = None, vote: str = "soft") -> np.ndarray:
    """Soft or hard vote, by name."""
    return soft_vote(probs, weights) if check_vote(vote) == "soft" else hard_vote(probs, weights)


def _default_score() -> Score:
    from maskopt.trainer.metrics import macro_f1

    return macro_f1


def member_scores(
    probs: Sequence[np.ndarray], labels: np.ndarray, score: Score | None = None
) -> list[float]:
    """Each member's own score (macro F1 of its argmax by default)."""
    score = score or _default_score()
    _check(probs, None)
    return [float(score(labels, np.asarray(p).argmax(axis=1))) for p in probs]


def greedy_select(
    probs: Sequence[np.ndarray],
    labels: np.ndarray,
    *,
    rounds: int = 25,
    vote: str = "soft",
    score: Score | None = None,
) -> Selection:
    """Greedy forward selection with replacement on the score of the combined votes.

    Each round adds the candidate whose extra vote gives the best score; ties go to
    the earlier candidate (pass candidates best first). Stops after `rounds` picks
    or when no candidate strictly improves the score.
    """
    check_vote(vote)
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, but got {rounds=}.")
    score = score or _default_score()
    _check(probs, None)
    labels = np.asarray(labels)
    if len(labels) != len(probs[0]):
        raise ValueError(
            f"labels has {len(labels)} rows, but the probabilities have {len(probs[0])}."
        )
    # What each candidate adds to the running sum: its probabilities or its one-hot vote.
    parts = [np.asarray(p, dtype=np.float64) if vote == "soft" else _one_hot(p) for p in probs]
    soft_parts = [np.asarray(p, dtype=np.float64) for p in probs]
    counts = np.zeros(len(probs), dtype=np.int64)
    running = np.zeros_like(parts[0])
    running_soft = np.zeros_like(parts[0])
    best = -np.inf
    history: list[float] = []
    order: list[int] = []
    for _ in range(rounds):
        scores = []
        for part, soft in zip(parts, soft_parts, strict=True):
            # argmax of (sum of votes + tiny soft sum) = the tie-broken combination
            combined = running + part
            if vote == "hard":
                combined = combined + _TIE_BREAK * (running_soft + soft) / (counts.sum() + 1)
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
