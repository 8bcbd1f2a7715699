"""DPO on SDF preference pairs: an alternative to the SFT step of `baize sdf` (TRL's DPOTrainer, LoRA).

    python -m baize.dpo --config recipes/baize-v2-7b/dpo.yaml [--any_key value ...]

`baize sdf --step select` writes OUTPUT_DIR/preferences.jsonl (best vs worst judged answer per prompt, TRL's
conversational prompt/chosen/rejected format). Point `datasets:` at it and `model_name_or_path` at the merged
v1 (OUTPUT_DIR/v1-merged, built by the sdf train step or `baize merge`): the new LoRA is trained on top of
the frozen v1 exactly as in the SFT path, and the reference model is v1 itself (the LoRA disabled).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from trl import DPOConfig, ScriptArguments

from baize.io.errors import one_line_errors
from baize.modeling import training
from baize.modeling.launch import require_saved_model, trainable_weights_for_fp16
from baize.modeling.plan_recipe import PlanArguments


@dataclass
class DPOScriptArguments(ScriptArguments, PlanArguments):
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Start over: delete output_dir first. Without it, re-running a finished run does nothing, and "
            "re-running with other settings is refused."
        },
    )


@dataclass
class BaizeDPOConfig(training.LaunchMatchedConfig, DPOConfig):
    pass


def parse_args(argv: list[str] | None = None):
    return training.parse_training_recipe(
        DPOScriptArguments, BaizeDPOConfig, argv, prog="baize dpo",
        description="DPO of a new LoRA on SDF preference pairs (baize sdf --step select): "
        "baize dpo --config recipes/baize-v2-7b/dpo.yaml [--key value ...]",
    )  # fmt: skip


def main(script_args, training_args, model_args, dataset_args) -> dict:
    from transformers import AutoTokenizer
    from trl import DPOTrainer, get_dataset, get_peft_config

    settings, finished = training.begin(script_args, training_args, model_args, dataset_args)
    if finished is not None:
        return finished
    model_path, quantization_config = training.prepare_model_loading(model_args, training_args)
    dataset = get_dataset(dataset_args)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tokenizer.chat_template = Path(training_args.chat_template_path).read_text()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    columns = ["prompt", "chosen", "rejected"]
    trainer = training.without_generic_card(DPOTrainer)(
        model=model_path,
        args=training_args,
        train_dataset=dataset[script_args.dataset_train_split].select_columns(columns),
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        quantization_config=quantization_config,  # load_in_8bit / load_in_4bit of the recipe
    )
    trainable_weights_for_fp16(trainer.model, training_args)
    # Like SFT: re-running the same command continues from the output dir's last checkpoint.
    result = trainer.train(resume_from_checkpoint=training.resume_checkpoint(training_args))
    trainer.save_model(training_args.output_dir)
    if trainer.is_world_process_zero():
        require_saved_model(training_args.output_dir, adapter=model_args.use_peft)
        tokenizer.save_pretrained(training_args.output_dir)
        training.plot_loss(trainer.state.log_history, Path(training_args.output_dir, "loss.png"))
        training.write_resolved_recipe(training_args.output_dir, script_args, model_args, dataset_args, training_args)
        Path(training_args.output_dir, "run_summary.json").write_text(json.dumps(result.metrics, indent=2) + "\n")
    training.finish_run(training_args, settings)
    trainer.accelerator.wait_for_everyone()
    return result.metrics


def cli(argv: list[str] | None = None) -> None:
    with one_line_errors("baize dpo"):
        args = parse_args(sys.argv[1:] if argv is None else argv)
        if args[0].plan:  # memory, fit, time and cost of the pairs' training: no weights, no GPU
            from trl import get_dataset

            from baize.modeling.plan_recipe import plan_from_recipe

            script_args, training_args, model_args, dataset_args = args
            rows = lambda: get_dataset(dataset_args)[script_args.dataset_train_split]  # noqa: E731
            plan_from_recipe(script_args, training_args, model_args, rows, pairs=True)
            return
        main(*args)


if __name__ == "__main__":
    cli(sys.argv[1:])
