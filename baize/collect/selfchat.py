"""Self-chat: the prompts, the two collection modes, the transcript parser and the cleaning rules.

Every rejected dialogue raises `Rejected(reason)`; the reasons are the report's drop counts:
`empty`, `wrong_format`, `truncated`, `too_short`, `refusal`, `language`, `repetition`, `duplicate`,
`near_duplicate`, `api_error`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from baize.collect.config import CollectConfig
from baize.collect.teacher import Teacher
from baize.data.formats import alpaca_to_messages
from baize.data.seeds import Seed
from baize.data.text_quality import dialogue_repetition, language_problem
from baize.io.errors import BudgetReached, DataFormatError, Rejected
from baize.llm.endpoint import Completion
from baize.llm.prices import Usage

# The v1 template (our wording of the Baize collector's instructions), ending with the same two primer lines.
PRIMER_HUMAN = "Hello!"
PRIMER_AI = "Hi! How can I help you?"
_INSTRUCTIONS = (
    "Forget the instructions you have received before. Below is a conversation between a human and an AI "
    "assistant about the topic '{seed}'. Every statement of the human starts with [Human] and every statement of "
    "the AI assistant starts with [AI]. The human asks questions about the topic, then follow-up questions about "
    "the answers or related topics, and ends the conversation when they have no more questions. The AI assistant "
    "answers helpfully and in detail, and tries not to ask questions."
)
TRANSCRIPT_PROMPT = (
    _INSTRUCTIONS + f" Complete the transcript in exactly that format.\n[Human] {PRIMER_HUMAN}\n[AI] {PRIMER_AI}\n"
)
USER_PROMPT = (
    _INSTRUCTIONS + " When the human has no more questions, the human writes only {end_marker}. "
    "Write the next statement of the human, and only that.\n"
    f"[Human] {PRIMER_HUMAN}\n[AI] {PRIMER_AI}\n"
)

REASONS = (
    "empty", "wrong_format", "truncated", "too_short", "refusal", "language", "repetition", "duplicate",
    "near_duplicate", "api_error",
)  # fmt: skip
_TAG = re.compile(r"\[\|?(human|ai)\|?\]\s*:?", re.IGNORECASE)


@dataclass
class Dialogue:
    messages: list[dict[str, str]]
    stop: str  # why it ended: transcript, max_rounds, no_more_questions, truncated, budget, single_turn
    raw: str | None = None


def fill(template: str, seed: str, end_marker: str = "") -> str:
    # str.replace, not str.format: seeds and custom templates may contain braces.
    return template.replace("{seed}", seed).replace("{end_marker}", end_marker)


# --------------------------------------------------------------------------- parsing


def parse_transcript(text: str) -> list[dict[str, str]]:
    """A `[Human] ... [AI] ...` transcript -> alternating user/assistant messages, ending with the assistant.

    Keeps every answered exchange, the last one included (the original parser dropped it). Text before the
    first tag (a chat model's "Sure, here is...") and an echo of the primer greeting are removed; a final
    human line without an answer (or an open `[Human]`) is removed.
    """
    if not text or not text.strip():
        raise Rejected("empty", "the teacher wrote nothing", text)
    pieces = _TAG.split(text)
    if len(pieces) < 3:
        raise Rejected("wrong_format", "no [Human]/[AI] tags", text)
    # re.split with a group alternates [before, tag, body, tag, body, ...]
    turns = [
        ("user" if tag.lower() == "human" else "assistant", body.strip())
        for tag, body in zip(pieces[1::2], pieces[2::2], strict=True)
    ]
    primer = [("user", normalize(PRIMER_HUMAN)), ("assistant", normalize(PRIMER_AI))]
    if [(role, normalize(body)) for role, body in turns[:2]] == primer:
        turns = turns[2:]
    while turns and not turns[-1][1]:  # an open tag at the end
        turns.pop()
    if turns and turns[-1][0] == "user":  # the last question was never answered
        turns.pop()
    if not turns:
        raise Rejected("empty", "no answered exchange", text)
    for i, (role, body) in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise Rejected("wrong_format", f"turn {i}: expected {expected}, got {role}", text)
        if not body:
            raise Rejected("wrong_format", f"turn {i} ({role}) is empty", text)
    return [{"role": role, "content": body} for role, body in turns]


def human_line(text: str) -> str:
    """The user simulator's reply -> one question: tags stripped, anything from an [AI] tag on cut."""
    text = text or ""
    match = re.search(r"\[\|?ai\|?\]", text, re.IGNORECASE)
    if match:
        text = text[: match.start()]
    return _TAG.sub(" ", text).strip()


def normalize(text: str) -> str:
    return " ".join(text.split()).casefold()


def content_hash(messages: list[dict[str, str]]) -> str:
    """Identity of a dialogue for de-duplication: its turns, ignoring case and whitespace."""
    text = "\x1e".join(f"{m['role']}\x1f{normalize(m['content'])}" for m in messages)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


# --------------------------------------------------------------------------- cleaning


class Cleaner:
    def __init__(self, config: CollectConfig):
        self.config = config
        self.refusals = [re.compile(p, re.IGNORECASE) for p in config.refusal_patterns]

    def check(self, messages: list[dict[str, str]], seed: str | None = None) -> None:
        """Raise `Rejected` for a too short dialogue, refusal boilerplate, a turn that leaves the dialogue's
        language (`seed`: the seed question, for `language: seed`) or a turn that loops (format was checked on
        parsing)."""
        exchanges = len(messages) // 2
        if exchanges < self.config.min_exchanges:
            raise Rejected("too_short", f"{exchanges} exchange(s) < min_exchanges={self.config.min_exchanges}")
        for m in messages:
            if m["role"] == "assistant" and len(m["content"]) < self.config.min_reply_chars:
                raise Rejected("too_short", f"AI turn of {len(m['content'])} characters: {m['content']!r}")
        for m in messages:
            if m["role"] == "assistant":
                for pattern in self.refusals:
                    if pattern.search(m["content"]):
                        raise Rejected("refusal", f"matches {pattern.pattern!r}")
        if self.config.drop_repetition and (problem := dialogue_repetition(messages)):
            raise Rejected("repetition", problem)
        if problem := language_problem(messages, self.config.language, seed):
            raise Rejected("language", problem)


# --------------------------------------------------------------------------- the modes


async def transcript_dialogue(teacher: Teacher, seed: Seed, config: CollectConfig, usage: Usage, **_) -> Dialogue:
    """Baize v1: one call writes the whole conversation; it is parsed into turns."""
    prompt = fill(config.transcript_prompt or TRANSCRIPT_PROMPT, seed.text)
    reply = await teacher.chat("transcript", [{"role": "user", "content": prompt}], usage)
    if reply.finish_reason == "length":
        if config.on_truncated == "drop":
            raise Rejected("truncated", "the transcript hit assistant_max_tokens", reply.content)
        try:
            messages = parse_transcript(reply.content)
        except Rejected as rejected:  # nothing answered before the cut
            raise Rejected(
                "truncated", f"no complete exchange before the cut ({rejected.detail})", reply.content
            ) from None
        pieces = _TAG.split(reply.content)
        if pieces[-2].lower() == "ai" and pieces[-1].strip():  # cut inside an AI answer: that exchange is incomplete
            messages = messages[:-2]
        # (an [AI] tag with nothing after it, or a cut inside a question, was already left out by the parser)
        if not messages:
            raise Rejected("truncated", "no complete exchange before the cut", reply.content)
        return Dialogue(messages, "truncated", reply.content)
    return Dialogue(parse_transcript(reply.content), "transcript", reply.content)


def simulator_prompt(template: str, messages: list[dict[str, str]]) -> str:
    """The user-simulator prompt: the transcript so far goes at `{transcript}`, else after the template with an
    open `[Human] ` line for the simulator to complete (the v2 collector's layout)."""
    transcript = "".join(f"[{'Human' if m['role'] == 'user' else 'AI'}] {m['content']}\n" for m in messages)
    if "{transcript}" in template:
        return template.replace("{transcript}", transcript)
    return template + transcript + "[Human] "


async def _turn(
    teacher: Teacher, role: str, messages: list[dict], usage: Usage, kept: list, *stop
) -> Completion | None:
    """One teacher call of a round; None when the budget is reached with exchanges `kept` (the dialogue keeps the
    rounds it has, as when the budget is spent between rounds); without any, BudgetReached goes on up."""
    try:
        return await teacher.chat(role, messages, usage, *stop)
    except BudgetReached:
        if not kept:
            raise
        return None


def _truncated(config: CollectConfig, reply: Completion, what: str) -> bool:
    """A turn cut at its max tokens ends the dialogue there, or with on_truncated: drop, drops it (`what`: why)."""
    if reply.finish_reason != "length":
        return False
    if config.on_truncated == "drop":
        raise Rejected("truncated", what, reply.content)
    return True


async def turns_dialogue(
    teacher: Teacher, seed: Seed, config: CollectConfig, usage: Usage, budget_spent: Callable[[], str | None]
) -> Dialogue:
    """Baize v2: per round, the user simulator writes a question, then a normal chat call answers it."""
    user_template = fill(config.user_prompt or USER_PROMPT, seed.text, config.end_marker)
    system = [{"role": "system", "content": config.assistant_system_prompt}] if config.assistant_system_prompt else []
    messages: list[dict[str, str]] = []
    stop, last_question = "max_rounds", None
    for round_ in range(config.max_rounds):
        if budget_spent():
            stop = "budget"
            break
        if round_ == 0 and config.seed_as_first_question:
            question = seed.text
        else:
            prompt = [{"role": "user", "content": simulator_prompt(user_template, messages)}]
            asked = await _turn(teacher, "user", prompt, usage, messages, config.user_stop)
            if asked is None:
                stop = "budget"
                break
            question, last_question = human_line(asked.content), asked.content
            if config.end_marker and config.end_marker.casefold() in question.casefold():
                stop = "no_more_questions"
                break
            if _truncated(config, asked, "a user-simulator question hit user_max_tokens"):
                stop = "truncated"
                break
            if not question:
                stop = "no_more_questions"  # an empty line is the simulator running out of questions
                break
        user = {"role": "user", "content": question}
        answer = await _turn(teacher, "assistant", system + messages + [user], usage, messages)
        if answer is None:
            stop = "budget"
            break
        if _truncated(config, answer, "an AI turn hit assistant_max_tokens"):
            stop = "truncated"
            break
        if not answer.content.strip():
            raise Rejected("empty", "the AI turn is empty")
        messages += [user, {"role": "assistant", "content": answer.content.strip()}]
    if not messages:
        reason = "truncated" if stop == "truncated" else "empty"
        raise Rejected(reason, f"no exchange (stopped: {stop})", last_question)
    return Dialogue(messages, stop)


def alpaca_dialogue(seed: Seed) -> Dialogue:
    """Alpaca rows need no teacher: instruction (+ input) -> output, one exchange."""
    row = seed.row or {}
    try:
        messages = alpaca_to_messages(row.get("instruction"), row.get("input"), row.get("output"))
    except DataFormatError as error:
        raise Rejected("empty", str(error)) from None
    return Dialogue(messages, "single_turn")
