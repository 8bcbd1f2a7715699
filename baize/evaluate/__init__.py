"""`baize eval`: the Baize paper's metric and a position-bias-free pairwise judge, in three resumable steps.

    baize eval --config recipes/baize-smol/eval.yaml                    # answer, judge, report
    baize eval --config recipes/baize-7b/eval.yaml --step report         # tables and charts from the files
    baize eval --config recipes/baize-7b/eval.yaml --model me/baize-7b --model_label mine

1. answer  the model and the reference answer every question -> answers/<label>.jsonl, appended as they are
           done (a re-run answers only what is missing). A contestant is an adapter or model (a local folder
           or Hub id, loaded like `baize chat`; batched generation), or `openai:MODEL` at an OpenAI-compatible
           endpoint (the paper's reference: `openai:gpt-3.5-turbo`). Temperatures are set per category
           (writing 0.7, math 0.0, ...). Questions: the project's own 80 over 9 Vicuna-style categories
           (baize/eval_questions.jsonl), or any Hub dataset / local file of prompts (e.g. MT-Bench's).
2. judge   per question, the judge scores both answers 1-10 side by side, asked twice:
           - reference first, as the paper did (GPT-4 with ChatGPT first): the paper's metric is the model's
             total score as a % of the reference's, per category and overall;
           - model first: a side wins a question only if it wins in both orders; a disagreement between the
             orders (position bias) or an equal score is a tie. Reported as win/tie/loss and the adjusted win
             rate (win + tie/2) with a bootstrap confidence interval over questions.
           Every verdict is cached on disk (judge_cache.jsonl) under the question, the answers in the order
           shown, the judge and the prompt, so a re-run (or a resumed run) asks the judge nothing twice.
3. report  results.json, results.md (a Markdown table with answer lengths next to the scores) and bar charts
           per category: scores_by_category.png, pairwise_by_category.png.

Modules: `config` (recipe keys, rubrics), `questions`, `answer` (the one sampler), `judge` (the one judge),
`stats` (scores, win rates, the judge's bias figures), `report` (tables), `charts`, `calibrate` (the judge
against human votes: `--step calibrate`).
"""

from __future__ import annotations

import json
import sys

from baize.evaluate.answer import Contestant, answer_step, contestants, read_answers
from baize.evaluate.calibrate import calibrate_step
from baize.evaluate.config import STEPS, TWO_TURN_QUESTIONS_FILE, EvalConfig, parse_args
from baize.evaluate.judge import judge_step, plan_step
from baize.evaluate.questions import load_questions
from baize.evaluate.report import report_step
from baize.io.errors import configure_logging, one_line_errors
from baize.io.jsonl import read_jsonl
from baize.io.runs import check_output_dir

__all__ = [
    "STEPS", "TWO_TURN_QUESTIONS_FILE", "Contestant", "EvalConfig", "answer_step", "cli",
    "contestants", "judge_step", "load_questions", "main", "parse_args", "read_answers", "read_jsonl",
    "report_step",
]  # fmt: skip


def main(config: EvalConfig) -> dict:
    check_output_dir(config.output_dir)
    if config.plan:
        return {"plan": plan_step(config)}
    steps = {"judge": judge_step, "report": report_step, "calibrate": calibrate_step}
    todo = ["answer", "judge", "report"] if config.step == "all" else [config.step]
    # a whole run checks its judge before minutes of answering
    return {step: answer_step(config, config.step == "all") if step == "answer" else steps[step](config)
            for step in todo}  # fmt: skip


def cli(argv: list[str] | None = None) -> None:
    configure_logging()
    with one_line_errors("baize eval"):
        summary = main(parse_args(argv))
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    cli(sys.argv[1:])
