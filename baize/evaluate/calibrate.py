"""`baize eval --step calibrate`: the configured judge measured against human votes, before its verdicts are
trusted. Human-labelled pairs in MT-Bench's human-judgment format (lmsys/mt_bench_human_judgments, or a local
file of the same shape: question_id, model_a, model_b, winner, turn, conversation_a, conversation_b) are judged
exactly as eval judges its pairs (both orders, a side wins only if both agree; the same rubric, cache and loop),
and compared with the human winner -> calibration.json and calibration.md.

Agreement is counted as the MT-Bench paper counts it (Zheng et al. 2023, arXiv 2306.05685, section 4.2): with
ties (three classes: A, B, tie) and without (only the pairs where neither the human nor the judge said tie), with
bootstrap intervals; beside it Cohen's kappa, the judge's flip rate between the orders, and how often the longer
answer wins for the judge and for the humans.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from baize.data.seeds import load_table
from baize.evaluate.config import PAIR_RUBRIC, EvalConfig
from baize.evaluate.judge import judged_step, pair_inputs, question_key
from baize.io.errors import UsageError
from baize.judging.client import JudgeClient
from baize.judging.compare import judge_pair
from baize.judging.stats import (
    a_vs_b,
    bootstrap_interval,
    cohen_kappa,
    first_position_win_rate,
    flip_rate,
    longer_answer_win_rate,
    pair_outcome,
)

logger = logging.getLogger("baize.eval")

HUMAN_OUTCOME = {"model_a": "win", "model_b": "loss", "tie": "tie", "tie (bothbad)": "tie"}
COLUMNS = ("question_id", "winner", "turn", "conversation_a", "conversation_b")


def load_pairs(config: EvalConfig) -> list[dict]:
    """The human-labelled pairs as eval's judge rows: A in the `model` place, B in the `reference` place."""
    table = load_table(config.calibration_path, None, config.calibration_split, key="calibration_path")
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise UsageError(
            f"calibration_path {config.calibration_path}: missing columns {missing} of MT-Bench's human-judgment "
            f"format {COLUMNS}; it has {table.column_names}"
        )
    pairs = []
    for number, row in enumerate(table, 1):
        if config.calibration_limit is not None and len(pairs) >= config.calibration_limit:
            break
        if row["winner"] not in HUMAN_OUTCOME:
            raise UsageError(
                f"calibration_path {config.calibration_path}: row {number}: winner {row['winner']!r} is not one of "
                f"{sorted(HUMAN_OUTCOME)}"
            )
        where = f"calibration_path {config.calibration_path}: row {number}"
        try:
            turn = int(row["turn"])
        except (TypeError, ValueError):
            raise UsageError(f"{where}: turn {row['turn']!r} is not a number (1 or 2)") from None
        if turn < 1:
            raise UsageError(f"{where}: turn {turn} must be 1 or more")
        a, b = (messages(row[column], f"{where}: {column}") for column in ("conversation_a", "conversation_b"))
        if len(a) < 2 * turn or len(b) < 2 * turn:
            raise UsageError(f"calibration_path {config.calibration_path}: row {number}: no answer to turn {turn}")
        questions = [m["content"] for m in a if m["role"] == "user"]
        pairs.append(
            {
                "question_id": str(row["question_id"]),
                "turn": turn,
                "turns": questions,
                "model": a[2 * turn - 1]["content"],
                "reference": b[2 * turn - 1]["content"],
                "conversations": {"model": a[: 2 * turn - 1], "reference": b[: 2 * turn - 1]},
                "human": HUMAN_OUTCOME[row["winner"]],
                "models": [row.get("model_a"), row.get("model_b")],
            }
        )
    return pairs


def messages(value, where: str) -> list[dict]:
    """A conversation of MT-Bench's human-judgment format (a list of role/content messages), or one line saying
    what the file holds instead."""
    if isinstance(value, str):
        raise UsageError(f"{where} is a string; MT-Bench's format has a list of {{role, content}} messages")
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise UsageError(f"{where} must be a list of {{role, content}} messages, not {type(value).__name__}")
    if any(m.get("role") is None and m.get("from") is not None for m in value):
        raise UsageError(
            f"{where} has ShareGPT's from/value messages; MT-Bench's format has role/content (convert: from human "
            "-> role user, gpt -> assistant, value -> content)"
        )
    for m in value:
        if not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise UsageError(f"{where}: a message without a text role and content: {str(m)[:80]}")
    return value


async def judge_pair_of_humans(client: JudgeClient, pair: dict) -> tuple:
    """A human-labelled pair judged as eval judges its pairs: A is the model side, B the reference side."""
    context, a, b = pair_inputs(pair)
    b_first, a_first = await judge_pair(client, PAIR_RUBRIC, context, a, b, question=question_key(pair, context))
    return a_first.value, b_first.value


def keep(pair: dict, values: tuple) -> None:
    pair["a_first"], pair["b_first"] = values


def calibration_figures(config: EvalConfig, pairs: list[dict]) -> dict:
    judged = [p for p in pairs if "a_first" in p]
    rows = []
    for pair in judged:
        judge = pair_outcome(pair["a_first"], pair["b_first"])
        if judge is not None:
            rows.append((judge, pair["human"]))
    interval = {"resamples": config.bootstrap_samples, "confidence": config.confidence, "seed": config.seed}

    def agreement(sample):
        return sum(j == h for j, h in sample) / len(sample)

    decided = [(j, h) for j, h in rows if "tie" not in (j, h)]
    words = {id(p): (len(p["model"].split()), len(p["reference"].split())) for p in judged}
    judge_decisions = [(pair_outcome(p["a_first"], p["b_first"]), *words[id(p)]) for p in judged]
    human_decisions = [(p["human"], *words[id(p)]) for p in judged]
    with_ties = bootstrap_interval(rows, agreement, **interval)
    without_ties = bootstrap_interval(decided, agreement, **interval)

    def rounded(value):
        return round(value, 3) if value is not None else None

    return {
        "pairs": len(pairs),
        "judged": len(judged),
        "parsed": len(rows),
        "agreement_with_ties": rounded(agreement(rows)) if rows else None,
        "agreement_with_ties_ci": [rounded(v) for v in with_ties] if with_ties else None,
        "agreement_without_ties": rounded(agreement(decided)) if decided else None,
        "agreement_without_ties_ci": [rounded(v) for v in without_ties] if without_ties else None,
        "pairs_without_ties": len(decided),
        "cohen_kappa": rounded(cohen_kappa([j for j, _ in rows], [h for _, h in rows])),
        "flip_rate": rounded(flip_rate([a_vs_b(p["a_first"], p["b_first"]) for p in judged])),
        # the same answers shown both ways round: an unbiased judge prefers the first-shown half of the time
        "first_position_win_rate": rounded(
            first_position_win_rate([v for p in judged for v in (p["a_first"], p["b_first"])])
        ),
        "judge_longer_answer_win_rate": rounded(longer_answer_win_rate([d for d in judge_decisions if d[0]])),
        "human_longer_answer_win_rate": rounded(longer_answer_win_rate(human_decisions)),
        "judge_outcomes": {o: sum(j == o for j, _ in rows) for o in ("win", "tie", "loss")},
        "human_outcomes": {o: sum(h == o for _, h in rows) for o in ("win", "tie", "loss")},
    }


def calibration_markdown(config: EvalConfig, figures: dict) -> str:
    confidence = int(config.confidence * 100)

    def ci(name):
        values = figures.get(f"{name}_ci")
        return f"{values[0]} to {values[1]}" if values else "–"

    return "\n".join(
        [
            f"# Judge calibration: `{config.judge_model}` against human votes",
            "",
            f"{figures['judged']} of {figures['pairs']} human-labelled pairs from `{config.calibration_path}` judged in "
            f"both orders ({figures['parsed']} with both verdicts parsed). Agreement as the MT-Bench paper counts "
            f"it; {confidence}% bootstrap intervals over pairs. Humans agree with each other about 0.63 with ties "
            "and 0.81 without (MT-Bench paper, table 2); GPT-4 with humans 0.66 / 0.85.",
            "",
            f"| figure | value | {confidence}% CI |",
            "|---|---|---|",
            f"| agreement with humans, ties counted | {figures['agreement_with_ties']} | {ci('agreement_with_ties')} |",
            f"| agreement with humans, without ties ({figures['pairs_without_ties']} pairs) | "
            f"{figures['agreement_without_ties']} | {ci('agreement_without_ties')} |",
            f"| Cohen's kappa with humans | {figures['cohen_kappa']} | |",
            f"| flip rate between the orders | {figures['flip_rate']} | |",
            f"| first-shown answer wins (decided verdicts; unbiased 0.5) | {figures['first_position_win_rate']} | |",
            f"| longer answer wins: judge / humans | {figures['judge_longer_answer_win_rate']} / "
            f"{figures['human_longer_answer_win_rate']} | |",
            "",
        ]
    )


def calibrate_step(config: EvalConfig) -> dict:
    """Judge the human-labelled pairs (cached like every verdict) and write calibration.json / calibration.md."""
    pairs = load_pairs(config)
    if not pairs:
        raise UsageError(f"calibration_path {config.calibration_path}: no human-labelled pairs")
    folder = Path(config.output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    figures = {}

    def write(stats: dict) -> None:  # the pairs judged so far, before a failure ends the step
        figures.update(calibration_figures(config, pairs), judge=config.judge_model, usage=stats["usage"])
        (folder / "calibration.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        (folder / "calibration.md").write_text(calibration_markdown(config, figures), encoding="utf-8")
        logger.info(
            "calibrate: agreement with humans %s with ties, %s without; kappa %s; flip rate %s; first-shown wins %s; "
            "longer answer wins %s (humans %s) -> %s", figures["agreement_with_ties"], figures["agreement_without_ties"],
            figures["cohen_kappa"], figures["flip_rate"], figures["first_position_win_rate"],
            figures["judge_longer_answer_win_rate"], figures["human_longer_answer_win_rate"], folder / "calibration.md",
        )  # fmt: skip

    judged_step(config, what="pairs", desc="calibrate", unit="pair").run(pairs, judge_pair_of_humans, keep, done=write)
    return figures
