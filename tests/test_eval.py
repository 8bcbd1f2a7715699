"""`baize eval`: questions, answers (a local tiny model and an endpoint reference, resumable, per-category
temperatures), the judge against the loopback OpenAI server (parsing, both orders, the verdict cache), the
bootstrap math, and the report files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import chatty_copy, transformers_serve, write_jsonl
from openai_server import OpenAIServer, Reply

from baize import evaluate
from baize.evaluate import EvalConfig
from baize.evaluate.answer import answer_row, answers_path
from baize.evaluate.stats import relative_score
from baize.io.errors import EndpointError, SettingsChanged
from baize.judging.stats import adjusted_win_rate, bootstrap_interval
from baize.llm.sampling import Sample

PAIR = re.compile(r"Assistant 1's Answer\]\n(.*?)\n\[The End.*?Assistant 2's Answer\]\n(.*?)\n\[The End", re.S)
QUESTION = re.compile(r"\[Conversation\]\nUser: (.*?)\n\n\[The Start", re.S)


def config_for(tmp_path: Path, server: OpenAIServer | None = None, **overrides) -> EvalConfig:
    values = {
        "output_dir": str(tmp_path / "eval"),
        "model": "openai:model-under-test",
        "model_label": "mut",
        "reference": "openai:reference-model",
        "reference_label": "ref",
        "judge_model": "judge-model",
        "judge_base_url": server.base_url if server else None,
        "judge_api_key_env": "BAIZE_TEST_UNSET_KEY",
        "judge_concurrency": 4,
        "judge_parse_retries": 1,
        "max_retries": 0,
        "timeout": 10,
        "bootstrap_samples": 500,
        **overrides,
    }
    return EvalConfig(**values)


def write_answers(config: EvalConfig, role: str, answers: dict) -> None:
    """answers/<label>.jsonl as the answer step writes it: question_id (or (question_id, turn)) -> (category, text)."""
    model, reference = evaluate.contestants(config)
    contestant = model if role == "model" else reference
    rows = [
        answer_row(
            contestant, {"question_id": key[0] if isinstance(key, tuple) else key, "category": cat},
            key[1] if isinstance(key, tuple) else 1, 0.0, Sample(text, "stop", None),
        )
        for key, (cat, text) in answers.items()
    ]  # fmt: skip
    path = answers_path(config, contestant)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, rows)


# --------------------------------------------------------------------------- questions


def test_shipped_questions_cover_nine_categories():
    config = EvalConfig(model="x")
    questions = evaluate.load_questions(config)
    counts = {}
    for q in questions:
        counts[q["category"]] = counts.get(q["category"], 0) + 1
    assert len(questions) == 80 and len({q["question"] for q in questions}) == 80
    assert counts == {
        "generic": 10, "knowledge": 10, "roleplay": 10, "common-sense": 10, "fermi": 10,
        "counterfactual": 10, "coding": 7, "math": 3, "writing": 10,
    }  # fmt: skip
    quick = evaluate.load_questions(EvalConfig(model="x", limit_per_category=2))
    assert len(quick) == 18 and [q["question_id"] for q in quick[:2]] == ["1", "2"]
    assert all(config.temperature(q["category"]) in (0.0, 0.1, 0.7) for q in questions)


def test_mt_bench_style_file_dotted_column_and_clear_errors(tmp_path):
    path = write_jsonl(
        tmp_path / "mt.jsonl",
        [
            {"prompt_id": 81, "category": "writing", "prompt": ["Write a haiku about tea.", "Now in French."]},
            {"prompt_id": 82, "category": "math", "prompt": ["What is 2 + 2?", "And 3 + 3?"], "reference": ["4", "6"]},
        ],
    )
    config = EvalConfig(model="x", questions_path=str(path), question_column="prompt.0", id_column="prompt_id")
    assert [(q["question_id"], q["category"], q["turns"]) for q in evaluate.load_questions(config)] == [
        ("81", "writing", ["Write a haiku about tea."]),
        ("82", "math", ["What is 2 + 2?"]),
    ]
    # the whole list: two turns, with the reference answers (one per turn) where the file has them
    two_turns = evaluate.load_questions(EvalConfig(model="x", questions_path=str(path), question_column="prompt",
                                                   id_column="prompt_id"))  # fmt: skip
    assert two_turns[0]["turns"] == ["Write a haiku about tea.", "Now in French."] and two_turns[0]["references"] == []
    assert two_turns[1]["references"] == ["4", "6"] and two_turns[1]["question"] == "What is 2 + 2?"
    gap = write_jsonl(tmp_path / "gap.jsonl", [{"turns": ["one?", "two?"]}, {"turns": ["one?", ""]}])
    with pytest.raises(ValueError, match=r"gap.jsonl: row 2 \(question 2\): turn 2 is missing or empty"):
        evaluate.load_questions(EvalConfig(model="x", questions_path=str(gap), question_column="turns"))
    assert config.temperature("writing") == 0.7 and config.temperature("math") == 0.0
    assert EvalConfig(model="x", category_temperatures='{"math": 0.3}').temperature("math") == 0.3

    with pytest.raises(KeyError, match=r"mt.jsonl: question column 'question' not found"):
        evaluate.load_questions(EvalConfig(model="x", questions_path=str(path)))
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "ok?"}, {"question": "  "}])
    with pytest.raises(ValueError, match=r"bad.jsonl: row 2 \(question 2\) has no question text"):
        evaluate.load_questions(EvalConfig(model="x", questions_path=str(bad)))
    twice = write_jsonl(
        tmp_path / "twice.jsonl", [{"question_id": 1, "question": "a"}, {"question_id": 1, "question": "b"}]
    )
    with pytest.raises(ValueError, match=r"twice.jsonl: row 2: question id 1 appears twice"):
        evaluate.load_questions(EvalConfig(model="x", questions_path=str(twice)))


# --------------------------------------------------------------------------- answers


def test_answers_local_model_and_endpoint_resume_with_category_temperatures(tmp_path, tiny_llama_dir):
    def responder(request):
        return Reply(f"Reference answer: {request.last_user}", usage={"prompt_tokens": 10, "completion_tokens": 5})

    with OpenAIServer(responder) as server:
        config = config_for(
            tmp_path,
            server,
            model=str(tiny_llama_dir),
            model_label="tiny",
            limit_per_category=1,
            max_new_tokens=6,
            batch_size=4,
        )
        report = evaluate.answer_step(config)
        assert report["tiny"]["answered"] == 9 and report["ref"]["answered"] == 9
        sent = {r.last_user: r.body for r in server.requests}
        questions = evaluate.load_questions(config)
        for q in questions:  # the per-category temperature reached the endpoint
            assert sent[q["question"]]["temperature"] == config.temperature(q["category"])
            assert sent[q["question"]]["max_tokens"] == 6
        model, reference = evaluate.contestants(config)
        local = evaluate.read_answers(config, model)
        assert {row["temperature"] for row in local.values()} == {0.0, 0.1, 0.7}
        assert all(0 < row["new_tokens"] <= 6 and row["contestant"] == str(tiny_llama_dir) for row in local.values())
        ref = evaluate.read_answers(config, reference)
        assert ref[(questions[0]["question_id"], 1)]["answer"] == f"Reference answer: {questions[0]['question']}"
        # the endpoint's own finish reason and token count, as for local answers
        assert all(row["new_tokens"] == 5 and row["finish_reason"] == "stop" for row in ref.values())

        # Resume: nothing is asked again; one missing line is answered again, alone.
        server.reset()
        report = evaluate.answer_step(config)
        assert report["ref"]["already_done"] == 9 and not server.requests
        path = answers_path(config, reference)
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[:-1]))
        evaluate.answer_step(config)
        assert [r.last_user for r in server.requests] == [json.loads(lines[-1])["answer"].split(": ", 1)[1]]

    # Another model (or other answering settings) under the same label is refused, naming the change.
    other = config_for(tmp_path, None, model="openai:someone-else", model_label="tiny", limit_per_category=1)
    with pytest.raises(
        SettingsChanged, match=r"answers of tiny made with other settings \(contestant: .*someone-else"
    ):
        evaluate.answer_step(other)
    hotter = config_for(
        tmp_path, None, model=str(tiny_llama_dir), model_label="tiny", limit_per_category=1, max_new_tokens=6,
        batch_size=4, top_p=0.5,
    )  # fmt: skip
    with pytest.raises(SettingsChanged, match=r"top_p: 1.0 -> 0.5.*--overwrite true"):
        evaluate.answer_step(hotter)


# --------------------------------------------------------------------------- judge


# Scripted judge: category "good" -> the model's answer scores 8 and the reference's 6 in either order (win);
# "biased" -> Assistant 1 always 9, Assistant 2 always 5 (orders disagree: tie); "bad" -> model 3, reference 7
# (loss); "messy" -> a reply that does not parse first (no score, then out of range), then a good one.
def judge_responder(request) -> Reply:
    first, second = PAIR.search(request.messages[1]["content"]).groups()
    question = QUESTION.search(request.messages[1]["content"]).group(1)
    kind = question.split()[0]
    model_first = first.startswith("MODEL")
    if kind == "biased":
        return Reply("9 5\nThe first answer is better.")
    if kind == "messy" and request.attempt == 1 and len(request.messages) == 2:
        return Reply("Both answers are fine, I think." if model_first else "11 12\nGreat.")
    model_score, reference_score = {"good": (8, 6), "bad": (3, 7), "messy": (7, 7), "refuse": (0, 0)}[kind]
    if kind == "refuse":
        return Reply("I'm sorry, I cannot help with rating these.")
    scores = (model_score, reference_score) if model_first else (reference_score, model_score)
    return Reply(f"Assistant 1: {scores[0]}/10, Assistant 2: {scores[1]}/10\nBecause reasons.")


QUESTIONS = {
    "1": ("alpha", "good question one"),
    "2": ("alpha", "good question two"),
    "3": ("beta", "biased question three"),
    "4": ("beta", "bad question four"),
    "5": ("gamma", "messy question five"),
    "6": ("gamma", "refuse question six"),
}


def judged_config(tmp_path: Path, server: OpenAIServer, **overrides) -> EvalConfig:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_jsonl(
        tmp_path / "questions.jsonl",
        [{"question_id": int(i), "category": c, "question": q} for i, (c, q) in QUESTIONS.items()],
    )
    config = config_for(tmp_path, server, questions_path=str(path), **overrides)
    write_answers(config, "model", {i: (c, f"MODEL answer to {q}") for i, (c, q) in QUESTIONS.items()})
    write_answers(config, "reference", {i: (c, f"REFERENCE answer to {q} " * 2) for i, (c, q) in QUESTIONS.items()})
    return config


@pytest.mark.slow
def test_judge_both_orders_parsing_outcomes_and_cache(tmp_path):
    with OpenAIServer(judge_responder) as server:
        config = judged_config(tmp_path, server)
        stats = evaluate.judge_step(config)
        assert stats["judged"] == 6 and stats["cache_hits"] == 0 and stats["cache_misses"] == 12
        # The second order really swaps the answers: each question was shown both ways round.
        shown = {}
        for request in server.requests:
            first, second = PAIR.search(request.messages[1]["content"]).groups()
            question = QUESTION.search(request.messages[1]["content"]).group(1)
            shown.setdefault(question, set()).add((first.split()[0], second.split()[0]))
        assert all(pairs == {("MODEL", "REFERENCE"), ("REFERENCE", "MODEL")} for pairs in shown.values())

        rows = {r["question_id"]: r for r in evaluate.read_jsonl(Path(config.output_dir) / "judgements.jsonl")}
        assert {i: r["outcome"] for i, r in rows.items()} == {
            "1": "win", "2": "win", "3": "tie", "4": "loss", "5": "tie", "6": None,
        }  # fmt: skip
        assert rows["1"]["reference_first"]["value"] == [6, 8]  # reference shown first: (reference, model)
        assert rows["1"]["model_first"]["value"] == [8, 6]
        messy = rows["5"]
        assert messy["model_first"]["errors"] == ["no_score"] and messy["model_first"]["attempts"] == 2
        assert messy["reference_first"]["errors"] == ["out_of_range"] and messy["reference_first"]["value"] == [7, 7]
        refused = rows["6"]["reference_first"]
        assert refused["value"] is None and refused["errors"] == ["refused", "refused"]
        assert stats["parse_failures"] == 2  # question 6, both orders, after its re-ask

        # A re-run asks the judge nothing: every verdict (the unparseable ones too) comes from the cache.
        server.reset()
        again = evaluate.judge_step(config)
        assert not server.requests and again["cache_hits"] == 12 and again["cache_misses"] == 0
        rerun = evaluate.read_jsonl(Path(config.output_dir) / "judgements.jsonl")
        assert {r["question_id"]: r["outcome"] for r in rerun} == {i: r["outcome"] for i, r in rows.items()}
        assert all(r["reference_first"]["cached"] and r["model_first"]["cached"] for r in rerun)

        # A cache shared by another run: the same judge costs nothing there; another judge is another key.
        cache = str(Path(config.output_dir) / "judge_cache.jsonl")
        server.reset()
        shared = evaluate.judge_step(judged_config(tmp_path / "shared", server, judge_cache=cache))
        assert shared["cache_hits"] == 12 and not server.requests
        other = evaluate.judge_step(
            judged_config(tmp_path / "other", server, judge_cache=cache, judge_model="another-judge")
        )
        assert other["cache_misses"] == 12 and len(server.requests) >= 12

        report = evaluate.report_step(config)
    results = json.loads((Path(config.output_dir) / "results.json").read_text())
    overall = results["overall"]
    # Paper metric from the reference-first verdicts that parsed: model 8+8+5+3+7 vs reference 6+6+9+7+7.
    assert overall["score_pct"] == round(100 * 31 / 35, 1) and overall["scored"] == 5
    # Both orders: + the model-first verdicts (8, 8, 9, 3, 7 vs 6, 6, 5, 7, 7).
    assert overall["score_pct_both_orders"] == round(100 * (31 + 35) / (35 + 31), 1)
    assert (overall["win"], overall["tie"], overall["loss"], overall["unjudged"]) == (2, 2, 1, 1)
    assert overall["adjusted_win_rate"] == round((2 + 1) / 5, 3)
    low, high = overall["adjusted_win_rate_ci"]
    assert 0 <= low <= 0.6 <= high <= 1
    assert results["categories"]["alpha"]["adjusted_win_rate"] == 1.0
    assert results["categories"]["alpha"]["adjusted_win_rate_ci"] == [1.0, 1.0]
    assert overall["model_words"] < overall["reference_words"]  # lengths reported next to the scores
    assert results["cut_at_max_new_tokens"] == {"model": 0, "reference": 0, "max_new_tokens": 512}
    folder = Path(config.output_dir)
    table = (folder / "results.md").read_text()
    assert "Answers cut at max_new_tokens (512, the same budget for both)" in table
    assert "{model}" not in table and f"**Score %**: {results['model']}'s total" in table
    assert "| alpha | 2 |" in table and "| **overall** | 6 | 88.6 |" in table
    for chart in ("scores_by_category.png", "pairwise_by_category.png"):
        assert (folder / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["files"] == ["results.json", "results.md", "scores_by_category.png", "pairwise_by_category.png"]


def test_paper_only_mode_asks_once_per_question(tmp_path):
    with OpenAIServer(judge_responder) as server:
        config = judged_config(tmp_path, server, pairwise=False)
        stats = evaluate.judge_step(config)
        assert stats["judged"] == 6 and all(  # one order only: the reference first, as in the paper
            PAIR.search(r.messages[1]["content"]).group(1).startswith("REFERENCE") for r in server.requests
        )
        evaluate.report_step(config)
    overall = json.loads((Path(config.output_dir) / "results.json").read_text())["overall"]
    assert overall["score_pct"] == round(100 * 31 / 35, 1) and overall["score_pct_both_orders"] is None
    assert (overall["win"], overall["tie"], overall["loss"], overall["unjudged"]) == (0, 0, 0, 1)
    assert overall["adjusted_win_rate"] is None


def test_judge_request_failure_is_not_cached_and_retried_next_run(tmp_path):
    def down(request):
        return Reply(status=500, message="down")

    with OpenAIServer(down) as server:
        config = judged_config(tmp_path, server)
        # a run that failed part of its work fails, naming the judge's URL; nothing wrong is cached
        with pytest.raises(EndpointError, match=rf"the judge at {re.escape(server.base_url)} failed 6 of 6"):
            evaluate.judge_step(config)
        server.responder = judge_responder
        stats = evaluate.judge_step(config)
    assert stats["judged"] == 6 and stats["cache_hits"] == 0


# --------------------------------------------------------------------------- statistics


def test_bootstrap_interval_math():
    assert adjusted_win_rate(["win", "tie", "loss", "loss"]) == 0.375
    assert relative_score([(8, 10), (9, 10)]) == 85.0
    assert bootstrap_interval([], adjusted_win_rate) is None
    assert bootstrap_interval(["win"] * 30, adjusted_win_rate, resamples=200) == (1.0, 1.0)
    # 200 wins and 200 losses: the mean of 400 fair coin flips, standard error 0.025 -> 95% CI ~ 0.5 +- 0.049.
    outcomes = ["win", "loss"] * 200
    low, high = bootstrap_interval(outcomes, adjusted_win_rate, resamples=4000, seed=1)
    assert low == pytest.approx(0.451, abs=0.012) and high == pytest.approx(0.549, abs=0.012)
    # Same seed, same interval; a lower confidence level gives a narrower interval inside it.
    assert bootstrap_interval(outcomes, adjusted_win_rate, resamples=4000, seed=1) == (low, high)
    low80, high80 = bootstrap_interval(outcomes, adjusted_win_rate, resamples=4000, confidence=0.8, seed=1)
    assert low < low80 < 0.5 < high80 < high
    # Question outcome from both orders (values as the judge shows them: Assistant 1 first): reference first, then
    # model first.
    from baize.judging.compare import Compared

    assert Compared((6, 8), (8, 6)).outcome == "win"
    assert Compared((8, 6), (6, 8)).outcome == "loss"
    assert Compared((9, 5), (9, 5)).outcome == "tie"  # position bias: the orders disagree
    assert Compared((7, 7), (8, 6)).outcome == "tie"
    assert Compared(None, (8, 6)).outcome is None


def test_cli_help_and_bad_config():
    with pytest.raises(SystemExit) as exit_info:
        evaluate.parse_args(["--help"])
    assert exit_info.value.code == 0
    with pytest.raises(ValueError, match="model is not set"):
        evaluate.contestants(EvalConfig())
    with pytest.raises(ValueError, match="same label"):
        evaluate.contestants(EvalConfig(model="a/x", reference="b/x", model_label="x", reference_label="x"))
    with pytest.raises(ValueError, match="category_temperatures"):
        EvalConfig(model="x", category_temperatures="writing=0.7")


@pytest.mark.slow
def test_all_steps_against_transformers_serve(tmp_path, tiny_llama_dir):
    """The reference and the judge are a real `transformers serve` (a tiny random chat model: its verdicts do
    not parse, which must be counted, not crash); the model answers locally."""
    served = chatty_copy(tiny_llama_dir, tmp_path / "tiny-chat")
    with transformers_serve(tmp_path / "serve.log") as base_url:
        config = config_for(
            tmp_path,
            model=str(tiny_llama_dir),
            model_label="tiny",
            reference=f"openai:{served}",
            reference_label="served",
            answer_base_url=base_url,
            judge_base_url=base_url,
            judge_model=str(served),
            judge_max_tokens=8,
            judge_parse_retries=0,
            judge_concurrency=2,
            limit_per_category=1,
            max_new_tokens=8,
            timeout=60,
            max_retries=1,
        )
        summary = evaluate.main(config)
    assert summary["answer"]["served"]["answered"] == 9 and summary["answer"]["served"]["usage"]["calls"] == 9
    judge = summary["judge"]
    assert judge["judged"] == 9 and judge["request_errors"] == 0
    # both orders of 9 pairs; where the two answers are the same text (often: empty) both orders are one verdict, asked
    # once and counted as a cache hit
    assert judge["usage"]["calls"] + judge["cache_hits"] == 18
    assert judge["parse_failures"] == sum(
        (r["reference_first"]["value"] is None) + (r["model_first"]["value"] is None)
        for r in evaluate.read_jsonl(Path(config.output_dir) / "judgements.jsonl")
    )
    results = json.loads((Path(config.output_dir) / "results.json").read_text())
    assert results["overall"]["questions"] == 9 and len(results["categories"]) == 9


# --------------------------------------------------------------------------- two-turn questions (MT-Bench style)


def two_turn_responder(request) -> Reply:
    """Answerers echo who they are and what they were asked; the judge prefers the model under test, grades its
    answers 7 and the reference's 5, and never gives a usable grade to the reference's turn-2 math answer."""
    model, prompt = request.body["model"], request.prompt
    if model != "judge-model":
        return Reply(f"{model} says: {request.last_user}")
    if "[The Start of the Assistant's Answer]" in prompt:  # single-answer grading
        answer = prompt.split("[The Start of the Assistant's Answer]\n", 1)[1]
        if answer.startswith("reference-model says: And what is 3 + 3?"):
            return Reply("A fine answer overall.")  # no score, also when asked again
        return Reply("7\nclear" if answer.startswith("model-under-test") else "5\nthin")
    first, second = PAIR.search(prompt).groups()
    return Reply("8 6\nfirst better" if "model-under-test says" in first.splitlines()[-1] else "6 8\nsecond better")


@pytest.mark.slow
def test_two_turn_answers_single_grading_reference_and_per_turn_report(tmp_path):
    questions = write_jsonl(
        tmp_path / "two.jsonl",
        [
            {"question_id": 1, "category": "writing", "turns": ["Write a haiku about tea.", "Now make it rhyme."]},
            {"question_id": 2, "category": "math", "turns": ["What is 2 + 2?", "And what is 3 + 3?"],
             "reference": ["4", "6"]},
        ],
    )  # fmt: skip
    with OpenAIServer(two_turn_responder) as server:
        config = config_for(
            tmp_path, server, questions_path=str(questions), question_column="turns", single_grading=True,
            answer_base_url=server.base_url,
        )  # fmt: skip
        summary = evaluate.main(config)
        asked = [r for r in server.requests if r.body["model"] != "judge-model"]
        judge_prompts = [r.prompt for r in server.requests if r.body["model"] == "judge-model"]

        # Turn 2 is asked with the contestant's own turn-1 answer in the history.
        turn2 = [r for r in asked if r.last_user == "Now make it rhyme."]
        assert {r.body["model"] for r in turn2} == {"model-under-test", "reference-model"}
        for request in turn2:
            assert request.messages[:-1] == [
                {"role": "user", "content": "Write a haiku about tea."},
                {"role": "assistant", "content": f"{request.body['model']} says: Write a haiku about tea."},
            ]
        assert summary["answer"]["mut"]["answered"] == 4 and summary["judge"]["judged"] == 4

        # The reference answer is shown to the single-answer judge for math only, turn by turn.
        single = [p for p in judge_prompts if "[The Start of the Assistant's Answer]" in p]
        shown = [p for p in single if "[The Start of Reference Answer]" in p]
        assert len(single) >= 8 and all("What is 2 + 2?" in p for p in shown)
        assert any("[The Start of Reference Answer]\n6\n" in p for p in shown)
        assert not any("haiku" in p for p in shown)
        # The turn-2 pair verdict shows each side's own conversation.
        pair_turn2 = [p for p in judge_prompts if "Assistant 1's Answer" in p and "Now make it rhyme." in p]
        assert pair_turn2 and all("model-under-test says: Write a haiku" in p for p in pair_turn2)

        # Re-run: every verdict comes from the cache.
        server.reset()
        again = evaluate.main(config)
        assert not server.requests and again["judge"]["cache_misses"] == 0 and again["judge"]["cache_hits"] == 16

    results = json.loads((Path(config.output_dir) / "results.json").read_text())
    first, second = results["turns"]["1"], results["turns"]["2"]
    assert first["overall"]["win"] == 2 and second["overall"]["win"] == 2 and results["overall"]["questions"] == 4
    assert first["overall"]["model_single_score"] == 7.0 and first["overall"]["reference_single_score"] == 5.0
    # the unparsed grade is left out of the mean and counted, never turned into a score
    assert second["categories"]["math"]["reference_single_score"] is None
    assert second["overall"]["single_unparsed"] == 1 and results["unparsed_verdicts"] == 1
    assert results["overall"]["reference_guided"] == 2  # math, both turns
    # the grades as a comparison: 7 beats 5 on every question both grades exist for (not turn-2 math)
    overall = results["overall"]
    assert (overall["single_win"], overall["single_tie"], overall["single_loss"]) == (3, 0, 0)
    assert overall["single_adjusted_win_rate"] == 1.0 and results["categories"]["math"]["single_win"] == 1
    assert summary["report"]["unparsed_verdicts"] == 1 and summary["report"]["verdicts"] == 16
    report = (Path(config.output_dir) / "results.md").read_text()
    assert "## Turn 2" in report and "## Single-answer grading" in report and "Unparsed verdicts: 1 of 16" in report
    assert "| 3/0/0 | 1.000 (1.000–1.000) |" in report
    for chart in ("turn1_by_category.png", "turn2_by_category.png"):
        assert (Path(config.output_dir) / chart).read_bytes()[:4] == b"\x89PNG"


def test_shipped_two_turn_questions():
    config = EvalConfig(model="x", questions_path=str(evaluate.TWO_TURN_QUESTIONS_FILE), question_column="turns")
    questions = evaluate.load_questions(config)
    assert len(questions) == 80 and all(len(q["turns"]) == 2 for q in questions)  # every one of the 80, two turns
    assert len({q["category"] for q in questions}) == 9 and len({q["turns"][1] for q in questions}) == 80
    guided = [q for q in questions if q["category"] in config.reference_guided_categories]
    assert all(len(q["references"]) == 2 for q in guided if q["category"] in ("math", "coding"))
    # the first turn is the project's own single-turn question of the same id
    single = {q["question_id"]: q["question"] for q in evaluate.load_questions(EvalConfig(model="x"))}
    assert all(single[q["question_id"]] == q["turns"][0] for q in questions)


def test_endpoint_contestant_prompted_like_a_local_model(tmp_path, tiny_llama_dir):
    """`model_prompt_from`: an openai:MODEL served by vLLM gets the text the shared builder renders (template,
    system prompt, its own turn-1 answer), at /v1/completions, cut at the turn tags."""
    from helpers import make_lora_adapter

    from baize.llm.generation import batch_seed
    from baize.modeling.loading import load_chat_model

    adapter = make_lora_adapter(tmp_path / "v1", tiny_llama_dir)
    questions = write_jsonl(tmp_path / "two.jsonl", [{"question_id": 7, "category": "math",
                                                      "turns": ["What is 2 + 2?", "And 3 + 3?"]}])  # fmt: skip

    def responder(request):
        if "prompt" in request.body:  # /v1/completions: the served v1
            return Reply(f"Answer to turn {request.body['prompt'].count('[|Human|]')}\n[|Human|] more")
        return Reply("reference answer")

    with OpenAIServer(responder) as server:
        config = config_for(
            tmp_path, server, model="openai:v1", model_prompt_from=str(adapter), questions_path=str(questions),
            question_column="turns", answer_base_url=server.base_url,
        )  # fmt: skip
        evaluate.answer_step(config)
        completions = [r.body for r in server.requests if "prompt" in r.body]
    builder = load_chat_model(adapter, without_weights=True).prompt_builder()
    first = [{"role": "user", "content": "What is 2 + 2?"}]
    assert completions[0]["prompt"] == builder.render_messages(first)
    assert completions[1]["prompt"] == builder.render_messages(
        [*first, {"role": "assistant", "content": "Answer to turn 1"}, {"role": "user", "content": "And 3 + 3?"}]
    )  # turn 2 carries the model's own turn-1 answer, cut at the turn tag
    assert completions[0]["stop"] == ["[|Human|]", "[|AI|]", "\n[|"] and completions[0]["model"] == "v1"
    assert completions[1]["seed"] == batch_seed(42, ["7/2"]) and completions[0]["temperature"] == 0.0
    model, _ = evaluate.contestants(config)
    answers = evaluate.read_answers(config, model)
    assert answers[("7", 2)]["answer"] == "Answer to turn 2"
    with pytest.raises(ValueError, match="model_prompt_from is for openai:MODEL contestants"):
        evaluate.contestants(config_for(tmp_path, None, model=str(adapter), model_prompt_from=str(adapter)))
