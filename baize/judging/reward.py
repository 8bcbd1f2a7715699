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
after the re-asks gets None, and is counted."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from baize.judging.client import JudgeArguments, JudgeClient
from baize.judging.compare import score_each
from baize.judging.rubrics import POINTWISE_100, Rubric, render_context
from baize.judging.step import JudgedStep


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

    def __init__(self, args: JudgeArguments, cache_path: str | Path, rubric: Rubric = POINTWISE_100):
        self.rubric = rubric
        self.__name__ = f"judge_{rubric.name}"  # TRL names the reward's logged columns after the function
        self.step = JudgedStep(replace(args, judge_batch=False), Path(cache_path), what="completions", desc="reward",
                               unit="completion", label=lambda item: item[0],
                               describe=lambda item: f"completion {item[0]}")  # fmt: skip
        self.counts = {"completions": 0, "unscored": 0, "cache_hits": 0, "requests": 0}

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float | None]:
        items = [(str(i), render_context(as_messages(p)), completion_text(c))
                 for i, (p, c) in enumerate(zip(prompts, completions, strict=True))]  # fmt: skip
        rewards: list[float | None] = [None] * len(items)

        async def judge(client: JudgeClient, item: tuple) -> float | None:
            (verdict,) = await score_each(client, self.rubric, item[1], [item[2]])
            return verdict.value

        def keep(item: tuple, value: float | None) -> None:
            rewards[int(item[0])] = float(value) if value is not None else None

        stats = self.step.run(items, judge, keep)
        self.counts["completions"] += len(items)
        self.counts["unscored"] += sum(reward is None for reward in rewards)
        self.counts["cache_hits"] += stats["cache_hits"]
        self.counts["requests"] += stats["usage"]["calls"]
        return rewards
