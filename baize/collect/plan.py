"""`baize collect --plan true`: what a collection would send and cost, without sending anything.

Per dialogue: the mean requests, prompt and completion tokens of the dialogues this folder already holds (its
journal's usage) when there are some, else the recipe's limits (prompt estimates from the filled templates at 3
characters a token, completions at max_tokens: an upper bound). Then for the seeds still to collect: requests,
tokens, the cost at live and at Batch API prices, the wall time the configured RPM/TPM allow, and with max_cost how
many seeds fit. The plan is printed and written as plan.json; a run afterwards puts its own figures beside it in
report.json (`plan_vs_actual`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from baize.collect.config import CollectConfig
from baize.collect.journal import iter_journals
from baize.collect.selfchat import TRANSCRIPT_PROMPT, USER_PROMPT, fill
from baize.llm.endpoint import estimate_prompt_tokens
from baize.llm.prices import cost_usd, model_prices, wall_minutes

PLAN_FILE = "plan.json"
UNBOUNDED_COMPLETION = 1024  # assumed when a role has no max_tokens


def measured_per_dialogue(output_dir: Path) -> dict | None:
    """Mean calls, prompt and completion tokens of the finished dialogues in `output_dir` (None: none yet)."""
    count = calls = prompt = completion = 0
    for entry in iter_journals(output_dir):
        usage = entry.get("usage") or {}
        if usage.get("calls"):
            count += 1
            calls += usage["calls"]
            prompt += usage.get("prompt_tokens", 0)
            completion += usage.get("completion_tokens", 0)
    if not count:
        return None
    return {"dialogues": count, "calls": calls / count, "prompt_tokens": prompt / count,
            "completion_tokens": completion / count}  # fmt: skip


def from_limits(config: CollectConfig, seeds: list[str]) -> dict:
    """Per dialogue from the recipe alone: the filled prompts' estimates, completions at their max_tokens."""
    seeds = seeds or ["an example seed question of typical length"]
    assistant = config.assistant_max_tokens or UNBOUNDED_COMPLETION
    if config.mode == "transcript":
        template = config.transcript_prompt or TRANSCRIPT_PROMPT
        prompt = sum(estimate_prompt_tokens([{"content": fill(template, s)}]) for s in seeds) / len(seeds)
        return {"calls": 1, "prompt_tokens": prompt, "completion_tokens": assistant}
    user = config.user_max_tokens or UNBOUNDED_COMPLETION
    template = config.user_prompt or USER_PROMPT
    base = sum(estimate_prompt_tokens([{"content": fill(template, s, config.end_marker)}]) for s in seeds) / len(seeds)
    system = estimate_prompt_tokens([{"content": config.assistant_system_prompt or ""}])
    calls = prompt = completion = 0
    for round_ in range(config.max_rounds):  # every round at its longest: the transcript grows by both turns
        history = round_ * (user + assistant)
        if not (round_ == 0 and config.seed_as_first_question):
            calls, prompt, completion = calls + 1, prompt + base + history, completion + user
        calls, prompt, completion = calls + 1, prompt + system + history + user, completion + assistant
    return {"calls": calls, "prompt_tokens": prompt, "completion_tokens": completion}


def cost(per: dict, price: dict | None) -> float | None:
    return cost_usd(per["prompt_tokens"], per["completion_tokens"], price)


def plan_collection(config: CollectConfig, todo: int, seed_sample: list[str], billed_usd: float) -> dict:
    output_dir = Path(config.output_dir)
    measured = measured_per_dialogue(output_dir) if config.mode != "alpaca" else None
    if config.mode == "alpaca":
        per, basis = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}, "alpaca mode: no teacher calls"
    elif measured:
        per, basis = measured, f"measured: the mean of the {measured['dialogues']} dialogues already in {output_dir}"
    else:
        per, basis = (
            from_limits(config, seed_sample),
            "the recipe's limits (completions at max_tokens: an upper bound)",
        )
    live, batch = model_prices(config.prices, config.teacher_model)
    per_dialogue = {**{k: round(v, 1) for k, v in per.items() if k != "dialogues"},
                    "cost_usd_live": cost(per, live), "cost_usd_batch": cost(per, batch)}  # fmt: skip
    tokens = todo * (per["prompt_tokens"] + per["completion_tokens"])
    requests = todo * per["calls"]
    minutes = wall_minutes(requests, tokens, config.rpm, config.tpm)
    plan = {
        "seeds_to_collect": todo,
        "basis": basis,
        "per_dialogue": per_dialogue,
        "requests": round(requests),
        "prompt_tokens": round(todo * per["prompt_tokens"]),
        "completion_tokens": round(todo * per["completion_tokens"]),
        "cost_usd_live": round(todo * per_dialogue["cost_usd_live"], 4) if live else None,
        "cost_usd_batch": round(todo * per_dialogue["cost_usd_batch"], 4) if batch else None,
        "wall_minutes_at_limits": round(minutes, 1) if minutes is not None else None,
        "concurrency": config.concurrency,
        "priced": live is not None,
    }
    if config.max_cost is not None:
        each = per_dialogue["cost_usd_batch" if config.batch else "cost_usd_live"]
        left = max(0.0, config.max_cost - billed_usd)
        plan["seeds_within_max_cost"] = min(todo, math.floor(left / each)) if each else todo
    (output_dir / PLAN_FILE).parent.mkdir(parents=True, exist_ok=True)
    (output_dir / PLAN_FILE).write_text(json.dumps(plan, indent=2) + "\n")
    return plan


def describe(plan: dict) -> str:
    per = plan["per_dialogue"]
    money = (f"${plan['cost_usd_live']:,.4f} live, ${plan['cost_usd_batch']:,.4f} as Batch API batches"
             if plan["priced"] else "cost unknown (no `prices` entry for the teacher)")  # fmt: skip
    wall = (f"at least {plan['wall_minutes_at_limits']:,} minutes at the RPM/TPM limits"
            if plan["wall_minutes_at_limits"] is not None else "wall time set by the endpoint (no RPM/TPM limit)")  # fmt: skip
    line = (f"plan: {plan['seeds_to_collect']:,} seeds, {plan['requests']:,} requests, "
            f"{plan['prompt_tokens']:,} prompt + {plan['completion_tokens']:,} completion tokens; {money}; {wall}; "
            f"per dialogue {per['calls']} calls, {per['prompt_tokens']:,} + {per['completion_tokens']:,} tokens "
            f"({plan['basis']})")  # fmt: skip
    if "seeds_within_max_cost" in plan:
        line += f"; max_cost fits {plan['seeds_within_max_cost']:,} seeds"
    return line + "; nothing was sent"


def plan_vs_actual(output_dir: Path, run: dict, report: dict) -> dict | None:
    """This run's figures per dialogue beside the plan's (ratios actual / planned)."""
    path = Path(output_dir) / PLAN_FILE
    done = run.get("dialogues") or 0
    if not path.exists() or not done:
        return None
    planned = json.loads(path.read_text())["per_dialogue"]
    actual = report.get("this_run_usage") or {}
    if not actual.get("calls"):
        return None
    ratios = {}
    for key in ("calls", "prompt_tokens", "completion_tokens"):
        if planned.get(key):
            ratios[key] = round(actual[key] / done / planned[key], 3)
    return {"planned_per_dialogue": planned, "actual_per_dialogue": {k: round(actual[k] / done, 1) for k in
            ("calls", "prompt_tokens", "completion_tokens")}, "actual_over_planned": ratios}  # fmt: skip
