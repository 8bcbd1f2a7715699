"""A plan before paying, for the judges of SDF and eval: how many requests a step would send, the tokens, the cost
at live and at Batch API prices (`judge_prices`, USD per 1M tokens like collect's `prices`), and the wall time the
RPM/TPM limits allow. Estimates: prompts at 3 characters a token (the rendered rubric with the real context and
answers), completions at judge_max_tokens (an upper bound); one request per verdict (re-asks come on top)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from baize.judging.rubrics import JUDGE_SYSTEM
from baize.llm.endpoint import estimate_prompt_tokens

BATCH_DISCOUNT = 0.5  # the OpenAI Batch API's price where no batch price is given


def judge_prices(args) -> tuple[dict | None, dict | None]:
    table = getattr(args, "judge_prices", None) or {}
    if isinstance(table, str):  # from the command line
        table = yaml.safe_load(table) or {}
    entry = table.get(args.judge_model)
    if entry is None:
        return None, None
    live = {key: entry.get(key, 0.0) for key in ("prompt", "completion")}
    batch = {key: entry.get(f"batch_{key}", entry.get(key, 0.0) * BATCH_DISCOUNT) for key in ("prompt", "completion")}
    return live, batch


def verdict_prompt_tokens(prompt: str) -> int:
    return estimate_prompt_tokens([{"content": JUDGE_SYSTEM}, {"content": prompt}])


def plan_judge(args, prompts: list[str], *, what: str, folder: Path) -> dict:
    """The judge step's plan for these rendered verdict prompts; written to folder/plan.json and returned."""
    requests = len(prompts)
    prompt_tokens = sum(verdict_prompt_tokens(p) for p in prompts)
    completion_tokens = requests * args.judge_max_tokens
    live, batch = judge_prices(args)

    def cost(price):
        return (
            round((prompt_tokens * price["prompt"] + completion_tokens * price["completion"]) / 1e6, 4)
            if price
            else None
        )

    minutes = [m for m in (requests / args.rpm if args.rpm else None,
                           (prompt_tokens + completion_tokens) / args.tpm if args.tpm else None) if m is not None]  # fmt: skip
    plan = {
        "step": what,
        "judge": args.judge_model,
        "requests": requests,
        "prompt_tokens": prompt_tokens,
        "completion_tokens_at_most": completion_tokens,
        "cost_usd_live": cost(live),
        "cost_usd_batch": cost(batch),
        "wall_minutes_at_limits": round(max(minutes), 1) if minutes else None,
        "basis": "rendered prompts at 3 characters a token, completions at judge_max_tokens; re-asks on top",
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    return plan


def describe_plan(plan: dict) -> str:
    money = (f"${plan['cost_usd_live']:,.4f} live, ${plan['cost_usd_batch']:,.4f} as batches"
             if plan["cost_usd_live"] is not None else "cost unknown (no judge_prices entry for the judge)")  # fmt: skip
    return (f"plan ({plan['step']}): {plan['requests']:,} requests to {plan['judge']}, {plan['prompt_tokens']:,} "
            f"prompt + at most {plan['completion_tokens_at_most']:,} completion tokens; {money}; nothing was sent")  # fmt: skip
