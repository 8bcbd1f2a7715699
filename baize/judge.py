"""The one LLM judge of SDF (`baize sdf`) and evaluation (`baize eval`): rubrics (template, parser, re-ask reminder,
scale, reference) asked by one verdict loop through the shared endpoint client, with re-asks, both orders, an
on-disk verdict cache, a progress bar, request-error counting and Batch API batches.

HTTP retries (429, 5xx, time-outs; Retry-After honoured) are the openai client's own. The collection stage's
rate limiter and usage type are baize.endpoint's (shared with collection): a 429/503 pauses every request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from baize.batch import batch_label
from baize.endpoint import Endpoint, RateLimiter, RoleUsage, describe_error, resolve_model_name
from baize.jsonl import JSONLAppender, read_jsonl

logger = logging.getLogger(__name__)

JUDGE_SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
# Two answers to the last user message, scored side by side (the Vicuna/Baize review prompt, any scale).
PAIR_TEMPLATE = """[Conversation]
{context}

[The Start of Assistant 1's Answer]
{answer_1}
[The End of Assistant 1's Answer]

[The Start of Assistant 2's Answer]
{answer_2}
[The End of Assistant 2's Answer]

[System]
We would like to request your feedback on the performance of two AI assistants in response to the user's last \
message in the conversation displayed above.
Please rate the helpfulness, relevance, accuracy, and level of detail of their responses. Each assistant receives \
an overall score on a scale of 1 to {scale}, where a higher score indicates better overall performance.
Please first output a single line containing only two values indicating the scores for Assistant 1 and 2, \
respectively. The two scores are separated by a space. In the subsequent line, please provide a comprehensive \
explanation of your evaluation, avoiding any potential bias and ensuring that the order in which the responses \
were presented does not affect your judgment."""


# One answer graded on its own (MT-Bench's single-answer grading), optionally against a reference answer.
SINGLE_TEMPLATE = """[Conversation]
{context}
{reference_block}
[The Start of the Assistant's Answer]
{answer}
[The End of the Assistant's Answer]

[System]
Please act as an impartial judge and evaluate the quality of the assistant's answer to the user's last message in \
the conversation displayed above. Consider its helpfulness, relevance, accuracy, depth, creativity and level of \
detail{reference_instruction}. Be as objective as possible.
Please first output a single line containing only the score, an integer from 1 to {scale}, where a higher score \
indicates a better answer. In the subsequent line, please explain your evaluation."""

REFERENCE_BLOCK = """
[The Start of Reference Answer]
{reference}
[The End of Reference Answer]
"""
REFERENCE_INSTRUCTION = (
    ". The reference answer is correct: compare the assistant's answer with it, identify any mistakes, and let "
    "correctness weigh most"
)


def single_template(scale: int, reference: bool) -> str:
    """SINGLE_TEMPLATE on a 1-`scale` scale, with or without the reference answer, still with {context},
    {answer} (and {reference}) to fill."""
    return (
        SINGLE_TEMPLATE.replace("{scale}", str(scale))
        .replace("{reference_block}", REFERENCE_BLOCK if reference else "")
        .replace("{reference_instruction}", REFERENCE_INSTRUCTION if reference else "")
    )


def single_reminder(scale: int) -> str:
    return f"Please answer again: the first line must contain only the score, an integer from 1 to {scale}."


def pair_template(scale: int) -> str:
    """PAIR_TEMPLATE on a 1-`scale` scale, still with {context}, {answer_1} and {answer_2} to fill."""
    return PAIR_TEMPLATE.replace("{scale}", str(scale))


def pair_reminder(scale: int) -> str:
    return (
        f"Please answer again: the first line must contain only two integers from 1 to {scale} separated by a "
        "space (the scores of Assistant 1 and Assistant 2)."
    )


def render_context(messages: list[dict]) -> str:
    names = {"user": "User", "assistant": "Assistant", "system": "System"}
    return "\n".join(f"{names.get(m['role'], m['role'])}: {m['content']}" for m in messages)


@dataclass
class JudgeArguments:
    """The judge endpoint and how it is asked; stages subclass this and add their own fields."""

    judge_model: str = field(default="gpt-3.5-turbo", metadata={"help": "Judge model name at the endpoint."})
    judge_gguf_file: str | None = field(
        default=None,
        metadata={
            "help": "With judge_model pkg:NAME or a folder: its GGUF file, converted once; the converted folder "
            "is sent as the model name (what a local `transformers serve` loads)."
        },
    )
    judge_base_url: str | None = field(
        default=None, metadata={"help": "OpenAI-compatible endpoint (unset: api.openai.com)."}
    )
    judge_api_key_env: str = field(
        default="OPENAI_API_KEY", metadata={"help": "Environment variable holding the judge API key (never a file)."}
    )
    judge_temperature: float = field(default=0.0, metadata={"help": "Judge sampling temperature."})
    judge_max_tokens: int = field(default=512, metadata={"help": "Judge reply budget (score line + rationale)."})
    judge_parse_retries: int = field(
        default=2, metadata={"help": "Re-asks (with a format reminder) when a verdict cannot be parsed."}
    )
    judge_concurrency: int = field(default=8, metadata={"help": "Questions / prompts judged at once."})
    max_retries: int = field(default=6, metadata={"help": "HTTP retries of the openai client (429, 5xx, timeouts)."})
    timeout: float = field(default=120.0, metadata={"help": "Seconds per request."})
    rpm: float | None = field(default=None, metadata={"help": "Requests per minute limit."})
    tpm: float | None = field(default=None, metadata={"help": "Tokens per minute limit."})
    judge_batch: bool = field(
        default=False,
        metadata={
            "help": "Send the judge's requests as OpenAI Batch API batches instead of live calls (about half the "
            "price, answers within 24 h); a re-ask goes into the next batch. Request files, batch ids and answers "
            "are kept in judge-batches/ beside the verdicts: a re-run re-attaches to a batch still running."
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


# --------------------------------------------------------------------------- parsing

_NUMBER = r"(\d+(?:\.\d+)?)"
_REFUSAL = re.compile(r"\b(i'?m sorry|i am sorry|i can(?:'|no)t|i am unable|i'm unable|as an ai)\b", re.I)


# Lines of the judge prompts: a reply that repeats them is the prompt echoed back (a small or confused judge),
# and any number in it is not a verdict.
_ECHO = re.compile(
    r"we would like to request your feedback|please act as an impartial judge|\[the (?:start|end) of (?:the )?assistant",
    re.I,
)


def _first_line(text: str) -> str:
    return text.splitlines()[0].strip().strip("*#`_ ").strip()


def _in_range(values: list[float], scale: int) -> bool:
    return all(1 <= v <= scale for v in values)


def parse_score(text: str | None, scale: int = 100) -> tuple[float | None, str | None]:
    """(score, None) or (None, reason): reason is empty, echoed_prompt, wrong_scale, out_of_range, refused or no_score.

    A score counts only when it is stated as the verdict on the asked scale: a first line "85", "Score: 85",
    "**85/100**", "85 out of 100"; else "score: 85" (with the colon) or "85/100" / "85 out of 100" anywhere.
    "8 out of 10" on a 1-100 scale is wrong_scale, and a number merely mentioned ("a score of 100", echoed from
    the prompt) is not a verdict (no_score, so the judge is asked again)."""
    text = (text or "").strip()
    if not text:
        return None, "empty"
    if _ECHO.search(text):
        return None, "echoed_prompt"
    text = re.sub(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]", r"\1", text)  # MT-Bench judges write "Rating: [[8]]"
    denominator = r"(?:\s*(?:/|out\s+of)\s*(\d+))?"
    match = re.fullmatch(
        rf"(?:(?:overall|final)\s+)?(?:score|rating)?\s*[:=]?\s*{_NUMBER}{denominator}\.?", _first_line(text), re.I
    )
    if match is None:
        match = re.search(rf"\b(?:score|rating)\s*[:=]\s*\**\s*{_NUMBER}{denominator}", text, re.I)
    if match is None:
        # "NN/scale" or "NN out of scale" anywhere; the same form on another scale is a verdict on the wrong scale
        stated = re.findall(rf"{_NUMBER}\s*(?:/|out\s+of)\s*(\d+)\b", text, re.I)
        on_scale = {float(value) for value, of in stated if int(of) == scale}
        if len(on_scale) == 1:
            value = on_scale.pop()
            return (value, None) if _in_range([value], scale) else (None, "out_of_range")
        if stated and not on_scale:
            return None, "wrong_scale"
        return None, "refused" if _REFUSAL.search(text) else "no_score"
    value, of = float(match.group(1)), match.group(2)
    if of is not None and int(of) != scale:
        return None, "wrong_scale"
    return (value, None) if _in_range([value], scale) else (None, "out_of_range")


def parse_score_pair(text: str | None, scale: int = 100) -> tuple[tuple[float, float] | None, str | None]:
    """((score_1, score_2), None) or (None, reason), from "8 7" / "8, 7" / "8/10 7/10" on the first line, or
    "Assistant 1: 8 ... Assistant 2: 7" anywhere."""
    text = (text or "").strip()
    if not text:
        return None, "empty"
    if _ECHO.search(text):
        return None, "echoed_prompt"
    out_of = rf"(?:\s*/\s*{scale})?"
    match = re.fullmatch(rf"{_NUMBER}{out_of}\s*(?:,|\s|/|and|vs\.?)\s*{_NUMBER}{out_of}\.?", _first_line(text), re.I)
    if match is None:
        match = re.search(rf"assistant\s*1\D{{0,20}}?{_NUMBER}.*?assistant\s*2\D{{0,20}}?{_NUMBER}", text, re.I | re.S)
    if match is None:
        return None, "refused" if _REFUSAL.search(text) else "no_score"
    scores = (float(match.group(1)), float(match.group(2)))
    return (scores, None) if _in_range(list(scores), scale) else (None, "out_of_range")


# --------------------------------------------------------------------------- rubrics


@dataclass(frozen=True)
class Rubric:
    """How the judge is asked for one kind of verdict: the prompt template, the parser of its reply, the re-ask
    reminder, the scale, and whether two answers (`pairwise`) or a reference answer are shown. SDF's pointwise
    and pairwise scores and eval's pair and single-answer grades are rubrics on the one verdict loop."""

    name: str
    template: str  # {context} and {answer}, or {answer_1} and {answer_2}; {reference} where shown
    scale: int
    pairwise: bool
    reminder: str
    reference: bool = False

    def parse(self, text: str | None):
        return parse_score_pair(text, self.scale) if self.pairwise else parse_score(text, self.scale)

    def prompt(self, context: str, *answers: str, reference: str | None = None) -> str:
        if self.pairwise:
            return self.template.format(context=context, answer_1=answers[0], answer_2=answers[1])
        return self.template.format(context=context, answer=answers[0], reference=reference or "")


POINTWISE_100_TEMPLATE = """[Conversation]
{context}

[The Start of Assistant's Answer]
{answer}
[The End of Assistant's Answer]

[System]
We would like to request your feedback on the performance of an AI assistant in response to the user's last \
message in the conversation displayed above.
Please rate the helpfulness, relevance, accuracy, and level of detail of the response. The assistant receives an \
overall score on a scale of 1 to 100, where a higher score indicates better overall performance.
Please first output a single line containing only the score. In the subsequent line, please provide a \
comprehensive explanation of your evaluation."""

# SDF (the paper): one 1-100 score per candidate, or king-of-the-hill pairs on the same scale
POINTWISE_100 = Rubric("pointwise", POINTWISE_100_TEMPLATE, 100, False, single_reminder(100))
PAIR_100 = Rubric("pairwise", pair_template(100), 100, True, pair_reminder(100))


def pair_rubric(scale: int) -> Rubric:
    """Two answers scored side by side (the Vicuna/Baize review prompt): eval's 1-10 pairs."""
    return Rubric(f"pair-{scale}", pair_template(scale), scale, True, pair_reminder(scale))


def single_rubric(scale: int, reference: bool) -> Rubric:
    """One answer graded on its own (MT-Bench), with the reference answer where `reference`."""
    name = f"single-{scale}" + ("-reference" if reference else "")
    return Rubric(name, single_template(scale, reference), scale, False, single_reminder(scale), reference)


@dataclass
class Verdict:
    """One verdict: the parsed value (a score, or a pair of scores) and every reply it took."""

    value: float | tuple[float, float] | None
    rationale: str
    attempts: int
    errors: list[str]  # the reason of every reply that gave no verdict, in order
    replies: list[str]  # every raw reply, the rejected ones included
    cached: bool | None = None  # from the verdict cache (None: no cache asked)

    def as_dict(self) -> dict:
        """The record kept in judged.jsonl, judgements.jsonl and the verdict cache (0.1's layout)."""
        record = {"value": self.value, "rationale": self.rationale, "attempts": self.attempts,
                  "errors": self.errors, "replies": self.replies}  # fmt: skip
        if self.cached is not None:
            record["cached"] = self.cached
        return record

    @classmethod
    def from_dict(cls, record: dict) -> Verdict:
        value = record["value"]
        return cls(tuple(value) if isinstance(value, list) else value, record["rationale"], record["attempts"],
                   list(record["errors"]), list(record["replies"]))  # fmt: skip


# --------------------------------------------------------------------------- the client and the verdict loop


def new_usage() -> RoleUsage:
    return RoleUsage()


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

    def count_reasks(self, verdicts: list[Verdict]) -> None:
        for verdict in verdicts:
            if not verdict.cached:  # a cached verdict's re-asks were counted by the run that asked
                for error in verdict.errors:
                    self.parse_errors[error] = self.parse_errors.get(error, 0) + 1

    def as_dict(self) -> dict:
        stats = {"judged": self.judged, "request_errors": self.request_errors, "parse_errors": self.parse_errors,
                 "usage": self.usage.as_dict()}  # fmt: skip
        if self.last_error is not None:
            stats["last_error"] = self.last_error
        return stats


class JudgeClient:
    """The one judge: the shared endpoint client (baize.endpoint) asking the judge model for verdicts by rubric,
    re-asking with the rubric's reminder when a reply does not parse, both orders for pairs, an optional verdict
    cache, and one loop over the items of a stage (progress bar, request errors, Batch API batches)."""

    def __init__(self, args: JudgeArguments, cache: VerdictCache | None = None):
        self.args = args
        self.model = resolve_model_name(args.judge_model, args.judge_gguf_file)
        self.base_url = args.judge_base_url
        self.cache = cache
        self.stats = JudgeStats()
        self.endpoint = Endpoint(
            self.base_url,
            args.judge_api_key_env,
            limiter=RateLimiter(args.rpm, args.tpm),
            max_retries=args.max_retries,
            timeout=args.timeout,
        )

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
        if key is not None and self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                return replace(Verdict.from_dict(cached), cached=True)
            batch_label.set(key[:16])  # with judge_batch: the custom_id starts with the verdict key
        base = [
            {"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": rubric.prompt(context, *answers, reference=reference)},
        ]
        messages, replies, errors = base, [], []
        for _ in range(1 + self.args.judge_parse_retries):
            completion, call = await self.endpoint.chat(
                self.model,
                messages,
                self.stats.usage,
                temperature=self.args.judge_temperature,
                max_tokens=self.args.judge_max_tokens,
            )
            if usage is not None:
                usage.add(call)
            text = completion.content
            value, error = rubric.parse(text)
            replies.append(text)
            if error is None:
                break
            errors.append(error)
            messages = [*base, {"role": "assistant", "content": text}, {"role": "user", "content": rubric.reminder}]
        verdict = Verdict(value, replies[-1], len(replies), errors, replies)
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
        describe: Callable[[object], str], desc: str, unit: str,
    ) -> JudgeStats:  # fmt: skip
        """Run `judge_item` on every item, `judge_concurrency` at a time (all of them batch by batch with
        judge_batch); an item whose requests fail after the client's retries is counted and left for the next
        run. `judge_item` keeps its results and counts its verdicts' re-asks."""
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc=desc, unit=unit)

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
    is asked (temperature, reply budget, re-asks), the prompt."""
    asked = [judge.judge_model, judge.judge_temperature, judge.judge_max_tokens, judge.judge_parse_retries]
    payload = json.dumps([question, answers, asked, prompt_template], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


class VerdictCache:
    """Verdicts on disk (JSONL, one {key, verdict} per line, appended durably as they arrive): asking the same
    judge the same question about the same answers with the same prompt again costs nothing."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.entries = {row["key"]: row["verdict"] for row in read_jsonl(self.path)}
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
        if self._appender is None:
            self._appender = JSONLAppender(self.path, writer="a `baize eval` judge cache")
        self._appender.append({"key": key, "verdict": verdict})
        self.entries[key] = verdict

    def close(self) -> None:
        if self._appender is not None:
            self._appender.close()
            self._appender = None
