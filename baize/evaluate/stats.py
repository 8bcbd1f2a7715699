"""The report's statistics: the paper's relative score, win/tie/loss from both orders, the adjusted win rate and
bootstrap intervals, per category and overall."""

from __future__ import annotations

import statistics

from baize.evaluate.config import EvalConfig
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
    score_outcome,
)


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
        # the grades as a comparison (MT-Bench's way of setting single grading beside pairwise verdicts): the model
        # wins a question where its own grade is higher; no order to be biased by
        by_grade = [o for o in (score_outcome(g["model"]["value"], g["reference"]["value"]) for g in graded) if o]
        ci_grade = bootstrap_interval(by_grade, adjusted_win_rate, **interval)
        single.update(
            single_win=by_grade.count("win"),
            single_tie=by_grade.count("tie"),
            single_loss=by_grade.count("loss"),
            single_adjusted_win_rate=round(adjusted_win_rate(by_grade), 3) if by_grade else None,
            single_adjusted_win_rate_ci=[round(v, 3) for v in ci_grade] if ci_grade else None,
        )
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
        **judge_bias(config, judged, lengths, outcomes),
    }


def judge_bias(config: EvalConfig, judged: list[dict], lengths: dict, outcomes: list[str]) -> dict:
    """The judge's own figures on these verdicts (baize.judging.stats): how often the two orders disagree, how often
    the first-shown or the longer answer wins, kappa between the orders, and the length-controlled win rate."""
    pairs, shown, decisions, diffs, lc_outcomes = [], [], [], [], []
    for row in judged:
        key = (row["question_id"], row.get("turn", 1))
        model_first = (row.get("model_first") or {}).get("value")
        reference_first = row["reference_first"]["value"]
        shown += [reference_first, model_first] if row.get("model_first") else [reference_first]
        words = (lengths["model"].get(key), lengths["reference"].get(key))
        orders = a_vs_b(model_first, reference_first)  # the model's outcome in each order
        if row.get("model_first"):
            pairs.append(orders)
        if None not in words:
            decisions += [(outcome, *words) for outcome in orders if outcome is not None]
            if row["outcome"] is not None:
                lc_outcomes.append(row["outcome"])
                diffs.append(words[0] - words[1])
    both = [(x, y) for x, y in pairs if x is not None and y is not None]
    kappa = cohen_kappa([x for x, _ in both], [y for _, y in both])
    lc = length_controlled_win_rate(lc_outcomes, diffs)
    resamples = min(config.bootstrap_samples, 1000)  # each resample is a fit
    lc_ci = length_controlled_interval(lc_outcomes, diffs, resamples=resamples, confidence=config.confidence,
                                       seed=config.seed) if lc is not None else None  # fmt: skip
    rounded = {name: round(value, 3) if value is not None else None for name, value in (
        ("flip_rate", flip_rate(pairs)), ("first_position_win_rate", first_position_win_rate(shown)),
        ("longer_answer_win_rate", longer_answer_win_rate(decisions)), ("kappa_between_orders", kappa),
        ("lc_win_rate", lc),
    )}  # fmt: skip
    return {**rounded, "lc_win_rate_ci": [round(v, 3) for v in lc_ci] if lc_ci else None,
            "lc_not_identified": length_separates(lc_outcomes, diffs)}  # fmt: skip
