"""Step 3, select: the best candidate per prompt -> selected.jsonl (chat rows for SFT), best vs worst ->
preferences.jsonl (TRL's DPO format). Deterministic and cheap: rewritten from judged.jsonl on every run."""

from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path

from baize.io.errors import BaizeError
from baize.io.jsonl import read_jsonl, write_jsonl_atomically
from baize.judging.stats import a_vs_b, first_position_win_rate, flip_rate, longer_answer_win_rate, score_outcome
from baize.llm.endpoint import describe_url
from baize.sdf.config import CANDIDATES_FILE, JUDGED_FILE, PREFERENCES_FILE, SELECTED_FILE, SDFConfig

logger = logging.getLogger("baize.sdf")


def best_and_worst(row: dict) -> tuple[int | None, int | None]:
    """Best: the pairwise winner, else the argmax score (ties -> lowest index). Worst: argmin (ties -> highest
    index). None when no candidate was scored."""
    scored = [(s, i) for i, s in enumerate(row["scores"]) if s is not None]
    if not scored:
        return None, None
    winner = row.get("judge", {}).get("winner")
    best = (
        winner
        if winner is not None and row["scores"][winner] is not None
        else min(scored, key=lambda x: (-x[0], x[1]))[1]
    )
    worst = min(scored, key=lambda x: (x[0], -x[1]))[1]
    return best, worst


def judge_bias(judged: list[dict]) -> dict:
    """The judge's figures on these verdicts (baize.judging.stats): in pairwise mode how often the two orders of a
    comparison disagree and the first-shown answer wins; in both modes how often the longer candidate wins (a
    higher pointwise score, a pairwise comparison)."""
    pairs, shown, decisions = [], [], []
    for row in judged:
        words = [len(c["text"].split()) for c in row["candidates"]]
        for comparison in row.get("judge", {}).get("comparisons") or []:
            ab, ba = comparison["order_ab"]["value"], comparison["order_ba"]["value"]
            pairs.append(a_vs_b(ab, ba))
            shown += [ab, ba]
            a, b = comparison["a"], comparison["b"]
            if None not in (comparison["a_score"], comparison["b_score"]):
                outcome = score_outcome(comparison["a_score"], comparison["b_score"])
                decisions.append((outcome, words[a], words[b]))
        if row.get("judge", {}).get("mode") == "pointwise":
            scored = [(score, words[i]) for i, score in enumerate(row["scores"]) if score is not None]
            for i, (score_a, words_a) in enumerate(scored):
                for score_b, words_b in scored[i + 1 :]:
                    decisions.append((score_outcome(score_a, score_b), words_a, words_b))
    figures = {"flip_rate": flip_rate(pairs), "first_position_win_rate": first_position_win_rate(shown),
               "longer_answer_win_rate": longer_answer_win_rate(decisions)}  # fmt: skip
    return {name: round(value, 3) if value is not None else None for name, value in figures.items()}


def _describe(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "mean": round(statistics.mean(values), 2),
        "median": round(statistics.median(values), 2),
        "min": min(values),
        "max": max(values),
    }


def select_step(config: SDFConfig) -> dict:
    """Step 3: selected.jsonl (chat rows: context + best answer) and preferences.jsonl (best vs worst).

    Deterministic and cheap, so both files are rewritten (atomically) from judged.jsonl on every run."""
    folder = Path(config.output_dir)
    judged = read_jsonl(folder / JUDGED_FILE)
    sampled = {row["id"] for row in read_jsonl(folder / CANDIDATES_FILE)}
    missing = len(sampled - {row["id"] for row in judged})
    if missing and not config.allow_partial:
        raise BaizeError(
            f"{missing} of {len(sampled)} sampled prompts have no verdict in {folder / JUDGED_FILE}: run the judge "
            f"step (judge at {describe_url(config.judge_base_url)}), or pass --allow_partial true to select from "
            "the judged ones"
        )
    selected, preferences = [], []
    stats = {"judged_prompts": len(judged), "selected": 0, "below_min_score": 0, "unscored": 0, "preferences": 0}
    best_scores, all_scores = [], []
    for row in judged:
        all_scores += [s for s in row["scores"] if s is not None]
        best, worst = best_and_worst(row)
        if best is None:
            stats["unscored"] += 1
            continue
        best_score = row["scores"][best]
        best_scores.append(best_score)
        answer = row["candidates"][best]["text"]
        if best_score < config.min_score or not answer:
            stats["below_min_score"] += 1
        else:
            selected.append(
                {
                    "messages": [*row["messages"], {"role": "assistant", "content": answer}],
                    "seed": row["messages"][-1]["content"],
                    "source": "sdf",
                    "teacher": row["judge"]["model"],
                    "mode": "sdf",
                    "prompt_id": row["id"],
                    "candidate": best,
                    "score": best_score,
                }
            )
        worst_answer = row["candidates"][worst]["text"]
        if best != worst and best_score - row["scores"][worst] >= config.min_margin and answer != worst_answer:
            preferences.append(
                {
                    "prompt": row["messages"],
                    "chosen": [{"role": "assistant", "content": answer}],
                    "rejected": [{"role": "assistant", "content": worst_answer}],
                    "prompt_id": row["id"],
                    "score_chosen": best_score,
                    "score_rejected": row["scores"][worst],
                }
            )
    stats["judge_bias"] = judge_bias(judged)
    write_jsonl_atomically(folder / SELECTED_FILE, selected)
    write_jsonl_atomically(folder / PREFERENCES_FILE, preferences)
    stats.update(
        selected=len(selected),
        preferences=len(preferences),
        best_score=_describe(best_scores),
        all_scores=_describe(all_scores),
        min_score=config.min_score,
    )
    (folder / "select_summary.json").write_text(json.dumps(stats, indent=2) + "\n")
    flip = stats["judge_bias"]["flip_rate"]
    if flip is not None and flip > config.max_flip_rate:
        stats["judge_flag"] = (
            f"judge flagged: its pairwise verdicts flip in {flip:.0%} of the comparisons when the candidates swap "
            f"places (over max_flip_rate {config.max_flip_rate})"
        )
    if config.judge_note:
        stats["judge_note"] = config.judge_note
    logger.info("select: %s", stats)
    return stats
