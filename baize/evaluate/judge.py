"""Step 2, judge: per (question, turn), the one judge (baize.judging.client) scores both answers 1-10 side by side in both
orders (reference first is the paper's call; a side wins only if it wins in both), and with single_grading each
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
from baize.judging.client import JudgeClient, Verdict, VerdictCache, run_judge, verdict_key
from baize.judging.rubrics import render_context
from baize.judging.stats import pair_outcome
from baize.llm.endpoint import EndpointError, describe_url

logger = logging.getLogger("baize.eval")


def question_outcome(reference_first: tuple | None, model_first: tuple | None) -> str | None:
    """The model's result on one question from the two orders: win or loss only when both orders agree;
    a disagreement (position bias) or an equal score is a tie; None when a verdict is missing."""
    return pair_outcome(model_first, reference_first)


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


async def judge_questions(config: EvalConfig, rows: list[dict], client: JudgeClient) -> dict:
    """Both orders for every (question, turn) (reference first = the paper's call), and with single_grading each
    answer on its own, on the judge's loop; verdicts come from the client's cache when they are there, and go into
    it as soon as they arrive."""
    parse_failures = 0

    def pair_keys(row: dict, context: str, shown: dict) -> tuple[str, str]:
        # the turn-1 key is the question text, as before multi-turn evaluation: old caches keep working
        question = row["turns"][0] if row["turn"] == 1 else context
        return tuple(
            verdict_key(question, [shown[first], shown[second]], config, PAIR_RUBRIC.template)
            for first, second in (("reference", "model"), ("model", "reference"))
        )

    async def single_verdict(row: dict, role: str) -> Verdict:
        reference = row["reference_answer"]
        rubric = SINGLE_RUBRICS[reference is not None]
        context = render_context(row["conversations"][role])
        key = verdict_key(context, [row[role], reference or ""], config, rubric.template)
        return await client.verdict(rubric, context, row[role], reference=reference, key=key)

    async def judge(row: dict) -> None:
        nonlocal parse_failures
        context, model_text, reference_text = pair_inputs(row)
        shown = {"model": model_text, "reference": reference_text}
        keys = pair_keys(row, context, shown)
        calls = []
        if config.pairwise:  # reference first and model first, together
            calls.append(client.both_orders(PAIR_RUBRIC, context, reference_text, model_text, keys))
        else:
            calls.append(client.verdict(PAIR_RUBRIC, context, reference_text, model_text, key=keys[0]))
        if config.single_grading:
            calls += [single_verdict(row, "model"), single_verdict(row, "reference")]
        results = await client.endpoint.together(*calls)
        pair = results[0] if config.pairwise else (results[0], None)
        singles = results[1:]
        verdicts = [v for v in (*pair, *singles) if v is not None]
        row["reference_first"] = pair[0].as_dict()
        row["model_first"] = pair[1].as_dict() if pair[1] is not None else None
        row["single"] = (
            {"model": singles[0].as_dict(), "reference": singles[1].as_dict()} if config.single_grading else None
        )
        parse_failures += sum(v.value is None for v in verdicts)
        client.stats.count_reasks(verdicts)

    stats = await client.judge_all(
        rows, judge, label=lambda row: f"{row['question_id']}/{row['turn']}",
        describe=lambda row: f"question {row['question_id']} turn {row['turn']}", desc="judge", unit="turn",
    )  # fmt: skip
    result = stats.as_dict()
    result["parse_failures"] = parse_failures
    return result


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
    """--plan: the judge requests of this evaluation, from the answers there are, or (before answering) answers at
    max_new_tokens (an upper bound); verdicts already cached cost nothing and are left out."""
    from baize.judging.plan import describe_plan, plan_judge

    model, reference = contestants(config)
    questions = load_questions(config)
    filler = {"answer": "word " * config.max_new_tokens}
    answers = {role: {(q["question_id"], t): read_answers(config, c).get((q["question_id"], t), filler)
                      for q in questions for t in range(1, len(q["turns"]) + 1)}
               for role, c in (("model", model), ("reference", reference))}  # fmt: skip
    cache = VerdictCache(config.judge_cache or Path(config.output_dir) / "judge_cache.jsonl")
    prompts = []
    for row in judge_rows(config, questions, answers):
        context, model_text, reference_text = pair_inputs(row)
        question = row["turns"][0] if row["turn"] == 1 else context
        orders = [(reference_text, model_text), (model_text, reference_text)][: 2 if config.pairwise else 1]
        for first, second in orders:
            if verdict_key(question, [first, second], config, PAIR_RUBRIC.template) not in cache.entries:
                prompts.append(PAIR_RUBRIC.prompt(context, first, second))
        if config.single_grading:
            for role in ("model", "reference"):
                rubric = SINGLE_RUBRICS[row["reference_answer"] is not None]
                prompts.append(rubric.prompt(render_context(row["conversations"][role]), row[role],
                                             reference=row["reference_answer"]))  # fmt: skip
    plan = plan_judge(config, prompts, what="eval judge", folder=Path(config.output_dir))
    logger.info("%s", describe_plan(plan))
    return plan


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
    cache = VerdictCache(config.judge_cache or Path(config.output_dir) / "judge_cache.jsonl")

    async def work(client: JudgeClient):
        return await judge_questions(config, rows, client), client.model

    stats, judge_model = run_judge(config, cache, work)
    judged = [
        {
            "question_id": r["question_id"],
            "turn": r["turn"],
            "category": r["category"],
            "model": model.label,
            "reference": reference.label,
            "judge": config.judge_model,
            "reference_first": r["reference_first"],
            "model_first": r["model_first"],
            "outcome": question_outcome(
                r["reference_first"]["value"], r["model_first"]["value"] if r["model_first"] else None
            ),
            "single": r["single"],
            "reference_guided": r["reference_answer"] is not None,
        }
        for r in rows
        if "reference_first" in r
    ]
    write_jsonl_atomically(Path(config.output_dir) / JUDGEMENTS_FILE, judged)
    stats.update(missing_answers=missing, cache_hits=cache.hits, cache_misses=cache.misses, judge=judge_model)
    logger.info("judge: %s", stats)
    if stats["request_errors"]:  # every verdict that came is cached; a re-run asks only for the rest
        raise EndpointError(
            f"the judge at {describe_url(config.judge_base_url)} failed {stats['request_errors']} of {len(rows)} "
            f"question turns ({stats['last_error']}): check judge_base_url / judge_model and that the server is up, "
            "then re-run the same command"
        )
    return stats
