"""The report's statistics: the paper's relative score, win/tie/loss from both orders, the adjusted win rate and
bootstrap intervals, per category and overall."""

from __future__ import annotations

import random
import statistics

from baize.evaluate.config import EvalConfig


def bootstrap_interval(
    samples: list, statistic, *, resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of `statistic(resample)` over resamples (with replacement) of `samples`."""
    if not samples:
        return None
    rng = random.Random(seed)
    values = sorted(statistic(rng.choices(samples, k=len(samples))) for _ in range(resamples))
    tail = (1 - confidence) / 2
    low = values[int(tail * (resamples - 1))]
    high = values[int(round((1 - tail) * (resamples - 1)))]
    return low, high


def adjusted_win_rate(outcomes: list[str]) -> float:
    points = {"win": 1.0, "tie": 0.5, "loss": 0.0}
    return sum(points[o] for o in outcomes) / len(outcomes)


def relative_score(pairs: list[tuple[float, float]]) -> float:
    """The paper's metric: the model's total score as a % of the reference's; pairs are (model, reference)."""
    reference_total = sum(r for _, r in pairs)
    return 100.0 * sum(m for m, _ in pairs) / reference_total if reference_total else float("nan")


def _mean(values: list[float]) -> float | None:
    return round(statistics.mean(values), 1) if values else None


def summarize(config: EvalConfig, judged: list[dict], lengths: dict[str, dict[str, int]]) -> dict:
    """One block of numbers for a set of judged questions (a category, or all of them)."""
    paper, both_orders, outcomes = [], [], []
    for row in judged:
        first = row["reference_first"]["value"]
        if first is not None:
            paper.append((first[1], first[0]))
            second = (row.get("model_first") or {}).get("value")
            if second is not None:
                both_orders.append((first[1] + second[0], first[0] + second[1]))
        if row["outcome"] is not None:
            outcomes.append(row["outcome"])
    interval = {"resamples": config.bootstrap_samples, "confidence": config.confidence, "seed": config.seed}
    ci_paper = bootstrap_interval(paper, relative_score, **interval)
    ci_win = bootstrap_interval(outcomes, adjusted_win_rate, **interval)
    ids = [(row["question_id"], row.get("turn", 1)) for row in judged]
    single = {}
    graded = [row["single"] for row in judged if row.get("single")]
    if graded:
        for role in ("model", "reference"):
            scores = [g[role]["value"] for g in graded if g[role]["value"] is not None]
            ci = bootstrap_interval(scores, statistics.mean, **interval)
            single[f"{role}_single_score"] = _mean(scores)
            single[f"{role}_single_score_ci"] = [round(v, 2) for v in ci] if ci else None
        single["single_unparsed"] = sum(g[role]["value"] is None for g in graded for role in ("model", "reference"))
        single["reference_guided"] = sum(bool(row.get("reference_guided")) for row in judged)
    return {
        "questions": len(judged),
        "score_pct": round(relative_score(paper), 1) if paper else None,
        "score_pct_ci": [round(v, 1) for v in ci_paper] if ci_paper else None,
        "score_pct_both_orders": round(relative_score(both_orders), 1) if both_orders else None,
        "model_mean_score": _mean([m for m, _ in paper]),
        "reference_mean_score": _mean([r for _, r in paper]),
        "scored": len(paper),
        "win": outcomes.count("win"),
        "tie": outcomes.count("tie"),
        "loss": outcomes.count("loss"),
        # a verdict that did not parse (with `pairwise: false` there is no second verdict to miss)
        "unjudged": sum(
            row["reference_first"]["value"] is None or (row.get("model_first") or {"value": 0})["value"] is None
            for row in judged
        ),
        "adjusted_win_rate": round(adjusted_win_rate(outcomes), 3) if outcomes else None,
        "adjusted_win_rate_ci": [round(v, 3) for v in ci_win] if ci_win else None,
        "model_words": _mean([lengths["model"][i] for i in ids if i in lengths["model"]]),
        "reference_words": _mean([lengths["reference"][i] for i in ids if i in lengths["reference"]]),
        **single,
    }
