"""Step 2, judge: the one judge (baize.judging.client) scores every candidate -> judged.jsonl = candidates + `scores` + the
full judge record. `pointwise` (the paper): one 1-100 score per candidate. `pairwise`: king of the hill, every
challenger vs the current best in both orders (position bias cancels)."""

from __future__ import annotations

import asyncio
import logging
import statistics
from pathlib import Path

from baize.io.errors import BaizeError
from baize.io.jsonl import JSONLAppender, read_jsonl
from baize.io.runs import claim_step
from baize.judging.client import JUDGE_BATCH_FOLDER, JudgeClient, Verdict, VerdictCache, verdict_key
from baize.judging.rubrics import PAIR_100, POINTWISE_100, render_context
from baize.llm.endpoint import EndpointError, RoleUsage, describe_url
from baize.sdf.config import (
    CANDIDATES_FILE,
    JUDGE_SIGNATURE,
    JUDGED_FILE,
    PREFERENCES_FILE,
    SELECTED_FILE,
    SDFConfig,
    judge_settings,
)
from baize.sdf.sample import RESUME_STATE

logger = logging.getLogger("baize.sdf")
# Every verdict as it arrives: a killed judge step re-asks none of them (judged.jsonl is written a prompt at a time).
JUDGE_CACHE_FILE = "judge_cache.jsonl"


class Judge(JudgeClient):
    """The SDF judge: pointwise 1-100 scores or king-of-the-hill pairwise comparisons of the candidates."""

    def key(self, context: str, answers: list[str], template: str) -> str | None:
        return verdict_key(context, answers, self.args, template) if self.cache is not None else None

    async def pointwise(self, row: dict, usage: RoleUsage) -> dict:
        context = render_context(row["messages"])
        verdicts = await self.endpoint.together(*[
            self.verdict(POINTWISE_100, context, c["text"], usage=usage,
                         key=self.key(context, [c["text"]], POINTWISE_100.template))
            for c in row["candidates"]
        ])  # fmt: skip
        return {"scores": [v.value for v in verdicts], "verdicts": [v.as_dict() for v in verdicts]}

    async def compare(self, context: str, a: str, b: str, usage: RoleUsage) -> dict:
        """a vs b asked in both orders; each side's score is its mean over the orders that parsed."""
        keys = (self.key(context, [a, b], PAIR_100.template), self.key(context, [b, a], PAIR_100.template))
        ab, ba = await self.both_orders(PAIR_100, context, a, b, keys, usage=usage)
        ab_scores, ba_scores = ab.value or (None, None), ba.value or (None, None)
        a_scores = [s for s in (ab_scores[0], ba_scores[1]) if s is not None]  # a is Assistant 1, then 2
        b_scores = [s for s in (ab_scores[1], ba_scores[0]) if s is not None]
        return {
            "order_ab": ab.as_dict(),
            "order_ba": ba.as_dict(),
            "a_score": statistics.mean(a_scores) if a_scores else None,
            "b_score": statistics.mean(b_scores) if b_scores else None,
        }

    async def pairwise(self, row: dict, usage: RoleUsage) -> dict:
        """King of the hill: candidate 0 starts as best; each challenger replaces it only by scoring strictly
        higher (mean over both orders). 2(N-1) calls. A candidate's score is its mean over its comparisons."""
        context = render_context(row["messages"])
        texts = [c["text"] for c in row["candidates"]]
        best, comparisons = 0, []
        seen: dict[int, list[float]] = {i: [] for i in range(len(texts))}
        for challenger in range(1, len(texts)):
            result = await self.compare(context, texts[best], texts[challenger], usage)
            result.update(a=best, b=challenger)
            for index, key in ((best, "a_score"), (challenger, "b_score")):
                if result[key] is not None:
                    seen[index].append(result[key])
            if None not in (result["a_score"], result["b_score"]) and result["b_score"] > result["a_score"]:
                best = challenger
            result["winner"] = best
            comparisons.append(result)
        scores = [statistics.mean(v) if v else None for v in seen.values()]
        return {"scores": scores, "winner": best, "comparisons": comparisons}


async def judge_rows(config: SDFConfig, rows: list[dict], appender: JSONLAppender | None, judge: Judge) -> dict:
    """Judge rows on the judge's loop (`judge_concurrency` prompts in flight); each judged row is appended as soon
    as it is done. A prompt whose requests fail (after the client's retries) is not written: the next run
    retries it."""
    judged: list[dict] = []
    unscored = 0

    async def judge_one(row: dict) -> None:
        nonlocal unscored
        usage = RoleUsage()  # this prompt's calls, kept in its record
        if config.judge_mode == "pointwise":
            result = await judge.pointwise(row, usage)
        else:
            result = await judge.pairwise(row, usage)
        out = {
            **row,
            "scores": result.pop("scores"),
            "judge": {"model": config.judge_model, "mode": config.judge_mode, "usage": usage.as_dict(), **result},
        }
        judge.stats.count_reasks([Verdict.from_dict(v) for v in _verdicts(out["judge"])])
        unscored += sum(s is None for s in out["scores"])
        if appender is not None:
            appender.append(out)
        judged.append(out)

    stats = await judge.judge_all(
        rows, judge_one, label=lambda row: str(row["id"]), describe=lambda row: f"prompt {row['id']}",
        desc="judge", unit="prompt",
    )  # fmt: skip
    result = stats.as_dict()
    result.update(unscored_candidates=unscored, rows=judged)
    return result


def _verdicts(judge_record: dict) -> list[dict]:
    if judge_record["mode"] == "pointwise":
        return judge_record["verdicts"]
    return [c[key] for c in judge_record["comparisons"] for key in ("order_ab", "order_ba")]


def plan_step(config: SDFConfig) -> dict:
    """--plan: the judge requests this run would send, from the candidates sampled so far, or (before sampling)
    the prompts with candidates at max_new_tokens (an upper bound)."""
    from baize.judging.plan import describe_plan, plan_judge
    from baize.sdf.sample import load_prompts

    folder = Path(config.output_dir)
    rows = read_jsonl(folder / CANDIDATES_FILE)
    done = {row["id"] for row in read_jsonl(folder / JUDGED_FILE)}
    if not rows:
        filler = {"text": "word " * config.max_new_tokens}
        rows = [{**prompt, "candidates": [filler] * config.num_candidates} for prompt in load_prompts(config)]
    prompts = []
    for row in rows:
        if row["id"] in done:
            continue
        context, texts = render_context(row["messages"]), [c["text"] for c in row["candidates"]]
        if config.judge_mode == "pointwise":
            prompts += [POINTWISE_100.prompt(context, text) for text in texts]
        else:  # king of the hill: every challenger against the best so far, both orders
            prompts += [PAIR_100.prompt(context, texts[0], text) for text in texts[1:] for _ in range(2)]
    plan = plan_judge(config, prompts, what=f"SDF judge ({config.judge_mode})", folder=folder)
    logger.info("%s", describe_plan(plan))
    return plan


def judge_step(config: SDFConfig) -> dict:
    """Step 2: judged.jsonl = candidates + `scores` + the full judge record (rationales, retries, usage)."""
    folder = Path(config.output_dir)
    later = [folder / name for name in (SELECTED_FILE, PREFERENCES_FILE)]
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

    async def run():
        judge = Judge(config, VerdictCache(folder / JUDGE_CACHE_FILE))
        judge.use_batches(folder / JUDGE_BATCH_FOLDER)
        try:
            with JSONLAppender(folder / JUDGED_FILE, writer="`baize sdf`") as appender:
                return await judge_rows(config, todo, appender, judge)
        finally:
            await judge.close()
            judge.cache.close()

    stats = asyncio.run(run())
    stats.pop("rows")
    stats["already_done"] = len(done)
    logger.info("judge: %s", stats)
    if stats["request_errors"]:  # what was judged is kept; a re-run asks only for the rest
        raise EndpointError(
            f"the judge at {describe_url(config.judge_base_url)} failed {stats['request_errors']} of {len(todo)} "
            f"prompts ({stats['last_error']}): check judge_base_url / judge_model and that the server is up, "
            "then re-run the same command"
        )
    return stats
