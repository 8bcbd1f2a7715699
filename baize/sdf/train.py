"""Step 4, train: v1 merged into its base (frozen) and a NEW LoRA trained on top with `baize train` on
selected.jsonl -> the v2 adapter, its lineage (sdf.json) and card section; pushed if the SFT recipe says so."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from baize.cards import card_base_model, how_to_path
from baize.errors import BaizeError, UsageError
from baize.hub import pull, push_adapter
from baize.merging import merge_adapter
from baize.models import LINEAGE_FILE, hub_model_id
from baize.sdf.card import SDF_CARD_HEADING, sdf_card_section
from baize.sdf.config import SELECTED_FILE, SDFConfig

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


def train_step(config: SDFConfig, train_argv: list[str] | None = None) -> dict:
    """Step 4: a NEW LoRA (v2) trained with `baize.train` on selected.jsonl, on top of the merged, frozen v1."""
    from trl.scripts.utils import DatasetConfig

    from baize.train import main as train_main
    from baize.train import parse_args as parse_train

    if not config.train_config:
        raise BaizeError(
            "train_config is not set: name the SFT recipe for the v2 LoRA (e.g. recipes/X/sdf-train.yaml)"
        )
    folder = Path(config.output_dir)
    selected = folder / SELECTED_FILE
    if not selected.exists():
        raise BaizeError(f"{selected} is missing: run the select step first")
    if not selected.read_text().strip():
        summary = folder / "select_summary.json"
        stats = json.loads(summary.read_text()) if summary.exists() else {}
        raise BaizeError(
            f"the select step chose no answer to train on: of {stats.get('judged_prompts', '?')} judged prompts, "
            f"{stats.get('unscored', '?')} have no parsable score and {stats.get('below_min_score', '?')} are below "
            f"min_score {config.min_score} ({summary}); point judge_model / judge_base_url at a capable judge, or "
            "lower min_score"
        )
    script_args, training_args, model_args, dataset_args = parse_train(
        ["--config", config.train_config, *(train_argv or [])]
    )
    v1_id = hub_model_id(config.model_name_or_path)
    if training_args.push_to_hub and not v1_id:  # before the training, not after it
        raise UsageError(
            f"push_to_hub: the v2 adapter is loaded on top of its v1, which others must be able to download: push "
            f"v1 first (baize push {config.model_name_or_path} --repo-id YOU/NAME) and set model_name_or_path to "
            "that repo id"
        )
    base = merged_v1(config)
    model_args.model_name_or_path, model_args.gguf_file = str(base), None
    dataset_args.datasets = [DatasetConfig(path="json", data_files=str(selected))]
    # Pushed below, once the lineage and the v2 card section are written, not by the SFT run.
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    summary = train_main(script_args, training_args, model_args, dataset_args, recipe=config.train_config)
    select = (
        json.loads((folder / "select_summary.json").read_text()) if (folder / "select_summary.json").exists() else {}
    )
    lineage = {
        # What loads the v2 adapter: its v1 (a Hub id when it has one) merged into v1's base, then v2 on top.
        "v1_parent": v1_id or config.model_name_or_path,
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
    card = out / "README.md"
    if card.exists() and SDF_CARD_HEADING not in card.read_text():  # a re-run of a finished step adds nothing
        text = card.read_text()
        how_to = text.find("## How to use")  # the SFT card's how-to loads base + adapter: wrong for a v2
        text = text[:how_to] if how_to >= 0 else text
        card.write_text(text.rstrip() + "\n" + sdf_card_section(lineage, how_to_path(out)))
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
        logger.info("Pushed v2 to %s", pushed.url)
    return result
