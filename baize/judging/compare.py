"""The comparison of two answer sets, written once: eval's report (model vs reference) and the SDF gate (the new
round's model vs its parent) both ask and count through here, so a new statistic is added once and shows in both.

Asking: `judge_pair` shows both answers side by side, B first and (with both orders) A first, each verdict keyed
by the question, the answers in the order shown and the rubric; `score_each` grades each answer on its own (a
pointwise rubric). Counting: `Compared` is one item's verdicts and both answers' lengths in words;
`comparison_figures` turns a list of them into the outcomes (A wins only when both orders agree; pointwise: the
higher score), the adjusted win rate with its bootstrap interval, and the judge's own figures (baize.judging.stats):
the flip rate between the orders, how often the first-shown and the longer answer win, kappa between the orders,
and the length-controlled win rate with its interval (None, "not identified", where length explains every
verdict)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from baize.judging.client import JudgeClient, Verdict, verdict_key
from baize.judging.rubrics import Rubric
from baize.judging.stats import (
    a_vs_b,
    adjusted_win_rate,
    bootstrap_interval,
    cohen_kappa,
    first_position_win_rate,
    flip_rate,
    length_controlled_interval,
    length_controlled_win_rate,
    length_separates,
    longer_answer_win_rate,
    pair_outcome,
    score_outcome,
)
from baize.llm.prices import RoleUsage


async def judge_pair(
    client: JudgeClient, rubric: Rubric, context: str, a: str, b: str, *, question: str, both_orders: bool = True,
    usage: RoleUsage | None = None,
) -> tuple[Verdict, Verdict | None]:  # fmt: skip
    """(B shown first, A shown first) side by side; A first only with `both_orders`. `question` keys the verdicts
    (with the answers in the order shown, the judge's settings and the rubric); `usage` is charged too."""
    keys = tuple(verdict_key(question, shown, client.args, rubric.template) for shown in ([b, a], [a, b]))
    if not both_orders:
        return await client.verdict(rubric, context, b, a, key=keys[0], usage=usage), None
    b_first, a_first = await client.both_orders(rubric, context, b, a, keys, usage=usage)
    return b_first, a_first


async def score_each(
    client: JudgeClient, rubric: Rubric, context: str, answers: Sequence[str], *, reference: str | None = None,
    key_reference: bool = False, usage: RoleUsage | None = None,
) -> list[Verdict]:  # fmt: skip
    """Each answer graded on its own (with the reference answer where the rubric shows one), asked together. A
    verdict is keyed by the context and the answer, plus the reference (empty when none) with `key_reference`
    (eval's single grading)."""
    tail = [reference or ""] if key_reference else []
    return await client.endpoint.together(*(
        client.verdict(rubric, context, text, reference=reference, usage=usage,
                       key=verdict_key(context, [text, *tail], client.args, rubric.template))
        for text in answers
    ))  # fmt: skip


@dataclass
class Compared:
    """One item of a comparison: pairwise, the verdicts' values with B shown first and (`both_orders`) with A shown
    first, a value being the scores in the order shown; pointwise, each answer's own score. Words: each answer's
    length."""

    b_first: Sequence[float] | None = None
    a_first: Sequence[float] | None = None
    both_orders: bool = True
    pointwise: bool = False
    a_score: float | None = None
    b_score: float | None = None
    a_words: int | None = None
    b_words: int | None = None

    @property
    def outcome(self) -> str | None:
        """A's result: pairwise a win or a loss only when both orders agree; pointwise the higher score."""
        if self.pointwise:
            return score_outcome(self.a_score, self.b_score)
        return pair_outcome(self.a_first, self.b_first)

    @property
    def decisions(self) -> list[str | None]:
        """A's outcome in each order pairwise (None for an order not asked or not parsed), the one comparison of
        scores pointwise."""
        return [self.outcome] if self.pointwise else list(a_vs_b(self.a_first, self.b_first))

    @property
    def shown(self) -> list:
        """The pair verdicts as shown (for the first-position rate)."""
        if self.pointwise:
            return []
        return [self.b_first, self.a_first] if self.both_orders else [self.b_first]


# The judge's own figures as reports show them: (key in comparison_figures, what it is, an unbiased judge's value).
# eval's results.md lists them in this order; a figure added here and in comparison_figures shows in eval's report
# and in the SDF gate's record (rounds.json) alike.
JUDGE_FIGURES = [
    ("flip_rate", "flip rate (the two orders disagree)", "0"),
    ("first_position_win_rate", "first-shown answer wins (decided verdicts)", "0.5"),
    ("longer_answer_win_rate", "longer answer wins (decided verdicts)", "what the answers deserve"),
    ("kappa_between_orders", "kappa between the orders", "1"),
]


def _rounded(value, digits: int = 3):
    return round(value, digits) if value is not None else None


def comparison_figures(items: list[Compared], *, resamples: int, confidence: float = 0.95, seed: int = 0) -> dict:
    """The outcomes and every figure of a comparison (see the module's text); None where a figure has no data."""
    outcomes = [o for o in (item.outcome for item in items) if o is not None]
    interval = bootstrap_interval(outcomes, adjusted_win_rate, resamples=resamples, confidence=confidence, seed=seed)
    pairs = [tuple(item.decisions) for item in items if not item.pointwise and item.both_orders]
    both = [(x, y) for x, y in pairs if x is not None and y is not None]
    decisions, lc_outcomes, differences = [], [], []
    for item in items:
        if item.a_words is None or item.b_words is None:
            continue
        decisions += [(outcome, item.a_words, item.b_words) for outcome in item.decisions if outcome is not None]
        if item.outcome is not None:
            lc_outcomes.append(item.outcome)
            differences.append(item.a_words - item.b_words)
    lc = length_controlled_win_rate(lc_outcomes, differences)
    lc_ci = (
        length_controlled_interval(lc_outcomes, differences, resamples=min(resamples, 1000), confidence=confidence,
                                   seed=seed)  # each resample is a fit
        if lc is not None else None
    )  # fmt: skip
    return {
        "win": outcomes.count("win"),
        "tie": outcomes.count("tie"),
        "loss": outcomes.count("loss"),
        "adjusted_win_rate": _rounded(adjusted_win_rate(outcomes)) if outcomes else None,
        "adjusted_win_rate_ci": [round(v, 3) for v in interval] if interval else None,
        "flip_rate": _rounded(flip_rate(pairs)),
        "first_position_win_rate": _rounded(first_position_win_rate([v for i in items for v in i.shown])),
        "longer_answer_win_rate": _rounded(longer_answer_win_rate(decisions)),
        "kappa_between_orders": _rounded(cohen_kappa([x for x, _ in both], [y for _, y in both])),
        "lc_win_rate": _rounded(lc),
        "lc_win_rate_ci": [round(v, 3) for v in lc_ci] if lc_ci else None,
        "lc_not_identified": length_separates(lc_outcomes, differences),
    }
