"""Baize v1 SFT: LoRA on a (quantised) base with TRL's SFTTrainer, driven by one flat YAML recipe.

    python -m baize.train --config recipes/baize-smol/sft.yaml [--any_recipe_key value ...]
    accelerate launch --config_file accelerate_configs/multi_gpu.yaml -m baize.train --config recipes/baize-7b/sft.yaml

Every key of the recipe is a field of one of the dataclasses below (TRL's ScriptArguments, SFTConfig,
ModelConfig, DatasetMixtureConfig, each extended by a field or two), so `--help` lists them all and
the command line overrides the recipe. Re-running with the same `output_dir` resumes from the last
checkpoint.
"""

from __future__ import annotations

import json
import logging
import re
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from trl import ScriptArguments, SFTConfig

from baize.data.decontaminate import DecontaminationArguments
from baize.io.errors import UsageError, configure_logging, one_line_errors
from baize.modeling import training
from baize.modeling.launch import require_saved_model, trainable_weights_for_fp16
from baize.modeling.plan_recipe import PlanArguments
from baize.modeling.speed import SpeedArguments, apply_speed_options, selective_checkpointing_callback
from baize.prompts import most_common_system_prompt, record_system_prompt

logger = logging.getLogger("baize.train")


@dataclass
class BaizeScriptArguments(ScriptArguments, DecontaminationArguments, PlanArguments):
    on_bad_row: str = field(
        default="error",
        metadata={
            "help": "What to do with a malformed data row: 'error' stops with the file and row named, "
            "'skip' drops it and counts it in the log and run summary.",
            "choices": ["error", "skip"],
        },
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Start over: delete output_dir's checkpoints and outputs first. Without it, re-running a finished "
            "run does nothing, and re-running with other settings is refused."
        },
    )
    skip_preflight: bool = field(
        default=False,
        metadata={
            "help": "Do not check, before anything else, that the base model and the Hub datasets can be loaded "
            "(from the Hub, or from the local cache when offline)."
        },
    )


@dataclass
class BaizeSFTConfig(training.LaunchMatchedConfig, SpeedArguments, SFTConfig):
    # Baize v1.5 and later: loss on AI turns only, through the {% generation %} markers of the template.
    assistant_only_loss: bool = field(
        default=True, metadata={"help": "Compute the loss on AI turns (and their EOS) only."}
    )


def parse_args(argv: list[str] | None = None):
    script_args, training_args, model_args, dataset_args = training.parse_training_recipe(
        BaizeScriptArguments, BaizeSFTConfig, argv, prog="baize train",
        description="Fine-tune a Baize chat model (LoRA SFT with TRL) from a YAML recipe: "
        "baize train --config recipes/baize-smol/sft.yaml [--key value ...]",
    )  # fmt: skip
    if getattr(script_args, "dataset_name", None):  # TRL would quietly prefer the recipe's `datasets:` over it
        raise UsageError(
            f"--dataset_name {script_args.dataset_name}: baize recipes read their data from `datasets:`; pass "
            f"--datasets {script_args.dataset_name} instead (a file, folder or Hub id; a mixture stays in the YAML)"
        )
    return script_args, training_args, model_args, dataset_args


def peak_memory_mb() -> dict[str, float]:
    import torch

    peak = {"cpu_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        peak["gpu_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def run_summary(trainer, train_metrics: dict, wall_seconds: float, data_report, start_step: int = 0,
                earlier_seconds: float = 0.0) -> dict:  # fmt: skip
    """Steps, loss first -> last, tokens, runtime and throughput of the whole run, and peak memory, from the
    Trainer's own logs. After a resume the log history covers the earlier run too; the earlier run's training
    seconds come from its checkpoint (training.RUNTIME_FILE). `this_run` holds this invocation's own figures."""
    history = trainer.state.log_history
    losses = [entry["loss"] for entry in history if "loss" in entry]
    before = max((e.get("num_tokens", 0) for e in history if e.get("step", 0) <= start_step), default=0)
    after = [e["num_tokens"] for e in history if e.get("step", 0) > start_step and "num_tokens" in e]
    # TRL's token counter starts again at 0 in a resumed run (the restored history keeps the earlier counts)
    restarted = bool(after) and min(after) < before
    this_run_tokens = (max(after) - (0 if restarted else before)) if after else 0
    tokens = before + this_run_tokens
    runtime = train_metrics.get("train_runtime") or wall_seconds
    total_runtime = earlier_seconds + runtime
    summary = {
        "global_step": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "eval_loss_last": next((e["eval_loss"] for e in reversed(history) if "eval_loss" in e), None),
        "train_tokens": tokens,
        "train_runtime_s": round(total_runtime, 2),
        "tokens_per_second": round(tokens / total_runtime, 1) if total_runtime and tokens else None,
        "this_run": {
            "resumed_from_step": start_step,
            "train_tokens": this_run_tokens,
            "train_runtime_s": round(runtime, 2),
            "tokens_per_second": round(this_run_tokens / runtime, 1) if runtime and this_run_tokens else None,
        },
        "train_samples": len(trainer.train_dataset),
        "num_processes": trainer.accelerator.num_processes,
        "mixed_precision": trainer.accelerator.mixed_precision,
        "gradient_accumulation_steps": trainer.args.gradient_accumulation_steps,
        "data": {
            "kept": dict(data_report.kept),
            "skipped": dict(data_report.skipped),
            "decontaminated_against": data_report.checked_against,
            "contaminated": dict(data_report.contaminated),
        },  # fmt: skip
        **{k: round(v, 1) for k, v in peak_memory_mb().items()},
    }
    return summary


def main(script_args, training_args, model_args, dataset_args, recipe: str | None = None) -> dict:
    from trl import SFTTrainer, get_peft_config

    from baize.data.formats import load_chat_mixture
    from baize.hub.cards import LOSS_PLOT, model_title, sft_model_card

    configure_logging()
    settings, finished = training.begin(script_args, training_args, model_args, dataset_args)
    if finished is not None:
        return finished
    if training_args.push_to_hub and training_args.process_index == 0:  # a bad token now, not after training
        from baize.hub import whoami_name

        whoami_name()

    model_path, quantization_config = training.prepare_model_loading(model_args, training_args)
    training_args.run_name = training_args.run_name or model_title(training_args.output_dir)  # trackio/wandb run
    if (hint := training.trackio_hint(training_args)) and training_args.process_index == 0:
        logger.info("%s (live, while this run trains)", hint)

    with training_args.main_process_first(desc="load and convert datasets"):
        dataset, data_report = load_chat_mixture(
            dataset_args, script_args.on_bad_row, seed=training_args.seed, decontaminate=script_args.decontaminate,
            max_contaminated_fraction=script_args.max_contaminated_fraction,
        )  # fmt: skip
    logger.info("Data: %s", data_report.summary())
    eval_dataset = dataset["test"] if "test" in dataset and training_args.eval_strategy != "no" else None

    # baize pushes once, at the end, with its own card and without checkpoints or training_args.bin;
    # the Trainer would push at start, at every save and with TRL's card.
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    trainer = training.without_generic_card(SFTTrainer)(
        model=model_path,
        args=training_args,
        train_dataset=dataset["train"].select_columns(["messages"]),
        eval_dataset=eval_dataset.select_columns(["messages"]) if eval_dataset is not None else None,
        peft_config=get_peft_config(model_args),
        quantization_config=quantization_config,
    )

    trainable_weights_for_fp16(trainer.model, training_args)
    speed = apply_speed_options(trainer.model, training_args)
    selective = None
    if training_args.selective_checkpointing and training_args.gradient_checkpointing:
        selective = selective_checkpointing_callback()
        trainer.add_callback(selective)
    checkpoint = training.resume_checkpoint(training_args)
    resumed = re.search(r"checkpoint-(\d+)/?$", str(checkpoint or ""))
    start_step = int(resumed.group(1)) if resumed else 0
    runtime = training.runtime_recorder(checkpoint if isinstance(checkpoint, str) else None)
    trainer.add_callback(runtime)
    start = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    summary = run_summary(
        trainer, train_result.metrics, time.perf_counter() - start, data_report, start_step, runtime.earlier
    )
    if selective is not None:
        speed["selectively_checkpointed_layers"] = selective.layers
    if speed:
        summary["speed_options"] = speed

    trainer.save_model(training_args.output_dir)
    if trainer.is_world_process_zero():
        require_saved_model(training_args.output_dir, adapter=model_args.use_peft)
        training.plot_loss(
            trainer.state.log_history, Path(training_args.output_dir, LOSS_PLOT), model_title(training_args.output_dir)
        )
        training.write_resolved_recipe(training_args.output_dir, script_args, model_args, dataset_args, training_args)
        # The tokenizer carries the Baize chat template, so inference uses the training text exactly.
        trainer.processing_class.save_pretrained(training_args.output_dir)
        # Inference defaults to the system text the adapter was trained with (baize.prompts).
        record_system_prompt(training_args.output_dir, most_common_system_prompt(dataset["train"]["messages"]))
        card = sft_model_card(
            training_args.output_dir,
            recipe=recipe or "command line",
            model_args=model_args,
            training_args=training_args,
            dataset_args=dataset_args,
            summary=summary,
        )
        card.save(Path(training_args.output_dir, "README.md"))
        Path(training_args.output_dir, "run_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print("Run summary:", json.dumps(summary, indent=2), flush=True)
        if hint := training.trackio_hint(training_args):
            print(hint, flush=True)
    training.finish_run(training_args, settings)
    if push_to_hub and trainer.is_world_process_zero():
        from baize.hub import push_training_output

        push_training_output(training_args, model_args)
    trainer.accelerator.wait_for_everyone()
    trainer.end()
    return summary


def cli(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    recipe = argv[argv.index("--config") + 1] if "--config" in argv[:-1] else None
    with one_line_errors("baize train"):
        args = parse_args(argv)
        if args[0].plan:  # memory, fit, time and cost from the recipe: no weights, no GPU
            from baize.data.formats import load_chat_mixture
            from baize.modeling.plan_recipe import plan_from_recipe

            script_args, training_args, model_args, dataset_args = args
            rows = lambda: load_chat_mixture(dataset_args, on_bad_row="skip")[0]["train"]  # noqa: E731
            plan_from_recipe(script_args, training_args, model_args, rows)
            return
        main(*args, recipe=recipe)


if __name__ == "__main__":
    cli(sys.argv[1:])
