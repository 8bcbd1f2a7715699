"""round_method grpo: the new LoRA learns online. TRL's GRPOTrainer samples num_candidates answers per prompt at
every step from the policy (the new LoRA on the frozen, merged parent) and the one judge scores them as its reward
(baize.judging.reward: the verdict cache, re-asks, limits and the budget). No sample, judge or select step: the
round's prompts go to the trainer as they are (grpo_prompts.jsonl), and the gate decides as for every round.

Resume: the trainer continues from the output dir's last checkpoint, with its random state, so the completions of
an interrupted step come again and their verdicts from the cache; a finished run trains nothing."""

from __future__ import annotations

import json
import logging
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from trl import GRPOConfig, ScriptArguments

from baize.io.jsonl import write_jsonl_atomically, write_text_atomically
from baize.judging.reward import JudgeReward
from baize.modeling import training
from baize.modeling.launch import require_saved_model, trainable_weights_for_fp16
from baize.sdf.config import GRPO_PROMPTS_FILE, REWARD_CACHE_FILE, REWARD_SUMMARY_FILE, SDFConfig
from baize.sdf.sample import load_prompts, load_v1, with_system

logger = logging.getLogger("baize.sdf")


@dataclass
class GRPOScriptArguments(ScriptArguments):
    overwrite: bool = field(
        default=False, metadata={"help": "Start over: delete output_dir first (else a finished run does nothing)."}
    )


@dataclass
class BaizeGRPOConfig(training.LaunchMatchedConfig, GRPOConfig):
    pass


def parse_args(argv: list[str]):
    return training.parse_training_recipe(
        GRPOScriptArguments, BaizeGRPOConfig, argv, prog="baize sdf (round_method grpo)",
        description="GRPO of a new LoRA with the judge as its reward: grpo_config: recipes/X/sdf-grpo.yaml",
    )  # fmt: skip


def grpo_prompts(config: SDFConfig) -> Path:
    """The round's prompts as TRL's conversational `prompt` column, with the system text the model was trained
    under (as the sample step sends them)."""
    system = load_v1(config, without_weights=True).prompt_builder().system
    rows = [{"id": prompt["id"], "prompt": with_system(prompt["messages"], system)} for prompt in load_prompts(config)]
    path = Path(config.output_dir) / GRPO_PROMPTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomically(path, rows)
    return path


def reward_summary(reward: JudgeReward, log_history: list[dict], prompts: int) -> dict:
    """The judge's part of the round: what it scored, what the cache saved, the spend, and the mean reward of the
    first and the last logged steps."""
    means = [entry[f"rewards/{reward.__name__}/mean"] for entry in log_history
             if f"rewards/{reward.__name__}/mean" in entry]  # fmt: skip
    head, tail = means[: max(1, len(means) // 4)], means[-max(1, len(means) // 4) :]
    return {
        "prompts": prompts, **reward.counts, "spent": reward.spent.as_dict(),
        "reward_first_steps": round(statistics.mean(head), 3) if means else None,
        "reward_last_steps": round(statistics.mean(tail), 3) if means else None, "logged_steps": len(means),
    }  # fmt: skip


def run_grpo(config: SDFConfig, script_args, training_args, model_args, dataset_args) -> dict:
    from transformers import AutoTokenizer
    from trl import GRPOTrainer, get_dataset, get_peft_config

    settings, finished = training.begin(script_args, training_args, model_args, dataset_args)
    if finished is not None:
        return finished
    model_path, quantization_config = training.prepare_model_loading(model_args, training_args)
    dataset = get_dataset(dataset_args)[script_args.dataset_train_split]
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tokenizer.chat_template = Path(training_args.chat_template_path).read_text()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    reward = JudgeReward(config, Path(config.output_dir) / REWARD_CACHE_FILE, max_cost=config.max_cost,
                         max_tokens=config.max_tokens, process_index=training_args.process_index)  # fmt: skip
    trainer = training.without_generic_card(GRPOTrainer)(
        model=model_path, reward_funcs=[reward], args=training_args,
        train_dataset=dataset.select_columns(["prompt"]), processing_class=tokenizer,
        peft_config=get_peft_config(model_args), quantization_config=quantization_config,
    )  # fmt: skip
    trainable_weights_for_fp16(trainer.model, training_args)
    result = trainer.train(resume_from_checkpoint=training.resume_checkpoint(training_args))
    trainer.save_model(training_args.output_dir)
    summary = reward_summary(reward, trainer.state.log_history, len(dataset))
    if trainer.is_world_process_zero():
        out = Path(training_args.output_dir)
        require_saved_model(out, adapter=model_args.use_peft)
        tokenizer.save_pretrained(out)
        training.plot_loss(trainer.state.log_history, out / "loss.png")
        training.write_resolved_recipe(out, script_args, model_args, dataset_args, training_args)
        (out / "run_summary.json").write_text(json.dumps(result.metrics, indent=2) + "\n")
        write_text_atomically(Path(config.output_dir) / REWARD_SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
        logger.info("grpo: mean reward %s (first steps) -> %s (last steps); %d completions judged, %d from the cache",
                    summary["reward_first_steps"], summary["reward_last_steps"], summary["completions"],
                    summary["cache_hits"])  # fmt: skip
    training.finish_run(training_args, settings)
    trainer.accelerator.wait_for_everyone()
    return {**result.metrics, "reward": summary}
