"""Step 3, report: results.json, results.md (tables with answer lengths beside the scores) and the charts, from
judgements.jsonl and the answer files."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from baize.data.text_quality import repetition_problem
from baize.evaluate.answer import contestants, read_answers
from baize.evaluate.charts import plot_charts, plot_turn_charts
from baize.evaluate.config import JUDGEMENTS_FILE, EvalConfig
from baize.evaluate.stats import summarize
from baize.io.errors import UsageError
from baize.io.jsonl import read_jsonl
from baize.judging.compare import JUDGE_FIGURES

logger = logging.getLogger("baize.eval")


def markdown_table(results: dict) -> str:
    model, reference = results["model"], results["reference"]
    confidence = int(results["confidence"] * 100)
    lines = [
        f"# {model} vs {reference}",
        "",
        f"Judge: `{results['judge']}`{' (' + results['judge_note'] + ')' if results.get('judge_note') else ''}, "
        f"scores 1-10. **Score %**: {model}'s total as a % of {reference}'s, reference "
        f"shown first (the Baize paper's metric). **Win/tie/loss**: asked in both orders; a win or loss needs both "
        f"orders to agree; **unjudged**: a verdict did not parse. **Adj. win rate** = (win + tie/2) / judged. Intervals: {confidence}% bootstrap over "
        "questions. **Words**: mean answer length.",
        "",
        f"| category | n | score % | {confidence}% CI | score % (both orders) | win | tie | loss | unjudged "
        f"| adj. win rate | {confidence}% CI | words {model} | words {reference} |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    head = lines[-2:]  # the score table's header and separator, repeated for every turn
    lines += score_rows(results)
    for turn, blocks in (results.get("turns") or {}).items():
        lines += ["", f"## Turn {turn}", "", *head, *score_rows(blocks)]
    if results["overall"].get("model_single_score") is not None:
        lines += single_grading_table(results)
    lines += judge_section(results)
    lines += [
        "",
        f"Unparsed verdicts: {results['unparsed_verdicts']} of {results['verdicts']} (counted as unjudged, never as "
        "a score).",
    ]
    repetition = results.get("repetition_rate")
    if repetition:
        lines += [
            "",
            f"Answers that loop (a span repeated back to back, a sentence again and again; the rule collection's "
            f"cleaning drops by): {model} {repetition['looping']['model']} of {repetition['answers']['model']} "
            f"({_fmt(repetition['model'], 3)}), {reference} {repetition['looping']['reference']} of "
            f"{repetition['answers']['reference']} ({_fmt(repetition['reference'], 3)}).",
        ]
    cut = results.get("cut_at_max_new_tokens")
    if cut:
        lines += [
            "",
            f"Answers cut at max_new_tokens ({cut['max_new_tokens']}, the same budget for both): {model} "
            f"{cut['model']}, {reference} {cut['reference']}.",
        ]
    return "\n".join(lines) + "\n"


NOT_IDENTIFIED = "not identified: length explains every verdict"


def judge_section(results: dict) -> list[str]:
    """How far the judge's verdicts can be trusted (docs/eval.md: how to read these)."""
    overall, confidence = results["overall"], int(results["confidence"] * 100)
    lc_ci = overall.get("lc_win_rate_ci")
    flag = results.get("judge_flag")
    return [
        "",
        "## The judge",
        "",
        "| figure | value | an unbiased judge |",
        "|---|---|---|",
        *(f"| {label} | {_fmt(overall.get(key), 3)} | {unbiased} |" for key, label, unbiased in JUDGE_FIGURES),
        f"| adjusted win rate | {_fmt(overall.get('adjusted_win_rate'), 3)} | |",
        f"| length-controlled win rate ({confidence}% CI) | {length_controlled_cell(overall, lc_ci)} | |",
        *(["", f"**{flag}**"] if flag else []),
    ]


def length_controlled_cell(overall: dict, lc_ci) -> str:
    if overall.get("lc_not_identified"):
        return NOT_IDENTIFIED
    return f"{_fmt(overall.get('lc_win_rate'), 3)} ({_fmt(lc_ci[0], 3) if lc_ci else '–'} to {_fmt(lc_ci[1], 3) if lc_ci else '–'})"


def _fmt(value, digits=1):
    return "–" if value is None else f"{value:.{digits}f}"


def _ci(values, digits=1):
    return "–" if values is None else f"{values[0]:.{digits}f}–{values[1]:.{digits}f}"


def score_rows(results: dict) -> list[str]:
    fmt, ci = _fmt, _ci
    lines = []
    for name, block in [*results["categories"].items(), ("**overall**", results["overall"])]:
        lines.append(
            f"| {name} | {block['questions']} | {fmt(block['score_pct'])} | {ci(block['score_pct_ci'])} "
            f"| {fmt(block['score_pct_both_orders'])} | {block['win']} | {block['tie']} | {block['loss']} "
            f"| {block['unjudged']} | {fmt(block['adjusted_win_rate'], 3)} | {ci(block['adjusted_win_rate_ci'], 3)} "
            f"| {fmt(block['model_words'])} | {fmt(block['reference_words'])} |"
        )
    return lines


def single_grading_table(results: dict) -> list[str]:
    """Single-answer grades (1-10) per category and turn, MT-Bench style."""
    model, reference = results["model"], results["reference"]
    turns = list(results.get("turns") or {"1": results})
    confidence = int(results["confidence"] * 100)
    head = " | ".join(f"turn {t} {who}" for t in turns for who in (model, reference))
    lines = [
        "",
        "## Single-answer grading",
        "",
        f"Each answer graded on its own, 1-10, by `{results['judge']}` (MT-Bench's single-answer grading; the "
        f"question's reference answer shown in {', '.join(results['reference_guided_categories'])}). Mean grade; "
        f"overall with its {confidence}% bootstrap interval. **By grade**: the grades as a comparison, all turns: "
        f"{model} wins a question where its grade is higher, equal grades tie; adjusted win rate with its interval.",
        "",
        f"| category | {head} | all turns {model} | all turns {reference} | by grade win/tie/loss "
        f"| by grade adj. win rate ({confidence}% CI) |",
        "|---|" + "---|" * (2 * len(turns) + 4),
    ]
    blocks = {t: (results.get("turns") or {"1": results})[t] for t in turns}
    for name in [*results["categories"], "overall"]:
        cells = []
        for t in turns:
            block = blocks[t]["overall"] if name == "overall" else blocks[t]["categories"].get(name, {})
            cells += [_fmt(block.get("model_single_score")), _fmt(block.get("reference_single_score"))]
        pooled = results["overall"] if name == "overall" else results["categories"][name]
        both = [_fmt(pooled.get("model_single_score")), _fmt(pooled.get("reference_single_score"))]
        if name == "overall":
            both = [
                f"{b} ({_ci(pooled.get(f'{role}_single_score_ci'), 2)})"
                for b, role in zip(both, ("model", "reference"), strict=True)
            ]
        by_grade = [
            f"{pooled.get('single_win', 0)}/{pooled.get('single_tie', 0)}/{pooled.get('single_loss', 0)}",
            f"{_fmt(pooled.get('single_adjusted_win_rate'), 3)} ({_ci(pooled.get('single_adjusted_win_rate_ci'), 3)})",
        ]
        lines.append(f"| {'**overall**' if name == 'overall' else name} | {' | '.join(cells + both + by_grade)} |")
    return lines


def report_step(config: EvalConfig) -> dict:
    """Step 3: results.json, results.md and the charts, from judgements.jsonl and the answer files."""
    folder = Path(config.output_dir)
    judged = read_jsonl(folder / JUDGEMENTS_FILE)
    if not judged:
        raise UsageError(f"{folder / JUDGEMENTS_FILE}: no judgements yet (run the judge step first)")
    model, reference = contestants(config)
    answers = {role: read_answers(config, c) for role, c in (("model", model), ("reference", reference))}
    lengths = {role: {i: row["words"] for i, row in rows.items()} for role, rows in answers.items()}
    # Answers cut at max_new_tokens: a reference cut more often than the model is judged on unfinished text.
    cut = {role: sum(row.get("finish_reason") == "length" for row in rows.values()) for role, rows in answers.items()}
    # Answers that loop (baize.data.text_quality, the rule collection's cleaning drops by): Baize's users' issue #5.
    looping = {role: sum(repetition_problem(row.get("answer") or "") is not None for row in rows.values())
               for role, rows in answers.items()}  # fmt: skip
    repetition = {
        **{role: round(n / len(answers[role]), 3) if answers[role] else None for role, n in looping.items()},
        "answers": {role: len(rows) for role, rows in answers.items()},
        "looping": looping,
    }

    def blocks(rows: list[dict]) -> dict:
        categories: dict[str, list[dict]] = {}
        for row in rows:
            categories.setdefault(row["category"], []).append(row)
        return {
            "categories": {name: summarize(config, group, lengths) for name, group in categories.items()},
            "overall": summarize(config, rows, lengths),
        }

    turns = sorted({row.get("turn", 1) for row in judged})
    verdicts = [
        v
        for row in judged
        for v in (row["reference_first"], row.get("model_first"), *(row.get("single") or {}).values())
        if v is not None
    ]
    results = {
        "model": model.label,
        "model_spec": model.spec,
        "reference": reference.label,
        "reference_spec": reference.spec,
        "judge": judged[0]["judge"],
        "judge_note": config.judge_note,
        "confidence": config.confidence,
        **blocks(judged),  # all turns together
        "turns": {str(t): blocks([r for r in judged if r.get("turn", 1) == t]) for t in turns}
        if len(turns) > 1
        else None,
        "verdicts": len(verdicts),
        "unparsed_verdicts": sum(v["value"] is None for v in verdicts),
        "reference_guided_categories": config.reference_guided_categories,
        "cut_at_max_new_tokens": {**cut, "max_new_tokens": config.max_new_tokens},
        "repetition_rate": repetition,
        "config": {k: v for k, v in asdict(config).items() if "api_key" not in k},
    }
    overall = results["overall"]
    if overall.get("flip_rate") is not None and overall["flip_rate"] > config.max_flip_rate:
        results["judge_flag"] = (
            f"judge flagged: its verdicts flip in {overall['flip_rate']:.0%} of the pairs when the answers swap "
            f"places (over max_flip_rate {config.max_flip_rate}); read the win rates with care"
        )
    (folder / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "results.md").write_text(markdown_table(results), encoding="utf-8")
    charts = plot_charts(results, folder) + plot_turn_charts(results, folder)
    score = "no verdicts" if overall["score_pct"] is None else f"score {overall['score_pct']}% of {reference.label}"
    win_rate = "–" if overall["adjusted_win_rate"] is None else overall["adjusted_win_rate"]
    by_grade = (
        f"by grade win/tie/loss {overall['single_win']}/{overall['single_tie']}/{overall['single_loss']}, adjusted "
        f"win rate {_fmt(overall['single_adjusted_win_rate'], 3)}, "
        if "single_win" in overall
        else ""
    )
    logger.info(
        "report: %s, win/tie/loss/unjudged %d/%d/%d/%d, adjusted win rate %s (length-controlled %s), %sjudge flip "
        "rate %s, longer answer wins %s, %d of %d verdicts unparsed -> %s%s",
        score, overall["win"], overall["tie"], overall["loss"], overall["unjudged"], win_rate,
        NOT_IDENTIFIED if overall.get("lc_not_identified") else overall.get("lc_win_rate"), by_grade,
        overall.get("flip_rate"), overall.get("longer_answer_win_rate"),
        results["unparsed_verdicts"], results["verdicts"], folder / "results.md",
        f"; {results['judge_flag']}" if results.get("judge_flag") else "",
    )  # fmt: skip
    return {
        "overall": overall,
        "turns": {turn: blocks["overall"] for turn, blocks in (results["turns"] or {}).items()} or None,
        "unparsed_verdicts": results["unparsed_verdicts"],
        "verdicts": results["verdicts"],
        "files": ["results.json", "results.md", *charts],
    }
