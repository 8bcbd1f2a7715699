"""Step 4, train: the parent (v1, or the last round's model) merged into its base (frozen) and a NEW LoRA trained
on top, with `baize train` on selected.jsonl (round_method sft, the paper) or `baize dpo` on preferences.jsonl
(round_method dpo) -> the adapter, its lineage (sdf.json) and card section; pushed if the recipe says so."""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

from baize.hub import pull, push_adapter
from baize.hub.cards import card_base_model, how_to_path, model_title
from baize.hub.ids import hub_model_id
from baize.hub.lineage import LINEAGE_FILE, SDF_CARD_MARK, local_ancestors, read_lineage, sdf_card_section, version
from baize.io.errors import BaizeError, UsageError
from baize.modeling.merging import merge_adapter
from baize.sdf.config import PREFERENCES_FILE, REWARD_SUMMARY_FILE, SELECTED_FILE, SDFConfig

logger = logging.getLogger("baize.sdf")


def is_adapter(name_or_path: str) -> bool:

    return (Path(pull(name_or_path)) / "adapter_config.json").exists()


def merged_v1(config: SDFConfig) -> Path:
    """v1 folded into its base (once, cached in `merged_dir`): the frozen starting point of the v2 LoRA.

    A full v1 model (no adapter) is used as it is."""

    if not is_adapter(config.model_name_or_path):
        return Path(pull(config.model_name_or_path))
    target = Path(config.merged_dir or Path(config.output_dir) / "v1-merged")
    if not (target / "config.json").exists():
        logger.info("Merging v1 %s into its base -> %s", config.model_name_or_path, target)
        merge_adapter(
            config.model_name_or_path,
            target,
            base=config.base_model,
            gguf_file=config.gguf_file,
            dtype=config.merge_dtype,
            overwrite=True,
        )
    return target


def parse_recipe_for(config: SDFConfig, train_argv: list[str] | None):
    """The recipe of the new LoRA (SFT, DPO or GRPO), parsed by its own stage, and that stage's entry point."""
    if config.round_method == "grpo":
        from baize.sdf.online import parse_args, run_grpo

        # SDF's sampling settings are the policy's: N answers per prompt, its temperature, top-p and length
        sampling = ["--num_generations", str(config.num_candidates), "--temperature", str(config.temperature),
                    "--top_p", str(config.top_p), "--max_completion_length", str(config.max_new_tokens)]  # fmt: skip
        recipe = parse_args(["--config", config.grpo_config, *sampling, *(train_argv or [])])
        return recipe, partial(run_grpo, config), config.grpo_config
    if config.round_method == "dpo":
        from baize.dpo import main as run
        from baize.dpo import parse_args

        return parse_args(["--config", config.dpo_config, *(train_argv or [])]), run, config.dpo_config
    from baize.train import main as train_main
    from baize.train import parse_args

    if not config.train_config:
        raise BaizeError(
            "train_config is not set: name the SFT recipe for the v2 LoRA (e.g. recipes/X/sdf-train.yaml)"
        )

    def run(script_args, training_args, model_args, dataset_args):
        return train_main(script_args, training_args, model_args, dataset_args, recipe=config.train_config)

    return parse_args(["--config", config.train_config, *(train_argv or [])]), run, config.train_config


def training_data(config: SDFConfig) -> Path:
    """selected.jsonl (SFT), preferences.jsonl (DPO) or the round's prompts (GRPO), or one line saying why the select
    step left it empty."""
    if config.round_method == "grpo":
        from baize.sdf.online import grpo_prompts

        return grpo_prompts(config)
    folder = Path(config.output_dir)
    data = folder / (PREFERENCES_FILE if config.round_method == "dpo" else SELECTED_FILE)
    if not data.exists():
        raise BaizeError(f"{data} is missing: run the select step first")
    if not data.read_text().strip():
        summary = folder / "select_summary.json"
        stats = json.loads(summary.read_text()) if summary.exists() else {}
        if config.round_method == "dpo":
            raise BaizeError(
                f"the select step exported no preference pair ({data}): no prompt had a best and a worst answer "
                f"at least min_margin {config.min_margin} apart; lower min_margin or use round_method sft"
            )
        raise BaizeError(
            f"the select step chose no answer to train on: of {stats.get('judged_prompts', '?')} judged prompts, "
            f"{stats.get('unscored', '?')} have no parsable score and {stats.get('below_min_score', '?')} are below "
            f"min_score {config.min_score} ({summary}); point judge_model / judge_base_url at a capable judge, or "
            "lower min_score"
        )
    return data


def train_step(config: SDFConfig, train_argv: list[str] | None = None) -> dict:
    """Step 4: a NEW LoRA trained on top of the merged, frozen parent, by SFT on selected.jsonl or DPO on
    preferences.jsonl."""
    from trl.scripts.utils import DatasetConfig

    (script_args, training_args, model_args, dataset_args), run, recipe = parse_recipe_for(config, train_argv)
    data = training_data(config)
    folder = Path(config.output_dir)
    parent_id = hub_model_id(config.model_name_or_path)
    if training_args.push_to_hub and not parent_id:  # before the training, not after it
        raise UsageError(
            f"push_to_hub: the new adapter is loaded on top of its parent, which others must be able to download: "
            f"push it first (baize push {config.model_name_or_path} --repo-id YOU/NAME) and set model_name_or_path "
            "to that repo id; or push the whole stack after training (baize push OUTPUT_DIR)"
        )
    base = merged_v1(config)
    model_args.model_name_or_path, model_args.gguf_file = str(base), None
    dataset_args.datasets = [DatasetConfig(path="json", data_files=str(data))]
    # Pushed below, once the lineage and the card section are written, not by the training run.
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    summary = run(script_args, training_args, model_args, dataset_args)
    summary_file = folder / (REWARD_SUMMARY_FILE if config.round_method == "grpo" else "select_summary.json")
    select = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    parent_lineage = read_lineage(config.model_name_or_path) if Path(config.model_name_or_path).is_dir() else None
    lineage = {
        # What loads the new adapter: its parent (a Hub id when it has one) merged into the parent's base, then the
        # new LoRA on top; the parent's own sdf.json goes on down to v1.
        "version": version(parent_lineage) + 1 if parent_lineage else 2,
        "method": config.round_method,
        "v1_parent": parent_id or config.model_name_or_path,
        "v1_base": card_base_model(str(base)),
        "merged_v1": base.name,
        "judge_model": hub_model_id(config.judge_model) or config.judge_model,
        "judge_mode": config.judge_mode,
        "num_candidates": config.num_candidates,
        "min_score": config.min_score,
        "selection": select,
    }
    out = Path(training_args.output_dir)
    (out / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2) + "\n")
    write_card(out, lineage, recipe)
    result = {"train": summary, "lineage": lineage, "output_dir": str(out)}
    if push_to_hub and training_args.process_index == 0:
        pushed = push_adapter(
            out,
            training_args.hub_model_id,
            private=training_args.hub_private_repo,
            revision=getattr(training_args, "hub_revision", None),
            base_model=lineage["v1_base"],
        )
        result["pushed"] = pushed.url
        logger.info("Pushed v%d to %s", lineage["version"], pushed.url)
    return result


def write_card(out: Path, lineage: dict, recipe: str) -> None:
    """The SFT card with the SDF section in place of its how-to; DPO and GRPO runs write no card, so one is made."""
    from huggingface_hub import ModelCard, ModelCardData

    card = out / "README.md"
    text = card.read_text() if card.exists() else None
    if text is not None and SDF_CARD_MARK in text:  # a re-run of a finished step adds nothing
        return
    if text is None:
        data = ModelCardData(base_model=lineage["v1_base"], library_name="peft", pipeline_tag="text-generation",
                             tags=["baize", "sdf", lineage["method"], "lora", "trl"])  # fmt: skip
        text = f"---\n{data.to_yaml()}\n---\n\n# {model_title(out)}\n\nTrained with `baize sdf` ({recipe}).\n"
        ModelCard(text)  # the metadata parses
    how_to = text.find("## How to use")  # the SFT card's how-to loads base + adapter: wrong for a stacked LoRA
    text = text[:how_to] if how_to >= 0 else text
    parents = [model_title(p) for p in local_ancestors(out)] or None
    card.write_text(text.rstrip() + "\n" + sdf_card_section(lineage, how_to_path(out), parents))
