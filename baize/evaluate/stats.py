"""The report's statistics: the paper's relative score, win/tie/loss from both orders, the adjusted win rate and
bootstrap intervals, per category and overall."""

from __future__ import annotations

import statistics

from baize.evaluate.config import EvalConfig
from baize.judging.compare import Compared, comparison_figures
from baize.judging.stats import bootstrap_interval


def relative_score(pairs: list[tuple[float, float]]) -> float:
    """The paper's metric: the model's total score as a % of the reference's; pairs are (model, reference)."""
    reference_total = sum(r for _, r in pairs)
    return 100.0 * sum(m for m, _ in pairs) / reference_total if reference_total else float("nan")


def _mean(values: list[float]) -> float | None:
    return round(statistics.mean(values), 1) if values else None


def summarize(config: EvalConfig, judged: list[dict], lengths: dict[str, dict[str, int]]) -> dict:
    """One block of numbers for a set of judged questions (a category, or all of them): the paper's relative score,
    the comparison's figures (baize.judging.compare: outcomes, adjusted win rate, the judge's own figures) and,
    with single grading, the grades."""
    paper, both_orders, compared = [], [], []
    for row in judged:
        first = row["reference_first"]["value"]
        second = (row.get("model_first") or {}).get("value")
        if first is not None:
            paper.append((first[1], first[0]))
            if second is not None:
                both_orders.append((first[1] + second[0], first[0] + second[1]))
        key = (row["question_id"], row.get("turn", 1))
        compared.append(Compared(first, second, both_orders=bool(row.get("model_first")),
                                 a_words=lengths["model"].get(key), b_words=lengths["reference"].get(key)))  # fmt: skip
    interval = {"resamples": config.bootstrap_samples, "confidence": config.confidence, "seed": config.seed}
    figures = comparison_figures(compared, **interval)
    ci_paper = bootstrap_interval(paper, relative_score, **interval)
    ids = [(row["question_id"], row.get("turn", 1)) for row in judged]
    return {
        "questions": len(judged),
        "score_pct": round(relative_score(paper), 1) if paper else None,
        "score_pct_ci": [round(v, 1) for v in ci_paper] if ci_paper else None,
        "score_pct_both_orders": round(relative_score(both_orders), 1) if both_orders else None,
        "model_mean_score": _mean([m for m, _ in paper]),
        "reference_mean_score": _mean([r for _, r in paper]),
        "scored": len(paper),
        **{name: figures.pop(name) for name in ("win", "tie", "loss")},
        # a verdict that did not parse (with `pairwise: false` there is no second verdict to miss)
        "unjudged": sum(
            row["reference_first"]["value"] is None or (row.get("model_first") or {"value": 0})["value"] is None
            for row in judged
        ),
        **{name: figures.pop(name) for name in ("adjusted_win_rate", "adjusted_win_rate_ci")},
        "model_words": _mean([lengths["model"][i] for i in ids if i in lengths["model"]]),
        "reference_words": _mean([lengths["reference"][i] for i in ids if i in lengths["reference"]]),
        **single_grades(judged, interval),
        **figures,
    }


def single_grades(judged: list[dict], interval: dict) -> dict:
    """Single grading's figures: each side's mean grade with its interval, and the grades as a comparison
    (MT-Bench's way of setting single grading beside pairwise verdicts: the model wins a question where its own
    grade is higher; no order to be biased by)."""
    graded = [row["single"] for row in judged if row.get("single")]
    if not graded:
        return {}
    single = {}
    for role in ("model", "reference"):
        scores = [g[role]["value"] for g in graded if g[role]["value"] is not None]
        ci = bootstrap_interval(scores, statistics.mean, **interval)
        single[f"{role}_single_score"] = _mean(scores)
        single[f"{role}_single_score_ci"] = [round(v, 2) for v in ci] if ci else None
    single["single_unparsed"] = sum(g[role]["value"] is None for g in graded for role in ("model", "reference"))
    by_grade = [Compared(pointwise=True, a_score=g["model"]["value"], b_score=g["reference"]["value"]) for g in graded]
    figures = comparison_figures(by_grade, **interval)
    single.update({f"single_{name}": figures[name] for name in ("win", "tie", "loss", "adjusted_win_rate",
                                                                 "adjusted_win_rate_ci")})  # fmt: skip
    single["reference_guided"] = sum(bool(row.get("reference_guided")) for row in judged)
    return single
