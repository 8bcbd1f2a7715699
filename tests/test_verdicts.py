"""A judge you can measure (baize.verdicts): each statistic on hand-computed cases, and the eval report's judge
figures for scripted biased judges at the loopback server (one that always prefers the answer shown first, one
that always prefers the longer answer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai_server import OpenAIServer, Reply
from test_eval import PAIR, config_for, write_answers

from baize import evaluate
from baize.verdicts import (
    a_vs_b,
    cohen_kappa,
    first_position_win_rate,
    flip_rate,
    length_controlled_win_rate,
    longer_answer_win_rate,
    preference,
)


def test_preferences_and_both_orders_map_onto_the_same_two_answers():
    assert [preference(s) for s in ((8, 6), (6, 8), (7, 7), None)] == ["first", "second", "tie", None]
    assert a_vs_b((8, 6), (6, 8)) == ("win", "win")  # A first then second: A wins both times
    assert a_vs_b((8, 6), (8, 6)) == ("win", "loss")  # the first-shown answer wins both times: a flip


def test_kappa_flip_rate_and_position_and_length_figures_by_hand():
    # 10 items, raters agree on 7; marginals A: win 5, loss 3, tie 2; B: win 5, loss 4, tie 1
    a = ["win"] * 5 + ["loss"] * 3 + ["tie"] * 2
    b = ["win"] * 4 + ["loss"] + ["loss"] * 2 + ["win"] + ["tie", "loss"]
    observed = 0.7  # items 0-3, 5, 6, 8
    chance = (5 * 5 + 3 * 4 + 2 * 1) / 100  # 0.39
    assert sum(x == y for x, y in zip(a, b, strict=True)) / 10 == observed
    assert cohen_kappa(a, b) == pytest.approx((observed - chance) / (1 - chance))  # 0.508
    assert cohen_kappa(["win", "loss"], ["win", "loss"]) == 1.0

    assert flip_rate([("win", "win"), ("win", "tie"), ("loss", "win"), (None, "win")]) == pytest.approx(2 / 3)
    assert first_position_win_rate([(9, 1), (9, 1), (1, 9), (5, 5), None]) == pytest.approx(2 / 3)
    # (outcome for A, words of A, words of B): the longer one won 2 of the 3 decided, unequal comparisons
    decisions = [("win", 100, 10), ("loss", 10, 100), ("win", 10, 100), ("tie", 5, 50), ("win", 7, 7)]
    assert longer_answer_win_rate(decisions) == pytest.approx(2 / 3)


def test_the_length_controlled_win_rate_takes_length_out():
    # The model wins exactly when its answer is longer: the raw win rate is 0.5 whatever; at equal length the
    # fit says the outcome would be even too. A model that wins half its longer AND half its shorter answers,
    # with more wins overall at equal length, keeps its edge.
    outcomes = ["win", "loss"] * 10
    diffs = [+50, -50] * 10
    assert length_controlled_win_rate(outcomes, diffs) == pytest.approx(0.5, abs=0.01)
    biased = ["win"] * 12 + ["loss"] * 8  # the model wins more, and its answers are longer when it wins
    lengths = [+30] * 12 + [-30] * 8
    assert 0.4 < length_controlled_win_rate(biased, lengths) < 12 / 20  # less than the raw 0.6: length explains part
    balanced = ["win", "win", "win", "loss"] * 10  # wins 3 of 4 of its longer and of its shorter answers alike
    assert length_controlled_win_rate(balanced, ([10] * 4 + [-10] * 4) * 5) == pytest.approx(0.75, abs=0.02)


QUESTIONS = {str(i): ("all", f"question {i}") for i in range(1, 9)}


def biased_run(tmp_path: Path, judge, model_words: int, reference_words: int) -> dict:
    with OpenAIServer(judge) as server:
        config = config_for(tmp_path, server, questions_path=str(write_questions(tmp_path)), bootstrap_samples=200)
        write_answers(config, "model", {i: (c, "MODEL " + "m " * model_words) for i, (c, q) in QUESTIONS.items()})
        write_answers(
            config, "reference", {i: (c, "REF " + "r " * reference_words) for i, (c, q) in QUESTIONS.items()}
        )
        evaluate.judge_step(config)
        evaluate.report_step(config)
    return json.loads((Path(config.output_dir) / "results.json").read_text())


def write_questions(tmp_path: Path) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps({"question_id": i, "category": c, "question": q}) + "\n"
                            for i, (c, q) in QUESTIONS.items()))  # fmt: skip
    return path


def test_a_judge_that_always_prefers_position_one_is_measured_and_flagged(tmp_path):
    results = biased_run(tmp_path, lambda request: Reply("9 3"), model_words=5, reference_words=5)
    overall = results["overall"]
    assert overall["flip_rate"] == 1.0 and overall["first_position_win_rate"] == 1.0
    assert overall["tie"] == 8 and overall["kappa_between_orders"] is not None
    assert "judge flagged" in results["judge_flag"]
    md = (tmp_path / "eval" / "results.md").read_text()
    assert "| flip rate (the two orders disagree) | 1.000 | 0 |" in md and "judge flagged" in md


def test_a_judge_that_prefers_the_longer_answer_is_measured(tmp_path):
    def longer_wins(request):
        first, second = PAIR.search(request.messages[1]["content"]).groups()
        return Reply("9 3" if len(first.split()) > len(second.split()) else "3 9")

    results = biased_run(tmp_path, longer_wins, model_words=30, reference_words=5)
    overall = results["overall"]
    assert overall["longer_answer_win_rate"] == 1.0 and overall["flip_rate"] == 0.0
    assert overall["first_position_win_rate"] == 0.5 and overall["win"] == 8
    assert overall["adjusted_win_rate"] == 1.0 and results.get("judge_flag") is None


def test_sdf_selection_reports_the_judges_figures_for_pairwise_and_pointwise_rows():
    from baize.sdf.select import judge_bias

    def verdict(value):
        return {"value": value}

    candidates = [{"text": "short"}, {"text": "a much longer candidate answer"}]
    pairwise = {
        "candidates": candidates,
        "scores": [3.0, 9.0],
        "judge": {"mode": "pairwise", "comparisons": [
            # the first-shown answer wins both times: a flip; the means tie
            {"a": 0, "b": 1, "order_ab": verdict([9, 3]), "order_ba": verdict([9, 3]), "a_score": 6.0, "b_score": 6.0},
            # the long one wins in both orders
            {"a": 0, "b": 1, "order_ab": verdict([3, 9]), "order_ba": verdict([9, 3]), "a_score": 3.0, "b_score": 9.0},
        ]},
    }  # fmt: skip
    pointwise = {"candidates": candidates, "scores": [40.0, 80.0], "judge": {"mode": "pointwise"}}
    figures = judge_bias([pairwise, pointwise])
    assert figures["flip_rate"] == 0.5 and figures["first_position_win_rate"] == 0.75
    assert figures["longer_answer_win_rate"] == 1.0  # the tie is left out; the longer one won the other two


def human_judgments(path: Path) -> Path:
    """Six pairs in MT-Bench's human-judgment format: the better answer says GOOD; one human tie; two turn-2 rows."""
    rows = []
    for number, (winner, good_a, turn) in enumerate(
        [("model_a", True, 1), ("model_b", False, 1), ("model_a", True, 1), ("model_b", False, 2),
         ("tie", None, 1), ("model_a", True, 2)], 1,
    ):  # fmt: skip

        def answer(side_good: bool, words: int) -> str:
            return ("GOOD answer " if side_good else "weak answer ") + "word " * words

        a = [
            {"role": "user", "content": f"question {number}"},
            {"role": "assistant", "content": answer(bool(good_a), 3)},
        ]
        b = [
            {"role": "user", "content": f"question {number}"},
            {"role": "assistant", "content": answer(good_a is False, 20)},
        ]
        if turn == 2:
            a += [{"role": "user", "content": "and then?"}, {"role": "assistant", "content": answer(bool(good_a), 3)}]
            b += [
                {"role": "user", "content": "and then?"},
                {"role": "assistant", "content": answer(good_a is False, 20)},
            ]
        rows.append({"question_id": 80 + number, "model_a": "m-a", "model_b": "m-b", "winner": winner,
                     "judge": "author_0", "turn": turn, "conversation_a": a, "conversation_b": b})  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def calibrate(tmp_path: Path, judge) -> dict:
    with OpenAIServer(judge) as server:
        config = config_for(tmp_path, server, step="calibrate", bootstrap_samples=200,
                            calibration_path=str(human_judgments(tmp_path / "human.jsonl")))  # fmt: skip
        figures = evaluate.main(config)["calibrate"]
        asked = len(server.requests)
    assert json.loads((tmp_path / "eval" / "calibration.json").read_text())["pairs"] == 6
    return figures, asked


def test_calibration_against_human_votes_for_an_agreeing_and_a_position_biased_judge(tmp_path):
    def agrees(request):  # the answer that says GOOD wins; two weak answers are equal
        first, second = (s.split("\n")[-1] for s in PAIR.search(request.messages[1]["content"]).groups())
        first_good, second_good = "GOOD" in first, "GOOD" in second
        return Reply("9 3" if first_good and not second_good else "3 9" if second_good and not first_good else "5 5")

    figures, asked = calibrate(tmp_path / "good", agrees)
    assert figures["agreement_with_ties"] == 1.0 and figures["agreement_without_ties"] == 1.0
    assert figures["cohen_kappa"] == 1.0 and figures["flip_rate"] == 0.0 and asked == 12
    # the human winners were the shorter answers in 3 of 5 decided pairs; the judge agrees
    assert figures["judge_longer_answer_win_rate"] == figures["human_longer_answer_win_rate"] == 0.4

    figures, _ = calibrate(tmp_path / "biased", lambda request: Reply("9 3"))
    assert figures["flip_rate"] == 1.0 and figures["judge_outcomes"] == {"win": 0, "tie": 6, "loss": 0}
    assert figures["agreement_with_ties"] == round(1 / 6, 3) and figures["agreement_without_ties"] is None
    md = (tmp_path / "biased" / "eval" / "calibration.md").read_text()
    assert "| flip rate between the orders | 1.0 |" in md
