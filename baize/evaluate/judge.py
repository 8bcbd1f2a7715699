"""Step 2, judge: per (question, turn), the one judged step (baize.judging.step) scores both answers 1-10 side by
side in both orders (reference first is the paper's call; a side wins only if it wins in both), and with single_grading each
answer on its own (reference-guided where the category says) -> judgements.jsonl. Every verdict is cached on
disk under what it was asked, so a re-run asks the judge nothing twice."""

from __future__ import annotations

import logging
from pathlib import Path

from baize.evaluate.answer import contestants, read_answers
from baize.evaluate.config import JUDGEMENTS_FILE, PAIR_RUBRIC, SINGLE_RUBRICS, EvalConfig
from baize.evaluate.questions import conversation, load_questions
from baize.io.errors import BaizeError
from baize.io.jsonl import write_jsonl_atomically
from baize.judging.client import JudgeClient
from baize.judging.compare import Compared, judge_pair, score_each
from baize.judging.rubrics import render_context
from baize.judging.step import JudgedStep

logger = logging.getLogger("baize.eval")


def pair_inputs(row: dict) -> tuple[str, str, str]:
    """(context, model answer, reference answer) as the pair judge sees one turn. Turn 1: the question and the two
    answers, as the paper asked. A later turn: each side's own conversation (its earlier answers differ), judged
    on its answer to the last question."""
    if row["turn"] == 1:
        return render_context([{"role": "user", "content": row["turns"][0]}]), row["model"], row["reference"]
    asked = "\n".join(f"{n}. {text}" for n, text in enumerate(row["turns"][: row["turn"]], 1))
    context = (
        f"The user asked these {row['turn']} questions in turn, each assistant answering in its own conversation:"
        f"\n{asked}\nJudge each assistant's answer to the LAST question, given its own earlier answers."
    )

    def side(role: str) -> str:
        return render_context(row["conversations"][role] + [{"role": "assistant", "content": row[role]}])

    return context, side("model"), side("reference")


def judged_step(config: EvalConfig, what: str = "question turns", desc: str = "judge", unit: str = "turn"):
    """Eval's judged step (calibration's too): verdicts cached in judge_cache (default OUTPUT_DIR/judge_cache.jsonl)."""
    return JudgedStep(
        config, Path(config.judge_cache or Path(config.output_dir) / "judge_cache.jsonl"), what=what, desc=desc,
        unit=unit, label=lambda row: f"{row['question_id']}/{row['turn']}",
        describe=lambda row: f"question {row['question_id']} turn {row['turn']}",
    )  # fmt: skip


def question_key(row: dict, context: str) -> str:
    """What keys a turn's pair verdicts: the question text for turn 1 (the verdict of a one-turn question is the
    same whatever the context's rendering), the multi-turn context after."""
    return row["turns"][0] if row["turn"] == 1 else context


def judge_turn(config: EvalConfig):
    """One (question, turn): the pair side by side (reference first = the paper's call; model first too with
    `pairwise`), and with single_grading each answer on its own (reference-guided where the category says)."""

    async def judge(client: JudgeClient, row: dict) -> dict:
        context, model_text, reference_text = pair_inputs(row)
        calls = [judge_pair(client, PAIR_RUBRIC, context, model_text, reference_text,
                            question=question_key(row, context), both_orders=config.pairwise)]  # fmt: skip
        if config.single_grading:
            reference = row["reference_answer"]
            calls += [score_each(client, SINGLE_RUBRICS[reference is not None], render_context(row["conversations"][role]),
                                 [row[role]], reference=reference, key_reference=True)
                      for role in ("model", "reference")]  # fmt: skip
        results = await client.endpoint.together(*calls)
        (reference_first, model_first), singles = results[0], [verdicts[0] for verdicts in results[1:]]
        return {
            "reference_first": reference_first.as_dict(),
            "model_first": model_first.as_dict() if model_first is not None else None,
            "single": {"model": singles[0].as_dict(), "reference": singles[1].as_dict()} if singles else None,
        }

    return judge


def judge_rows(config: EvalConfig, questions: list[dict], answers: dict[str, dict]) -> list[dict]:
    """One row per (question, turn) answered by both contestants: the answers, each side's conversation up to that
    turn (its own earlier answers) and the reference answer the single-answer judge may see."""
    rows = []
    for question in questions:
        for turn in range(1, len(question["turns"]) + 1):
            key = (question["question_id"], turn)
            if key not in answers["model"] or key not in answers["reference"]:
                continue
            references = question.get("references") or []
            guided = question["category"] in config.reference_guided_categories
            rows.append(
                {
                    **question,
                    "turn": turn,
                    "model": answers["model"][key]["answer"],
                    "reference": answers["reference"][key]["answer"],
                    "conversations": {
                        role: conversation(question, turn, answers[role]) for role in ("model", "reference")
                    },
                    "reference_answer": references[turn - 1] if guided and len(references) >= turn else None,
                }
            )
    return rows


def plan_step(config: EvalConfig) -> dict:
    """--plan: eval's judged step run on a counting transport over the answers there are, or (before answering)
    answers at max_new_tokens (an upper bound); verdicts already cached cost nothing and are left out."""
    model, reference = contestants(config)
    questions = load_questions(config)
    answers = {role: {(q["question_id"], t): read_answers(config, c).get((q["question_id"], t), {"answer": filler})
                      for q in questions for t in range(1, len(q["turns"]) + 1)}
               for role, c, filler in (("model", model, "model " + "word " * config.max_new_tokens),
                                       ("reference", reference, "reference " + "word " * config.max_new_tokens))}  # fmt: skip
    rows = judge_rows(config, questions, answers)
    return judged_step(config).plan(rows, judge_turn(config), step="eval judge", folder=Path(config.output_dir))


def judge_step(config: EvalConfig) -> dict:
    """Step 2: judgements.jsonl, one row per (question, turn) with every verdict (scores, rationales, retries)."""
    model, reference = contestants(config)
    answers = {"model": read_answers(config, model), "reference": read_answers(config, reference)}
    questions = load_questions(config)
    rows = judge_rows(config, questions, answers)
    missing = sum(len(q["turns"]) for q in questions) - len(rows)
    if not rows:
        raise BaizeError(
            f"no question has answers from both {model.label} and {reference.label} in "
            f"{Path(config.output_dir) / 'answers'}: run the answer step first (--step answer, or all)"
        )
    if missing:
        logger.warning("judge: %d question turns lack an answer (run the answer step): not judged", missing)
    verdicts: dict[int, dict] = {}  # id(row) -> its verdict records

    def write(stats: dict) -> None:  # what came is written before a failure ends the step
        judged = []
        for row in rows:
            if (result := verdicts.get(id(row))) is None:
                continue
            reference_first, model_first = result["reference_first"], result["model_first"]
            judged.append({
                "question_id": row["question_id"], "turn": row["turn"], "category": row["category"],
                "model": model.label, "reference": reference.label, "judge": config.judge_model,
                "reference_first": reference_first, "model_first": model_first,
                "outcome": Compared(reference_first["value"], (model_first or {}).get("value")).outcome,
                "single": result["single"], "reference_guided": row["reference_answer"] is not None,
            })  # fmt: skip
        write_jsonl_atomically(Path(config.output_dir) / JUDGEMENTS_FILE, judged)
        asked = [
            v
            for r in verdicts.values()
            for v in (r["reference_first"], r["model_first"], *(r["single"] or {}).values())
        ]
        stats.update(parse_failures=sum(v is not None and v["value"] is None for v in asked), missing_answers=missing)
        logger.info("judge: %s", stats)

    return judged_step(config).run(rows, judge_turn(config), lambda row, result: verdicts.update({id(row): result}),
                                   done=write)  # fmt: skip
