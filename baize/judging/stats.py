"""Statistics of a judge's verdicts, the same for eval, SDF and judge calibration: bootstrap intervals, Cohen's
kappa, the position-flip rate between the two orders of a pair, how often the first-shown or the longer answer
wins, and the length-controlled win rate (AlpacaEval 2.0's idea: a logistic model of the outcome with the length
difference as a covariate, read at zero length difference; Dubois et al. 2024, arXiv 2404.04475).

A pair verdict is the judge's scores (first shown, second shown). `preference(scores)` says which side won:
"first", "second" or "tie". For a pair asked in both orders, `a_vs_b` maps both verdicts onto the same two
answers A and B.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

import numpy as np

OUTCOME_POINTS = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def bootstrap_interval(
    samples: list, statistic, *, resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of `statistic(resample)` over resamples (with replacement) of `samples`. A
    statistic that is not identified on a resample (None) leaves that resample out; when that is most of them, there
    is no interval (None)."""
    if not samples:
        return None
    rng = random.Random(seed)
    drawn = (statistic(rng.choices(samples, k=len(samples))) for _ in range(resamples))
    values = sorted(value for value in drawn if value is not None)
    if len(values) < resamples / 2:
        return None
    tail = (1 - confidence) / 2
    low = values[int(tail * (len(values) - 1))]
    high = values[int(round((1 - tail) * (len(values) - 1)))]
    return low, high


def preference(scores: Sequence[float] | None) -> str | None:
    """Which shown answer a pair verdict prefers: "first", "second", "tie"; None when it did not parse."""
    if scores is None:
        return None
    first, second = scores
    return "first" if first > second else "second" if second > first else "tie"


def a_vs_b(ab: Sequence[float] | None, ba: Sequence[float] | None) -> tuple[str | None, str | None]:
    """The two orders of a pair as outcomes for A (shown first in `ab`, second in `ba`): "win", "loss", "tie"."""
    to_a = {"first": "win", "second": "loss", "tie": "tie", None: None}
    swapped = {"first": "loss", "second": "win", "tie": "tie", None: None}
    return to_a[preference(ab)], swapped[preference(ba)]


def pair_outcome(ab: Sequence[float] | None, ba: Sequence[float] | None) -> str | None:
    """A's result from both orders (A shown first in `ab`, second in `ba`): a win or a loss only when both orders
    agree; a disagreement (position bias) or an equal score is a tie; None when a verdict is missing."""
    first, second = a_vs_b(ab, ba)
    if first is None or second is None:
        return None
    return first if first == second and first != "tie" else "tie"


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    """Cohen's kappa between two raters' labels of the same items: (observed - chance) / (1 - chance)."""
    if not first or len(first) != len(second):
        return None
    n = len(first)
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    counts_1, counts_2 = Counter(first), Counter(second)
    chance = sum(counts_1[label] * counts_2[label] for label in set(first) | set(second)) / (n * n)
    if chance == 1:
        return 1.0 if observed == 1 else None
    return (observed - chance) / (1 - chance)


def adjusted_win_rate(outcomes: Sequence[str]) -> float:
    """(wins + ties / 2) / outcomes: a tie is half a win."""
    return sum(OUTCOME_POINTS[o] for o in outcomes) / len(outcomes)


def score_outcome(a: float | None, b: float | None) -> str | None:
    """A's result from the two answers' own scores (single-answer grading): the higher score wins, equal scores
    tie; None when one is missing."""
    if a is None or b is None:
        return None
    return "win" if a > b else "loss" if a < b else "tie"


def flip_rate(pairs: Sequence[tuple[str | None, str | None]]) -> float | None:
    """Share of pairs whose two orders disagree about A vs B (a win turning into a tie or a loss when the answers
    swap places), over the pairs with both verdicts."""
    both = [(x, y) for x, y in pairs if x is not None and y is not None]
    return sum(x != y for x, y in both) / len(both) if both else None


def first_position_win_rate(verdicts: Sequence[Sequence[float] | None]) -> float | None:
    """Share of decided pair verdicts (not ties) that prefer the answer shown first: 0.5 for a judge without
    position bias, 1.0 for one that always prefers position 1."""
    decided = [p for p in map(preference, verdicts) if p in ("first", "second")]
    return decided.count("first") / len(decided) if decided else None


def longer_answer_win_rate(decisions: Sequence[tuple[str, int, int]]) -> float | None:
    """Share of decided comparisons that the longer answer won. `decisions`: (outcome for A, length of A, length
    of B) with outcome "win"/"loss" (ties and equal lengths are left out)."""
    counted = [(outcome == "win") == (a > b) for outcome, a, b in decisions if outcome != "tie" and a != b]
    return sum(counted) / len(counted) if counted else None


def length_separates(outcomes: Sequence[str], length_differences: Sequence[float]) -> bool:
    """Length explains every verdict: a length difference splits them, every win (and tie) on one side of it or on
    it, every loss (and tie) on the other side or on it, not all on it. A logistic fit of the outcome on length has
    no finite maximum then (complete or quasi-complete separation): any win rate at equal length fits as well."""
    pairs = list(zip(outcomes, length_differences, strict=True))
    ones = [d for o, d in pairs if o in ("win", "tie")]  # a tie counts half a win and half a loss
    zeros = [d for o, d in pairs if o in ("loss", "tie")]
    if not ones or not zeros or len({d for _, d in pairs}) < 2:
        return False
    return min(ones) >= max(zeros) or max(ones) <= min(zeros)


def length_controlled_win_rate(outcomes: Sequence[str], length_differences: Sequence[float]) -> float | None:
    """The win rate the model would have at equal answer lengths: a logistic regression of the outcome (win 1,
    loss 0, a tie half of each) on the length difference (model - reference, scaled by its standard deviation,
    through tanh as AlpacaEval does), fitted by maximum likelihood (scipy), read at a difference of zero. None where
    it is not identified: fewer than two verdicts, or length separates the wins from the losses completely."""
    if len(outcomes) < 2 or length_separates(outcomes, length_differences):
        return None
    from scipy.optimize import minimize

    y = np.array([OUTCOME_POINTS[o] for o in outcomes])
    x = np.array(length_differences, dtype=float)
    scale = x.std() or 1.0
    x = np.tanh(x / scale)

    def negative_log_likelihood(beta: np.ndarray) -> float:
        z = beta[0] + beta[1] * x
        # y log sigma(z) + (1 - y) log sigma(-z), with log sigma(z) = -log(1 + e^-z), computed stably
        return float(np.sum(y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z)))

    # a light ridge on the length weight, as AlpacaEval's C = 100: the same fit where length does not separate
    fit = minimize(lambda b: negative_log_likelihood(b) + 0.01 * b[1] ** 2, np.zeros(2), method="BFGS")
    return 1.0 / (1.0 + math.exp(-fit.x[0]))


def length_controlled_interval(outcomes, length_differences, *, resamples: int, confidence: float, seed: int):
    """Bootstrap interval of the length-controlled win rate over the compared items (resamples where it is not
    identified are left out; None when that is most of them)."""
    items = list(zip(outcomes, length_differences, strict=True))

    def statistic(sample):
        return length_controlled_win_rate([o for o, _ in sample], [d for _, d in sample])

    return bootstrap_interval(items, statistic, resamples=resamples, confidence=confidence, seed=seed)
