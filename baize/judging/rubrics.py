"""The judge's rubrics: the prompt templates (the Vicuna/Baize review prompt, MT-Bench-style single grading with
an optional reference, SDF's 1-100 score), the strict parsers of a judge's reply, G-Eval's probability-weighted
score, and `Rubric`, which ties a template to its parser, re-ask reminder and scale. baize.judging.client asks them."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

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


def expected_score(logprobs: dict[str, float] | None, scale: int) -> float | None:
    """G-Eval's probability-weighted score (Liu et al. 2023, arXiv 2303.16634): the mean of the score tokens
    (integers 1..scale) among the first generated token's alternatives, weighted by their probabilities and
    renormalised over them; None when none of them is a score.

    GPT-class tokenizers write 1-100 as one token. Tokenizers that write numbers one digit per token (Llama,
    SmolLM2, Qwen) show only a score's first digit there: on a scale of 20 or more, when no alternative has two
    digits, a lone digit d is read as its bucket of two-digit scores, 10d..10d+9, at its middle (10d + 4.5)."""
    if not logprobs:
        return None
    weights: dict[int, float] = {}
    for token, logprob in logprobs.items():
        text = token.strip()
        if text.isdigit() and 1 <= int(text) <= scale:
            weights[int(text)] = weights.get(int(text), 0.0) + math.exp(logprob)
    total = sum(weights.values())
    if not total:
        return None
    if scale >= 20 and max(weights) <= 9:  # first digits only: 1-100 bucketed
        return min(scale, sum((10 * value + 4.5) * weight for value, weight in weights.items()) / total)
    return sum(value * weight for value, weight in weights.items()) / total


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
