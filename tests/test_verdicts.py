"""A judge you can measure (baize.judging.stats): each statistic on hand-computed cases, and the eval report's judge
figures for scripted biased judges at the loopback server (one that always prefers the answer shown first, one
that always prefers the longer answer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai_server import OpenAIServer, Reply
from test_eval import PAIR, config_for, write_answers

from baize import evaluate
from baize.judging.stats import (
    a_vs_b,
    cohen_kappa,
    first_position_win_rate,
    flip_rate,
    length_controlled_interval,
    length_controlled_win_rate,
    length_separates,
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
    # The model wins more, and mostly where its answer is longer: less than the raw 0.6 at equal length.
    biased = ["win"] * 10 + ["loss"] * 2 + ["win"] * 2 + ["loss"] * 6
    lengths = [+30] * 12 + [-30] * 8
    assert 0.4 < length_controlled_win_rate(biased, lengths) < 12 / 20
    balanced = ["win", "win", "win", "loss"] * 10  # wins 3 of 4 of its longer and of its shorter answers alike
    assert length_controlled_win_rate(balanced, ([10] * 4 + [-10] * 4) * 5) == pytest.approx(0.75, abs=0.02)


def test_where_length_explains_every_verdict_the_length_controlled_rate_is_not_identified():
    # Every win longer, every loss shorter (or the reverse): any rate at equal length fits as well. AlpacaEval's
    # own fit says 0.50 and 0.29 on sets like these; a number and a narrow interval would look confident.
    separated = [
        (["win", "loss"] * 10, [+50, -50] * 10),  # every win longer
        (["win"] * 3 + ["loss"] * 7, [-5, -9, -2, 4, 8, 12, 3, 30, 7, 1]),  # every win shorter
        (["win", "loss"] * 10 + ["win"], [+50, -50] * 10 + [-50]),  # quasi: the longer answers all won
        (["win", "loss", "tie"] * 4, [+20, -20, 0] * 4),  # the ties sit at the split
    ]
    for outcomes, diffs in separated:
        assert length_separates(outcomes, diffs), (outcomes, diffs)
        assert length_controlled_win_rate(outcomes, diffs) is None
        assert length_controlled_interval(outcomes, diffs, resamples=200, confidence=0.95, seed=0) is None
    # a win and a loss that length does not explain identify it again (and a tie among the longer answers does)
    for outcomes, diffs in ((["win", "loss"] * 11, [+50, -50] * 10 + [-50, +50]),
                            (["win", "loss"] * 10 + ["tie"], [+50, -50] * 10 + [+60])):  # fmt: skip
        assert not length_separates(outcomes, diffs)
        assert 0 < length_controlled_win_rate(outcomes, diffs) < 1
    assert length_controlled_win_rate(["win", "loss"] * 11, [+50, -50] * 10 + [-50, +50]) == pytest.approx(
        0.5, abs=0.01
    )
    assert not length_separates(["win", "loss", "tie"], [0, 0, 0])  # no length difference: the raw rate


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
    assert figures["first_position_win_rate"] == 1.0  # the first-shown answer won every decided verdict
    md = (tmp_path / "biased" / "eval" / "calibration.md").read_text()
    assert "| flip rate between the orders | 1.0 |" in md
    assert "| first-shown answer wins (decided verdicts; unbiased 0.5) | 1.0 |" in md


MALFORMED_VOTES = {
    "turn not a number": ({"turn": "two"}, "row 1: turn 'two' is not a number"),
    "conversation as a string": ({"conversation_a": "USER: hi ASSISTANT: hello"}, "row 1: conversation_a is a string"),
    "ShareGPT messages": (
        {"conversation_b": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
        "row 1: conversation_b has ShareGPT's from/value messages",
    ),
}


@pytest.mark.parametrize("change", MALFORMED_VOTES, ids=list(MALFORMED_VOTES))
def test_a_malformed_human_vote_file_is_one_line_naming_the_row_and_nothing_is_asked(tmp_path, change):
    from baize.io.errors import UsageError

    row = json.loads(human_judgments(tmp_path / "good.jsonl").read_text().splitlines()[0])
    fields, says = MALFORMED_VOTES[change]
    path = tmp_path / "votes.jsonl"
    path.write_text(json.dumps({**row, **fields}) + "\n")
    with OpenAIServer(lambda request: Reply("5 5")) as server:
        config = config_for(tmp_path, server, step="calibrate", calibration_path=str(path))
        with pytest.raises(UsageError, match=f"calibration_path {path}: {says}") as raised:
            evaluate.main(config)
        assert not server.requests
    assert "\n" not in str(raised.value)


def test_the_report_says_not_identified_instead_of_a_number_and_an_interval():
    from baize.evaluate.report import judge_section

    overall = {"lc_win_rate": None, "lc_win_rate_ci": None, "lc_not_identified": True, "adjusted_win_rate": 0.5}
    row = [line for line in judge_section({"overall": overall, "confidence": 0.95}) if "length-controlled" in line]
    assert row == ["| length-controlled win rate (95% CI) | not identified: length explains every verdict | |"]
    overall = {**overall, "lc_win_rate": 0.654, "lc_win_rate_ci": [0.5, 0.8], "lc_not_identified": False}
    row = [line for line in judge_section({"overall": overall, "confidence": 0.95}) if "length-controlled" in line]
    assert row == ["| length-controlled win rate (95% CI) | 0.654 (0.500 to 0.800) | |"]
