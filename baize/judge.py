"""The LLM judge shared by SDF (`baize sdf`) and evaluation (`baize eval`): any OpenAI-compatible endpoint
through the `openai` client, robust score parsing with re-asks, and an on-disk cache of verdicts.

HTTP retries (429, 5xx, time-outs; Retry-After honoured) are the openai client's own. The collection stage's
rate limiter and usage type are baize.endpoint's (shared with collection): a 429/503 pauses every request.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from baize.endpoint import Completion, Endpoint, RateLimiter, RoleUsage, resolve_model_name
from baize.jsonl import JSONLAppender, read_jsonl

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


# --------------------------------------------------------------------------- the client


def new_usage() -> RoleUsage:
    return RoleUsage()


JUDGE_BATCH_FOLDER = "judge-batches"


class JudgeClient:
    """The shared endpoint client (baize.endpoint) asking one model, plus re-asks when a verdict does not parse.
    Also answers plain chat requests (`complete`), e.g. for a reference model at an endpoint."""

    def __init__(
        self,
        args: JudgeArguments,
        *,
        model: str | None = None,
        gguf_file: str | None = None,
        base_url: str | None = None,
        api_key_env: str | None = None,
    ):
        self.args = args
        self.model = resolve_model_name(model or args.judge_model, gguf_file if model else args.judge_gguf_file)
        self.base_url = base_url or args.judge_base_url
        self.endpoint = Endpoint(
            self.base_url,
            api_key_env or args.judge_api_key_env,
            limiter=RateLimiter(args.rpm, args.tpm),
            max_retries=args.max_retries,
            timeout=args.timeout,
        )

    def use_batches(self, folder: str | Path) -> None:
        """With judge_batch: every request of this client goes into Batch API batches kept in `folder`; the stage
        runs its coroutines through `self.endpoint.gather` so that they are sent together."""
        if self.args.judge_batch:
            self.endpoint.use_batches(folder, poll_interval=self.args.judge_batch_poll_interval)

    async def call(
        self,
        messages: list[dict],
        usage: RoleUsage,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> str:
        return (await self.complete(messages, usage, temperature=temperature, max_tokens=max_tokens)).content

    async def complete(
        self,
        messages: list[dict],
        usage: RoleUsage,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> Completion:
        """One chat completion (content, finish_reason, completion_tokens); its usage is added to `usage`."""
        completion, _ = await self.endpoint.chat(
            self.model,
            messages,
            usage,
            temperature=self.args.judge_temperature if temperature is None else temperature,
            max_tokens=max_tokens or self.args.judge_max_tokens,
        )
        return completion

    async def verdict(self, prompt: str, parse, reminder: str, usage: dict) -> dict:
        """Ask; on an unparseable verdict re-ask with the bad reply and a format reminder. All replies are kept."""
        base = [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": prompt}]
        messages, replies, errors = base, [], []
        for _ in range(1 + self.args.judge_parse_retries):
            text = await self.call(messages, usage)
            value, error = parse(text)
            replies.append(text)
            if error is None:
                break
            errors.append(error)
            messages = [*base, {"role": "assistant", "content": text}, {"role": "user", "content": reminder}]
        return {
            "value": value,
            "rationale": replies[-1],
            "attempts": len(replies),
            "errors": errors,  # the reason of every reply that gave no verdict, in order
            "replies": replies,  # every raw reply, the rejected ones included
        }

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
