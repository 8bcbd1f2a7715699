"""Step 2, judge: the one judged step (baize.judging.step) scores every candidate -> judged.jsonl = candidates +
`scores` + the full judge record. `pointwise` (the paper): one 1-100 score per candidate. `pairwise`: king of the
hill, every challenger vs the current best in both orders (position bias cancels)."""

from __future__ import annotations

import logging
import statistics
from pathlib import Path

from baize.io.errors import BaizeError
from baize.io.jsonl import JSONLAppender, read_jsonl
from baize.io.runs import claim_step
from baize.judging.client import JudgeClient
from baize.judging.compare import judge_pair, score_each
from baize.judging.rubrics import PAIR_100, POINTWISE_100, render_context
from baize.judging.step import JudgedStep
from baize.llm.prices import RoleUsage
from baize.sdf.config import CANDIDATES_FILE, JUDGE_SIGNATURE, JUDGED_FILE, SDFConfig, judge_settings, outputs_after
from baize.sdf.sample import RESUME_STATE, load_prompts

logger = logging.getLogger("baize.sdf")
# Every verdict as it arrives: a killed judge step re-asks none of them (judged.jsonl is written a prompt at a time).
JUDGE_CACHE_FILE = "judge_cache.jsonl"


async def pointwise(client: JudgeClient, row: dict, usage: RoleUsage) -> dict:
    context = render_context(row["messages"])
    verdicts = await score_each(client, POINTWISE_100, context, [c["text"] for c in row["candidates"]], usage=usage)
    return {"scores": [v.value for v in verdicts], "verdicts": [v.as_dict() for v in verdicts]}


async def king_of_the_hill(client: JudgeClient, row: dict, usage: RoleUsage) -> dict:
    """Candidate 0 starts as best; each challenger replaces it only by scoring strictly higher (mean over both
    orders). 2(N-1) calls. A candidate's score is its mean over its comparisons."""
    context = render_context(row["messages"])
    texts = [c["text"] for c in row["candidates"]]
    best, comparisons = 0, []
    seen: dict[int, list[float]] = {i: [] for i in range(len(texts))}
    for challenger in range(1, len(texts)):
        ba, ab = await judge_pair(client, PAIR_100, context, texts[best], texts[challenger], question=context,
                                  usage=usage)  # fmt: skip
        ab_scores, ba_scores = ab.value or (None, None), ba.value or (None, None)
        # each side's score is its mean over the orders that parsed (the best is Assistant 1, then 2)
        best_scores = [s for s in (ab_scores[0], ba_scores[1]) if s is not None]
        challenger_scores = [s for s in (ab_scores[1], ba_scores[0]) if s is not None]
        result = {
            "order_ab": ab.as_dict(),
            "order_ba": ba.as_dict(),
            "a_score": statistics.mean(best_scores) if best_scores else None,
            "b_score": statistics.mean(challenger_scores) if challenger_scores else None,
            "a": best,
            "b": challenger,
        }
        for index, key in ((best, "a_score"), (challenger, "b_score")):
            if result[key] is not None:
                seen[index].append(result[key])
        if None not in (result["a_score"], result["b_score"]) and result["b_score"] > result["a_score"]:
            best = challenger
        result["winner"] = best
        comparisons.append(result)
    scores = [statistics.mean(v) if v else None for v in seen.values()]
    return {"scores": scores, "winner": best, "comparisons": comparisons}


def judged_step(config: SDFConfig) -> JudgedStep:
    return JudgedStep(config, Path(config.output_dir) / JUDGE_CACHE_FILE, what="prompts", desc="judge",
                      unit="prompt", label=lambda row: str(row["id"]), describe=lambda row: f"prompt {row['id']}")  # fmt: skip


def judge_row(config: SDFConfig):
    """One prompt's verdicts -> its judged.jsonl line (its calls' usage in its record)."""

    async def judge(client: JudgeClient, row: dict) -> dict:
        usage = RoleUsage()
        mode = king_of_the_hill if config.judge_mode == "pairwise" else pointwise
        result = await mode(client, row, usage)
        judge_record = {"model": config.judge_model, "mode": config.judge_mode, "usage": usage.as_dict(), **result}
        return {**row, "scores": judge_record.pop("scores"), "judge": judge_record}

    return judge


def plan_step(config: SDFConfig) -> dict:
    """--plan: the judge step run on a counting transport over the candidates sampled so far (or, before sampling,
    the prompts with candidates at max_new_tokens: an upper bound); prompts already judged are left out."""
    folder = Path(config.output_dir)
    rows = read_jsonl(folder / CANDIDATES_FILE)
    done = {row["id"] for row in read_jsonl(folder / JUDGED_FILE)}
    if not rows:  # distinct fillers: equal candidates would share one (cached) verdict
        fillers = [{"text": f"{i} " + "word " * config.max_new_tokens} for i in range(config.num_candidates)]
        rows = [{**prompt, "candidates": fillers} for prompt in load_prompts(config)]
    todo = [row for row in rows if row["id"] not in done]
    return judged_step(config).plan(todo, judge_row(config), step=f"SDF judge ({config.judge_mode})", folder=folder)


def judge_step(config: SDFConfig) -> dict:
    """Step 2: judged.jsonl = candidates + `scores` + the full judge record (rationales, retries, usage), a line
    appended as each prompt is judged; a prompt whose requests failed is left for the re-run."""
    folder = Path(config.output_dir)
    later = outputs_after(folder, "judge")
    claim_step(folder, JUDGE_SIGNATURE, judge_settings(config), [folder / JUDGED_FILE, *later],
               overwrite=config.overwrite, what="SDF verdicts", resume_state=RESUME_STATE)  # fmt: skip
    candidates = read_jsonl(folder / CANDIDATES_FILE)
    if not candidates:
        raise BaizeError(
            f"{folder / CANDIDATES_FILE} holds no candidates yet: run the sample step first (--step sample, or all)"
        )
    done = {row["id"] for row in read_jsonl(folder / JUDGED_FILE)}
    todo = [row for row in candidates if row["id"] not in done]
    if not todo:
        logger.info("judge: all %d sampled prompts already judged", len(candidates))
        return {"judged": 0, "already_done": len(done)}
    with JSONLAppender(folder / JUDGED_FILE, writer="`baize sdf`") as appender:
        return judge_rows(config, todo, appender.append, already_done=len(done))


def judge_rows(config: SDFConfig, rows: list[dict], keep, already_done: int = 0) -> dict:
    """The judged step on `rows`: `keep(judged_row)` as each prompt is judged; the stats, with the candidates left
    without a score."""
    unscored = 0

    def kept(row: dict, judged: dict) -> None:
        nonlocal unscored
        unscored += sum(s is None for s in judged["scores"])
        keep(judged)

    def done(stats: dict) -> None:
        stats.update(unscored_candidates=unscored, already_done=already_done)
        logger.info("judge: %s", stats)

    return judged_step(config).run(rows, judge_row(config), kept, done=done)
