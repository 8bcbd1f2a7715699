"""The one LLM judge of SDF (`baize sdf`) and evaluation (`baize eval`): rubrics (template, parser, re-ask reminder,
scale, reference) asked by one verdict loop through the shared endpoint client, with re-asks, both orders, an
on-disk verdict cache, a progress bar, request-error counting and Batch API batches.

HTTP retries (429, 5xx, time-outs; Retry-After honoured) are the openai client's own. The collection stage's
rate limiter and usage type are baize.llm.endpoint's (shared with collection): a 429/503 pauses every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from baize.io.jsonl import JSONLAppender, read_jsonl
from baize.judging.rubrics import JUDGE_SYSTEM, Rubric, expected_score
from baize.llm.batch import batch_label
from baize.llm.endpoint import EndpointArguments, describe_error
from baize.llm.prices import RoleUsage
from baize.llm.roles import EndpointRole
from baize.modeling.loading import resolve_model_name

logger = logging.getLogger(__name__)


@dataclass
class JudgeArguments(EndpointArguments):
    """The judge endpoint and how it is asked; stages subclass this and add their own fields."""

    judge_model: str = field(
        default="gpt-3.5-turbo",
        metadata={"role": "judge", "part": "model", "signs": "judge", "help": "Judge model name at the endpoint."},
    )
    judge_gguf_file: str | None = field(
        default=None,
        metadata={
            "role": "judge",
            "part": "gguf_file",
            "gguf_of": "judge_model",
            "signs": "judge",
            "help": "With judge_model pkg:NAME or a folder: its GGUF file, converted once; the converted folder "
            "is sent as the model name (what a local `transformers serve` loads).",
        },
    )
    judge_base_url: str | None = field(
        default=None,
        metadata={"role": "judge", "part": "base_url", "help": "OpenAI-compatible endpoint (unset: api.openai.com)."},
    )
    judge_api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={
            "role": "judge",
            "part": "api_key_env",
            "help": "Environment variable holding the judge API key (never a file).",
        },
    )
    judge_temperature: float = field(default=0.0, metadata={"signs": "judge", "help": "Judge sampling temperature."})
    judge_max_tokens: int = field(
        default=512, metadata={"signs": "judge", "help": "Judge reply budget (score line + rationale)."}
    )
    judge_parse_retries: int = field(
        default=2,
        metadata={"signs": "judge", "help": "Re-asks (with a format reminder) when a verdict cannot be parsed."},
    )
    judge_concurrency: int = field(default=8, metadata={"help": "Questions / prompts judged at once."})
    judge_batch: bool = field(
        default=False,
        metadata={
            "help": "Send the judge's requests as OpenAI Batch API batches instead of live calls (about half the "
            "price, answers within 24 h); a re-ask goes into the next batch. Request files, batch ids and answers "
            "are kept in judge-batches/ beside the verdicts: a re-run re-attaches to a batch still running."
        },
    )
    judge_scoring: str = field(
        default="parsed",
        metadata={
            "signs": "judge",
            "help": "How a single score (SDF pointwise, eval single grading) is read: `parsed` from the reply's "
            "text; `expected` (G-Eval) as the probability-weighted mean over the score tokens of the first "
            "generated token (the endpoint must return logprobs: OpenAI, vLLM, llama-cpp-python's server); `auto`: expected where the "
            "endpoint sends logprobs, parsed elsewhere. Pair verdicts are always parsed.",
            "choices": ["parsed", "expected", "auto"],
        },
    )
    judge_note: str | None = field(
        default=None,
        metadata={"help": "A note on the judge printed beside its name in every report and summary (e.g. that a "
                  "135M model is a smoke-test judge whose scores show the pipeline, not quality)."},
    )  # fmt: skip
    judge_prices: dict | str | None = field(
        default=None,
        metadata={
            "help": "USD per 1M tokens of the judge, as JSON or YAML: {MODEL: {prompt: .., completion: .., "
            "batch_prompt: .., batch_completion: ..}} (batch prices default to half): the --plan's cost."
        },
    )
    plan: bool = field(
        default=False,
        metadata={
            "help": "Only plan the judge step: requests, tokens, the cost at live and batch prices (judge_prices) and "
            "the wall time at the RPM/TPM limits, written to plan.json; nothing is sent."
        },
    )
    skip_preflight: bool = field(
        default=False,
        metadata={
            "help": "Do not check, before the first answer is sampled, that every endpoint the run will call has its "
            "key and answers one cheap request (GET /models)."
        },
    )
    judge_batch_poll_interval: float = field(
        default=30.0,
        metadata={"help": "Seconds before the first status poll of a judge batch; each wait is 1.5x longer."},
    )


@dataclass
class Verdict:
    """One verdict: the parsed value (a score, or a pair of scores) and every reply it took."""

    value: float | tuple[float, float] | None
    rationale: str
    attempts: int
    errors: list[str]  # the reason of every reply that gave no verdict, in order
    replies: list[str]  # every raw reply, the rejected ones included
    cached: bool | None = None  # from the verdict cache (None: no cache asked)
    scoring: str = "parsed"  # or "expected": `value` is the probability-weighted score (judge_scoring)
    parsed_value: float | None = None  # with expected scoring: the score parsed from the text, for comparison

    def as_dict(self) -> dict:
        """The record kept in judged.jsonl, judgements.jsonl and the verdict cache (with `scoring` and the parsed
        score where the value is a probability-weighted one)."""
        record = {"value": self.value, "rationale": self.rationale, "attempts": self.attempts,
                  "errors": self.errors, "replies": self.replies}  # fmt: skip
        if self.scoring == "expected":
            record.update(scoring="expected", parsed_value=self.parsed_value)
        if self.cached is not None:
            record["cached"] = self.cached
        return record

    @classmethod
    def from_dict(cls, record: dict) -> Verdict:
        value = record["value"]
        return cls(tuple(value) if isinstance(value, list) else value, record["rationale"], record["attempts"],
                   list(record["errors"]), list(record["replies"]), scoring=record.get("scoring", "parsed"),
                   parsed_value=record.get("parsed_value"))  # fmt: skip


# --------------------------------------------------------------------------- the client and the verdict loop


JUDGE_BATCH_FOLDER = "judge-batches"


@dataclass
class JudgeStats:
    """What one judge run did: items judged, items whose requests failed (retried by the next run), re-asks by
    reason, the usage."""

    judged: int = 0
    request_errors: int = 0
    parse_errors: dict[str, int] = field(default_factory=dict)
    usage: RoleUsage = field(default_factory=RoleUsage)
    last_error: str | None = None

    def as_dict(self) -> dict:
        stats = {"judged": self.judged, "request_errors": self.request_errors, "parse_errors": self.parse_errors,
                 "usage": self.usage.as_dict()}  # fmt: skip
        if self.last_error is not None:
            stats["last_error"] = self.last_error
        return stats


class JudgeClient:
    """The one judge: the shared endpoint client (baize.llm.endpoint) asking the judge model for verdicts by rubric,
    re-asking with the rubric's reminder when a reply does not parse, both orders for pairs, an optional verdict
    cache, and one loop over the items of a stage (progress bar, request errors, Batch API batches)."""

    def __init__(self, args: JudgeArguments, cache: VerdictCache | None = None, transport=None):
        """`transport`: what carries the requests (default: the judge endpoint; a plan's counting transport)."""
        self.args = args
        role = EndpointRole.of(args, "judge")
        self.model = resolve_model_name(role.model, role.gguf_file)
        self.base_url = role.base_url
        self.cache = cache
        self._asking: dict[str, asyncio.Future] = {}  # verdict key -> the verdict being asked
        self.stats = JudgeStats()
        self.endpoint = transport or role.endpoint(args)

    def use_batches(self, folder: str | Path) -> None:
        """With judge_batch: every request of this client goes into Batch API batches kept in `folder`."""
        if self.args.judge_batch:
            self.endpoint.use_batches(folder, poll_interval=self.args.judge_batch_poll_interval)

    async def verdict(
        self, rubric: Rubric, context: str, *answers: str, reference: str | None = None, key: str | None = None,
        usage: RoleUsage | None = None,
    ) -> Verdict:  # fmt: skip
        """Ask; on an unparseable reply re-ask with it and the rubric's reminder. With a cache and a `key`
        (verdict_key), a verdict asked before costs nothing and a new one is cached as soon as it arrives. The
        calls are charged to the run's usage (`stats.usage`) and to `usage` (e.g. one prompt's)."""
        if key is None or self.cache is None:
            return await self._ask(rubric, context, answers, reference, key, usage)
        asking = self._asking.get(key)
        if asking is not None:  # the same verdict in flight (an equal completion in the same batch): paid once
            verdict = await asyncio.shield(asking)
            if verdict is not None:
                self.cache.hits += 1
                return replace(verdict, cached=True)
        cached = self.cache.get(key)
        if cached is not None:
            return replace(Verdict.from_dict(cached), cached=True)
        batch_label.set(key[:16])  # with judge_batch: the custom_id starts with the verdict key
        self._asking[key] = asking = asyncio.get_running_loop().create_future()
        verdict = None
        try:
            verdict = await self._ask(rubric, context, answers, reference, key, usage)
            return verdict
        finally:  # a failed ask leaves the others waiting on it to ask for themselves
            del self._asking[key]
            asking.set_result(verdict)

    async def _ask(self, rubric: Rubric, context: str, answers: tuple, reference: str | None, key: str | None,
                   usage: RoleUsage | None) -> Verdict:  # fmt: skip
        base = [
            {"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": rubric.prompt(context, *answers, reference=reference)},
        ]
        messages, replies, errors = base, [], []
        expected = self.args.judge_scoring != "parsed" and not rubric.pairwise
        logprobs = {"logprobs": True, "top_logprobs": 20} if expected else {}
        for _ in range(1 + self.args.judge_parse_retries):
            completion, call = await self.endpoint.chat(
                self.model,
                messages,
                self.stats.usage,
                temperature=self.args.judge_temperature,
                max_tokens=self.args.judge_max_tokens,
                **logprobs,
            )
            if usage is not None:
                usage.add(call)
            text = completion.content
            value, error = rubric.parse(text)
            replies.append(text)
            weighted = expected_score(completion.first_token_logprobs, rubric.scale) if expected else None
            if weighted is not None:  # every reply with score tokens has a score: no parse failure, no tie
                verdict = Verdict(
                    weighted, text, len(replies), errors, replies, scoring="expected", parsed_value=value
                )
                return self._finish(key, verdict)
            if self.args.judge_scoring == "expected":
                error = error or "no_score_tokens"
            if error is None:
                break
            errors.append(error)
            messages = [*base, {"role": "assistant", "content": text}, {"role": "user", "content": rubric.reminder}]
        return self._finish(key, Verdict(value, replies[-1], len(replies), errors, replies))

    def _finish(self, key: str | None, verdict: Verdict) -> Verdict:
        """A verdict just asked: its re-asks counted by reason, and cached where there is a cache."""
        for error in verdict.errors:
            self.stats.parse_errors[error] = self.stats.parse_errors.get(error, 0) + 1
        if key is not None and self.cache is not None:
            self.cache.put(key, verdict.as_dict())
            verdict.cached = False
        return verdict

    async def both_orders(
        self, rubric: Rubric, context: str, a: str, b: str, keys: tuple[str | None, str | None] = (None, None),
        usage: RoleUsage | None = None,
    ) -> tuple[Verdict, Verdict]:  # fmt: skip
        """a vs b and b vs a (position bias shows as disagreement), asked together."""
        ab, ba = await self.endpoint.together(
            self.verdict(rubric, context, a, b, key=keys[0], usage=usage),
            self.verdict(rubric, context, b, a, key=keys[1], usage=usage),
        )
        return ab, ba

    async def judge_all(
        self, items: list, judge_item: Callable[[object], Awaitable[None]], *, label: Callable[[object], str],
        describe: Callable[[object], str], desc: str, unit: str, progress: bool = True,
    ) -> JudgeStats:  # fmt: skip
        """Run `judge_item` on every item, `judge_concurrency` at a time (all of them batch by batch with
        judge_batch); an item whose requests fail after the client's retries is counted and left for the next
        run. `judge_item` keeps its results and counts its verdicts' re-asks."""
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc=desc, unit=unit, disable=not progress)

        async def one(item) -> None:
            batch_label.set(label(item))  # with judge_batch: its requests' custom_ids start with this
            try:
                await judge_item(item)
            except Exception as error:  # openai.APIError after the client's retries, a malformed reply
                self.stats.request_errors += 1
                self.stats.last_error = describe_error(error)
                logger.warning("judge: %s failed: %s", describe(item), error)
                return
            finally:
                bar.update(1)
            self.stats.judged += 1

        try:
            await self.endpoint.gather((one(item) for item in items), self.args.judge_concurrency)
        finally:
            bar.close()
        return self.stats

    async def close(self) -> None:
        await self.endpoint.close()


# --------------------------------------------------------------------------- the verdict cache


def verdict_key(question: str, answers: list[str], judge: JudgeArguments, prompt_template: str) -> str:
    """What makes two verdicts the same: the question, the answers in the order shown, the judge model and how it
    is asked (temperature, reply budget, re-asks, the scoring where it is not the default), the prompt."""
    asked = [judge.judge_model, judge.judge_temperature, judge.judge_max_tokens, judge.judge_parse_retries]
    if judge.judge_scoring != "parsed":  # the default way of asking is not part of the key
        asked.append(judge.judge_scoring)
    payload = json.dumps([question, answers, asked, prompt_template], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


class VerdictCache:
    """Verdicts on disk (JSONL, one {key, verdict} per line, appended durably as they arrive): asking the same
    judge the same question about the same answers with the same prompt again costs nothing."""

    def __init__(self, path: str | Path, read_only: bool = False):
        """`read_only`: new verdicts are kept in memory only (a plan reads the cache and writes nothing)."""
        self.path = Path(path)
        self.entries = {row["key"]: row["verdict"] for row in read_jsonl(self.path)}
        self.read_only = read_only
        self.hits = self.misses = 0
        self._appender: JSONLAppender | None = None

    def get(self, key: str) -> dict | None:
        verdict = self.entries.get(key)
        if verdict is None:
            self.misses += 1
        else:
            self.hits += 1
        return verdict

    def put(self, key: str, verdict: dict) -> None:
        if self.read_only:
            self.entries[key] = verdict
            return
        if self._appender is None:
            self._appender = JSONLAppender(self.path, writer="a `baize eval` judge cache")
        self._appender.append({"key": key, "verdict": verdict})
        self.entries[key] = verdict

    def close(self) -> None:
        if self._appender is not None:
            self._appender.close()
            self._appender = None
