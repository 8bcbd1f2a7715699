"""The judge as a reward for TRL's online trainers. `GRPOTrainer` and online DPO take `reward_funcs`, callables
(prompts, completions, **kwargs) -> one float per completion (None where a function has no reward for it; TRL
leaves it out of that function's mean), and TRL has no LLM judge of its own any more.

`JudgeReward` is such a callable over the one judged step (baize.judging.step). So a reward gets everything a
verdict gets:
- the rubric's strict parsing and its re-ask (SDF's pointwise 1-100 by default, probability-weighted under
  `judge_scoring: expected`);
- the verdict cache, under SDF's own key: a completion seen before is never paid twice, across restarts too;
- the concurrency and the RPM/TPM limits;
- the one-line failure naming the judge's URL.

Batch API batches are off: an online trainer needs its rewards now. A completion whose verdict does not parse
after the re-asks gets None, and is counted.

A budget (`max_cost` in USD at the judge's prices, `max_tokens`) holds over every run of the same folder: the spend
of the verdicts actually asked is kept beside the cache (`*_spend.json`), and once it reaches a budget the next call
stops the training in one line saying the spend (the last checkpoint and every verdict stay; a re-run with a larger
budget goes on). The check is before each call, so the spend can pass the budget by one call's completions."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from baize.io.errors import BudgetReached, UsageError
from baize.io.jsonl import write_text_atomically
from baize.judging.client import JudgeArguments, JudgeClient
from baize.judging.compare import score_each
from baize.judging.rubrics import POINTWISE_100, Rubric, render_context
from baize.judging.step import JudgedStep
from baize.llm.prices import RoleUsage, cost_usd, model_prices


def as_messages(prompt) -> list[dict]:
    """A TRL prompt: conversational (a list of messages) or plain text (one user turn)."""
    return list(prompt) if isinstance(prompt, list | tuple) else [{"role": "user", "content": str(prompt)}]


def completion_text(completion) -> str:
    """A TRL completion: conversational (a list of messages: the assistant's content) or plain text."""
    if isinstance(completion, list | tuple):
        return "".join(message.get("content") or "" for message in completion if message.get("role") == "assistant")
    return str(completion)


class JudgeReward:
    """A `reward_funcs` entry: the judge's score of each completion (the rubric's scale), None where it has none."""

    def __init__(self, args: JudgeArguments, cache_path: str | Path, rubric: Rubric = POINTWISE_100, *,
                 max_cost: float | None = None, max_tokens: int | None = None, process_index: int = 0):  # fmt: skip
        """`process_index`: under `accelerate launch` every process scores its own completions, with a cache and a
        spend file of its own beside `cache_path` (`.rankN`); the budget counts every process's spend."""
        self.rubric, self.max_cost, self.max_tokens = rubric, max_cost, max_tokens
        base = Path(cache_path)
        if process_index:
            cache_path = base.with_name(f"{base.stem}.rank{process_index}{base.suffix}")
        self.spend_path = Path(cache_path).with_name(Path(cache_path).stem + "_spend.json")
        self.spend_pattern = (base.parent, f"{base.stem}*_spend.json")
        self.spent = RoleUsage(**json.loads(self.spend_path.read_text())) if self.spend_path.exists() else RoleUsage()
        self.price, _ = model_prices(args.judge_prices, args.judge_model or "")
        if max_cost is not None and self.price is None:
            raise UsageError(f"max_cost needs the judge's price: add {args.judge_model!r} to judge_prices (USD per "
                             'million tokens, e.g. {"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6}})')  # fmt: skip
        self.__name__ = f"judge_{rubric.name}"  # TRL names the reward's logged columns after the function
        self.step = JudgedStep(replace(args, judge_batch=False), Path(cache_path), what="completions", desc="reward",
                               unit="completion", label=lambda item: item[0],
                               describe=lambda item: f"completion {item[0]}")  # fmt: skip
        self.counts = {"completions": 0, "unscored": 0, "cache_hits": 0, "requests": 0}

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float | None]:
        items = [(str(i), render_context(as_messages(p)), completion_text(c))
                 for i, (p, c) in enumerate(zip(prompts, completions, strict=True))]  # fmt: skip
        self.check_budget()
        rewards: list[float | None] = [None] * len(items)

        async def judge(client: JudgeClient, item: tuple) -> float | None:
            (verdict,) = await score_each(client, self.rubric, item[1], [item[2]])
            return verdict.value

        def keep(item: tuple, value: float | None) -> None:
            rewards[int(item[0])] = float(value) if value is not None else None

        stats = self.step.run(items, judge, keep, done=self.record_spend)  # spend kept also when requests failed
        self.counts["completions"] += len(items)
        self.counts["unscored"] += sum(reward is None for reward in rewards)
        self.counts["cache_hits"] += stats["cache_hits"]
        self.counts["requests"] += stats["usage"]["calls"]
        return rewards

    def check_budget(self) -> None:
        spent = RoleUsage(**self.spent.as_dict())
        folder, pattern = self.spend_pattern
        for path in folder.glob(pattern):  # the other processes' spend
            if path != self.spend_path:
                spent.add(RoleUsage(**json.loads(path.read_text())))
        spent_tokens = spent.prompt_tokens + spent.completion_tokens
        for reason, value, limit in (("max_cost", spent.cost_usd, self.max_cost),
                                     ("max_tokens", spent_tokens, self.max_tokens)):  # fmt: skip
            if limit is not None and value >= limit:
                raise BudgetReached(reason, (
                    f"the judge's {reason} {limit} is spent: ${spent.cost_usd:.4f} and {spent_tokens} tokens on "
                    f"{spent.calls} requests over every run ({self.spend_path}); the training stopped at this "
                    f"step, its last checkpoint and every verdict are kept: raise {reason} and re-run to go on"))  # fmt: skip

    def record_spend(self, stats: dict) -> None:
        """The verdicts asked in this call, at the judge's live prices (the Batch API is off), kept over runs."""
        usage = stats["usage"]
        cost = cost_usd(usage["prompt_tokens"], usage["completion_tokens"], self.price) or 0.0
        self.spent.add(RoleUsage(usage["calls"], usage["prompt_tokens"], usage["completion_tokens"], cost))
        write_text_atomically(self.spend_path, json.dumps(self.spent.as_dict(), indent=2) + "\n")
