"""The judged step, written once for every stage that asks the judge (SDF's judge, eval's judge, calibration, the
SDF gate): a judge session on a verdict cache (Batch API state beside it with judge_batch), the items judged on the
client's loop with a progress bar, each result handed to the stage as it arrives, and the failure policy: items
whose requests failed after the client's retries are counted, what came is kept (and cached), and the step ends in
one line naming the judge's URL so that re-running the same command asks only for the rest. `plan` runs the very
same step on a counting transport (baize.judging.plan): nothing is sent and nothing is written but plan.json.

A stage gives its items, `judge_item(client, item) -> result` (the verdicts it asks for one item, through the
client) and `keep(item, result)` (what it does with them: append a line, collect a row)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from baize.io.errors import requests_failed
from baize.judging.client import JUDGE_BATCH_FOLDER, JudgeArguments, JudgeClient, VerdictCache
from baize.judging.plan import CountingTransport, describe_plan, plan_judge
from baize.llm.endpoint import describe_url

logger = logging.getLogger(__name__)


@dataclass
class JudgedStep:
    """One stage's judged step: the judge settings, where its verdicts are cached, and how its items are named
    (`what`: the items in the failure line, e.g. "prompts"; `desc`/`unit`: the progress bar; `label`: the start
    of each item's Batch API custom_ids; `describe`: an item in a warning)."""

    args: JudgeArguments
    cache_path: Path
    what: str
    desc: str
    unit: str
    label: Callable[[object], str]
    describe: Callable[[object], str]
    # read once, kept across runs: a reward function runs the step at every training step
    _cache: VerdictCache | None = field(default=None, init=False, repr=False)

    def run(
        self, items: list, judge_item: Callable[[JudgeClient, object], Awaitable], keep: Callable[[object, object], None],
        done: Callable[[dict], None] | None = None,
    ) -> dict:  # fmt: skip
        """Judge every item; `done(stats)` runs before the failure policy (a stage's atomic write of what came)."""
        if self._cache is None:
            self._cache = VerdictCache(self.cache_path)
        cache, hits, misses = self._cache, self._cache.hits, self._cache.misses

        async def session():
            client = JudgeClient(self.args, cache)
            client.use_batches(self.cache_path.parent / JUDGE_BATCH_FOLDER)
            try:
                stats = await self._judge_all(client, items, judge_item, keep)
            finally:
                await client.close()
            return {**stats.as_dict(), "judge": client.model}

        try:
            stats = asyncio.run(session())
        finally:
            cache.close()  # its file is complete; the entries stay for the next run
        stats.update(cache_hits=cache.hits - hits, cache_misses=cache.misses - misses)
        if done is not None:
            done(stats)
        if stats["request_errors"]:  # every verdict that came is cached: the re-run asks only for the rest
            raise requests_failed(f"the judge at {describe_url(self.args.judge_base_url)}", stats["request_errors"],
                                  len(items), self.what, stats["last_error"], "judge_base_url / judge_model")  # fmt: skip
        return stats

    def plan(self, items: list, judge_item: Callable[[JudgeClient, object], Awaitable], *, step: str,
             folder: Path) -> dict:  # fmt: skip
        """The step run on a counting transport over a read-only view of the cache: folder/plan.json."""
        transport = CountingTransport()
        client = JudgeClient(self.args, VerdictCache(self.cache_path, read_only=True), transport=transport)
        asyncio.run(self._judge_all(client, items, judge_item, keep=None, progress=False))
        plan = plan_judge(self.args, transport, what=step, folder=folder)
        logger.info("%s", describe_plan(plan))
        return plan

    async def _judge_all(self, client: JudgeClient, items: list, judge_item, keep, progress: bool = True):
        async def one(item) -> None:
            result = await judge_item(client, item)
            if keep is not None:
                keep(item, result)

        return await client.judge_all(items, one, label=self.label, describe=self.describe, desc=self.desc,
                                      unit=self.unit, progress=progress)  # fmt: skip
