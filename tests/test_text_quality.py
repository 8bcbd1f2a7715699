"""Language and repetition in cleaning (baize.data.text_quality), on planted dialogues: the project's 160 hand-written
English dialogues and question/answer pairs written in Chinese, Russian, German and Spanish, clean and with a turn
planted that leaves the dialogue's language or loops. Recall and precision are measured and must be >= 0.95."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
from planted_text import PAIRS, dialogue

from baize.data.text_quality import dialogue_repetition, language_of, language_problem, repetition_problem

REPO = Path(__file__).resolve().parent.parent
ENGLISH = [json.loads(line) for line in (REPO / "data" / "baize-smol" / "selfchat.jsonl").read_text().splitlines()]


def language_sets() -> tuple[list, list]:
    """(clean, planted): (messages, seed) each. Planted: an answer in another language than the question's."""
    clean = [(row["messages"], row["seed"]) for row in ENGLISH]
    for pairs in PAIRS.values():
        for first, second in itertools.permutations(pairs, 2):
            clean.append((dialogue(first, second), first[0]))
    planted = []
    others = [(lang, a) for lang, pairs in PAIRS.items() for _, a in pairs]
    for i, row in enumerate(ENGLISH[:80]):  # an English dialogue whose last answer switches language
        messages = [dict(m) for m in row["messages"]]
        messages[-1]["content"] = others[i % len(others)][1]
        planted.append((messages, row["seed"]))
    for language, pairs in PAIRS.items():  # a question in one language answered in English or Russian
        for i, (q, _) in enumerate(pairs):
            foreign = (
                ENGLISH[i]["messages"][1]["content"] if language != "en" and i % 2 == 0 else PAIRS["ru"][i % 4][1]
            )
            if language == "ru":
                foreign = ENGLISH[i]["messages"][1]["content"]
            planted.append((dialogue((q, foreign)), q))
            planted.append((dialogue(pairs[(i + 1) % len(pairs)], (q, foreign)), pairs[(i + 1) % len(pairs)][0]))
    return clean, planted


def loop(text: str, kind: int, rng: random.Random) -> str:
    """A turn that degenerates the four ways sampling loops: a span repeated to the end, a sentence again and
    again, one word over and over, the whole answer pasted again and again."""
    words = text.split()
    if kind == 0:
        start = rng.randrange(max(1, len(words) // 2))
        span = words[start : start + rng.randint(3, 12)]
        return " ".join(words[: start + len(span)] + span * rng.randint(4, 8))
    if kind == 1:
        sentence = text.split(". ")[0].rstrip(".") + "."
        return text + " " + " ".join([sentence] * rng.randint(3, 6))
    if kind == 2:
        return text + " " + " ".join([rng.choice(words).strip(".,")] * rng.randint(15, 40))
    return " ".join([text] * 3)


def repetition_sets() -> tuple[list, list]:
    rng = random.Random(0)
    clean = [row["messages"] for row in ENGLISH] + [dialogue(p) for pairs in PAIRS.values() for p in pairs]
    planted = []
    for i, row in enumerate(ENGLISH):
        messages = [dict(m) for m in row["messages"]]
        turn = rng.choice([j for j, m in enumerate(messages) if m["role"] == "assistant"])
        messages[turn]["content"] = loop(messages[turn]["content"], i % 4, rng)
        planted.append(messages)
    for i, (q, a) in enumerate(PAIRS["zh"]):  # Chinese loops: characters, not words
        looped = a + a[: 8 + i] * 6 if i % 2 == 0 else a + (a.split("，")[0] + "，") * 4
        planted.append(dialogue((q, looped)))
    return clean, planted


def recall_precision(flag, clean, planted) -> tuple[float, float]:
    hits = sum(flag(item) is not None for item in planted)
    false_alarms = sum(flag(item) is not None for item in clean)
    return hits / len(planted), hits / max(1, hits + false_alarms)


def test_language_switches_are_found_with_recall_and_precision_over_095(capsys):
    clean, planted = language_sets()
    recall, precision = recall_precision(lambda item: language_problem(item[0], "seed", item[1]), clean, planted)
    with capsys.disabled():
        print(
            f"\nlanguage: {len(planted)} planted, {len(clean)} clean: recall {recall:.3f}, precision {precision:.3f}"
        )
    assert recall >= 0.95 and precision >= 0.95


def test_looping_turns_are_found_with_recall_and_precision_over_095(capsys):
    clean, planted = repetition_sets()
    recall, precision = recall_precision(dialogue_repetition, clean, planted)
    with capsys.disabled():
        print(
            f"\nrepetition: {len(planted)} planted, {len(clean)} clean: recall {recall:.3f}, precision {precision:.3f}"
        )
    assert recall >= 0.95 and precision >= 0.95


def test_what_does_not_count():
    assert language_of("Hello!") is None and language_of("OK, 好的") is None  # too short to tell
    assert language_of("```python\nprint('hello world, this is code')\n```") is None  # code says nothing
    assert language_of(PAIRS["zh"][0][1]) == "zh" and language_of(PAIRS["ru"][0][1]) == "ru"
    # an English answer with a code block stays English
    code = "Use a list comprehension:\n```python\nsquares = [x * x for x in range(10)]\n```\nIt builds the list."
    assert language_problem(dialogue(("How do I square numbers in Python quickly?", code)), "seed") is None
    # an explicit language: a Chinese dialogue is dropped when English is expected, kept when Chinese is
    assert language_problem(dialogue(PAIRS["zh"][0]), "en") and not language_problem(dialogue(PAIRS["zh"][0]), "zh")
    assert language_problem(dialogue(PAIRS["zh"][0]), None) is None
    # lists and tables that repeat their shape are not loops
    steps = "\n".join(
        f"{n}. Add {n} cups of flour to bowl number {n}, then stir for {n + 1} minutes." for n in range(8)
    )
    assert repetition_problem(steps) is None
    assert repetition_problem("| a | b |\n|---|---|\n" + "| 0 | 0 |\n" * 10) is None


@pytest.mark.parametrize("language", ["seed", "zh"])
def test_collection_drops_and_counts_language_and_repetition(tmp_path, language):
    """Through a real collection against the loopback teacher: Chinese seeds, one answer in English, one that
    loops; the report, the card and browse.html count them by reason."""
    from openai_server import OpenAIServer
    from test_collect import config_for

    from baize.collect import collect

    questions = [q for q, _ in PAIRS["zh"]]
    answers = {q: a for q, a in PAIRS["zh"]}
    english = ENGLISH[0]["messages"][1]["content"]

    def responder(request):
        seed = next(q for q in questions if q in request.prompt)
        answer = answers[seed]
        if seed == questions[1]:
            answer = english
        elif seed == questions[2]:
            answer = answer + answer[:10] * 8
        return f"[Human] {seed}\n[AI] {answer}"

    with OpenAIServer(responder) as server:
        report = collect(config_for(server, tmp_path, questions, language=language))
    assert report["kept"] == len(questions) - 2
    assert report["dropped"]["language"] == 1 and report["dropped"]["repetition"] == 1
    card = (tmp_path / "out" / "README.md").read_text()
    assert "language 1" in card and "repetition 1" in card
    browse = (tmp_path / "out" / "browse.html").read_text()
    assert "repetition" in browse and "is in en, the dialogue in zh" in browse


def test_eval_reports_the_share_of_answers_that_loop(tmp_path):
    from openai_server import OpenAIServer
    from test_eval import QUESTIONS, judge_responder, judged_config, write_answers

    from baize import evaluate

    with OpenAIServer(judge_responder) as server:
        config = judged_config(tmp_path, server)
        loops = {i: (c, f"MODEL answer to {q}. " + ("It is so. It is so. It is so. " if i in ("1", "4") else ""))
                 for i, (c, q) in QUESTIONS.items()}  # fmt: skip
        write_answers(config, "model", loops)
        evaluate.judge_step(config)
        evaluate.report_step(config)
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["repetition_rate"]["looping"] == {"model": 2, "reference": 0}
    assert results["repetition_rate"]["model"] == round(2 / 6, 3) and results["repetition_rate"]["reference"] == 0
    assert "Answers that loop" in (tmp_path / "eval" / "results.md").read_text()
