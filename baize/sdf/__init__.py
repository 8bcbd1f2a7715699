"""`baize sdf`: Baize v2, Self-Distillation with Feedback (arXiv 2304.01196 section 3.3), as four resumable steps.

    python -m baize.sdf --config recipes/baize-smol/sdf.yaml                      # all steps
    python -m baize.sdf --config recipes/baize-smol/sdf.yaml --step judge         # one step
    python -m baize.sdf --config recipes/baize-v2-7b/sdf.yaml -- --max_steps 10   # after `--`: SFT overrides

1. `sample`  the v1 model answers every prompt N times through the one sampler (baize.llm.sampling), in this process
             or at `vllm serve` replicas -> candidates.jsonl (text, finish reason, tokens per candidate).
2. `judge`   the one judge (baize.judging.client) scores them: pointwise 1-100 (the paper) or king-of-the-hill pairs in
             both orders -> judged.jsonl, every score and rationale kept.
3. `select`  the best candidate per prompt (min_score) -> selected.jsonl; best vs worst -> preferences.jsonl.
4. `train`   v1 merged into its base (frozen) and a NEW LoRA trained on top with `baize train` -> v2, its lineage
             and card (`card`).

Every step appends durably and skips what is done, so re-running the same command continues; sample and judge
sign the settings that shape their outputs (`config`) and refuse to mix runs. A judge that cannot be reached, or
fails some prompts, makes the run exit non-zero naming its URL.
"""

from __future__ import annotations

import json
import sys

from baize.io.errors import UsageError, configure_logging, one_line_errors
from baize.io.jsonl import read_jsonl
from baize.io.runs import check_output_dir
from baize.sdf.config import (
    CANDIDATES_FILE,
    JUDGE_SIGNATURE,
    JUDGED_FILE,
    PREFERENCES_FILE,
    SAMPLE_SIGNATURE,
    SELECTED_FILE,
    STEPS,
    SDFConfig,
    judge_settings,
    parse_args,
    sample_settings,
)
from baize.sdf.judge import JUDGE_CACHE_FILE, judge_rows, judge_step, plan_step
from baize.sdf.rounds import run_rounds, serving
from baize.sdf.sample import load_prompts, load_v1, sample_step
from baize.sdf.select import best_and_worst, select_step
from baize.sdf.train import merged_v1, train_step

__all__ = [
    "CANDIDATES_FILE", "JUDGED_FILE", "JUDGE_SIGNATURE", "PREFERENCES_FILE", "SAMPLE_SIGNATURE", "SELECTED_FILE",
    "JUDGE_CACHE_FILE", "STEPS", "SDFConfig", "best_and_worst", "cli", "judge_rows", "judge_settings",
    "judge_step", "load_prompts", "load_v1", "main", "merged_v1", "parse_args",
    "read_jsonl", "sample_settings", "sample_step", "select_step", "train_step",
]  # fmt: skip


def main(config: SDFConfig, train_argv: list[str] | None = None) -> dict:
    configure_logging()
    check_output_dir(config.output_dir)
    if config.plan:
        return {"plan": plan_step(config)}
    if config.serve_command and not config.sample_base_urls:
        raise UsageError(
            "serve_command needs sample_base_urls: the URLs (host and port each) where baize starts the servers "
            "and samples, e.g. --sample_base_urls http://127.0.0.1:8100/v1"
        )
    if config.rounds > 1:
        if config.step != "all":
            raise UsageError("rounds > 1 runs every step of every round: leave --step at all")
        if config.sample_base_urls and not config.serve_command:  # servers serve what they were started on
            raise UsageError(
                "rounds > 1 with sample_base_urls but no serve_command: the servers at those URLs serve v1, so round "
                "2 would sample v1 again; set serve_command (e.g. 'vllm serve {model} --host {host} --port {port}') "
                "so that baize serves each round's model there, or run the rounds in-process (no sample_base_urls)"
            )
        return run_rounds(config, train_argv)
    steps = STEPS[:-1] if config.step == "all" else (config.step,)
    if config.round_method == "grpo":  # online: the trainer samples and the judge rewards as it trains
        if config.step not in ("all", "train"):
            raise UsageError(f"round_method grpo has no {config.step} step: the GRPO trainer samples and the judge "
                             "scores as it trains; run --step all (or train)")  # fmt: skip
        steps = ("train",)
    run = {"judge": judge_step, "select": select_step}
    results = {}
    with serving(config) as served:
        for step in steps:
            if step == "sample":  # a whole run checks its judge before minutes of sampling
                serve = None
                if served:  # v1 merged and served by serve_command, stopped before the training
                    config, serve = served.for_sampling(config, config.model_name_or_path)
                results[step] = sample_step(config, preflight_judge=config.step == "all", serve=serve)
                if served:
                    served.engines.stop()
            elif step == "train":
                results[step] = train_step(config, train_argv)
            else:
                results[step] = run[step](config)
    return results


def cli(argv: list[str] | None = None) -> None:
    with one_line_errors("baize sdf"):
        config, train_argv = parse_args(argv)
        results = main(config, train_argv)
    print(json.dumps({k: v for k, v in results.items() if k != "train"}, indent=2, default=str), flush=True)


if __name__ == "__main__":
    cli(sys.argv[1:])
