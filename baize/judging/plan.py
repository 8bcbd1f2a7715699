"""A plan before paying, for every judged step (SDF's judge, eval's judge): the step is run as it would be, on a
transport that sends nothing and only counts (requests, prompt tokens), so the plan is what the step would ask, not
a second list of its prompts. The cost at live and Batch API prices (`judge_prices`, baize.llm.prices) and the wall
time the RPM/TPM limits allow come from those counts. Estimates: prompts at 3 characters a token, completions at
judge_max_tokens (an upper bound); one request per verdict (re-asks come on top); verdicts already cached cost
nothing and are not counted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from baize.llm.endpoint import Completion, estimate_prompt_tokens, gather_bounded
from baize.llm.prices import RoleUsage, cost_usd, model_prices, wall_minutes


class CountingTransport:
    """The judge client's transport for a plan: every request is counted and answered at once with a reply that
    every rubric parses (a score line and both assistants' scores) and score-token logprobs, so each verdict costs
    one request, as a judge that answers in format would."""

    REPLY = "Score: 1\nAssistant 1: 1, Assistant 2: 1"

    def __init__(self):
        self.requests = 0
        self.prompt_tokens = 0

    async def chat(self, model: str, messages: list[dict], usage: RoleUsage | None = None, **params):
        self.requests += 1
        self.prompt_tokens += estimate_prompt_tokens(messages)
        completion = Completion(self.REPLY, "stop", 0, first_token_logprobs={"1": 0.0})
        return completion, RoleUsage()

    async def gather(self, coroutines, limit: int) -> list:
        return await gather_bounded(coroutines, limit)

    async def together(self, *coroutines) -> list:
        return await asyncio.gather(*coroutines)

    async def close(self) -> None:
        pass


def plan_judge(args, transport: CountingTransport, *, what: str, folder: Path) -> dict:
    """The plan of the judged step that ran on `transport`; written to folder/plan.json and returned."""
    requests, prompt_tokens = transport.requests, transport.prompt_tokens
    completion_tokens = requests * args.judge_max_tokens
    live, batch = model_prices(args.judge_prices, args.judge_model)

    def cost(price):
        usd = cost_usd(prompt_tokens, completion_tokens, price)
        return round(usd, 4) if usd is not None else None

    minutes = wall_minutes(requests, prompt_tokens + completion_tokens, args.rpm, args.tpm)
    plan = {
        "step": what,
        "judge": args.judge_model,
        "requests": requests,
        "prompt_tokens": prompt_tokens,
        "completion_tokens_at_most": completion_tokens,
        "cost_usd_live": cost(live),
        "cost_usd_batch": cost(batch),
        "wall_minutes_at_limits": round(minutes, 1) if minutes is not None else None,
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
