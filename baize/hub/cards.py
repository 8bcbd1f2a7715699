"""Model and dataset cards (huggingface_hub's card tools): the SFT adapter card written at train time, the card an
adapter gets when pushed (metadata completed, how-to pointed at the repo), and dataset cards."""

from __future__ import annotations

import json
import re
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData

from baize.hub.ids import LEGACY_BASE_MODELS, hub_model_id, is_repo_id, model_source

# The end of every card's how-to: one reply from the loaded model and tokenizer (the demo's sampling settings).
GENERATE_SNIPPET = """\
inputs = tokenizer.apply_chat_template(
    [{"role": "user", "content": "How do I undo the last git commit?"}],
    add_generation_prompt=True, return_tensors="pt", return_dict=True,
)
output = model.generate(**inputs, max_new_tokens=256, do_sample=True, top_p=0.95, temperature=1.0)
print(tokenizer.decode(output[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True))
"""

CARD_TEMPLATE = (
    """---
{{ card_data }}
---

# {{ model_name }}

A [Baize](https://arxiv.org/abs/2304.01196) chat adapter: LoRA fine-tuned on self-chat dialogues with
TRL's `SFTTrainer` by the baize recipes (`{{ recipe }}`), loss on AI turns only.

- **Base model:** {{ base_model_ref }}
- **Method:** {{ method }}
- **Data:** {{ data }}

## Training

| hyperparameter | value |
|---|---|
{% for key, value in hyperparameters.items() -%}
| {{ key }} | {{ value }} |
{% endfor %}
The full resolved recipe is in `recipe.yaml` (`baize train --config recipe.yaml` repeats the run).

## Results

| metric | value |
|---|---|
{% for key, value in metrics.items() -%}
| {{ key }} | {{ value }} |
{% endfor %}
{% if loss_plot %}
![Training loss (and evaluation loss) against step, learning rate on the right axis]({{ loss_plot }})
{% endif %}
## How to use

The tokenizer in this repository carries the Baize chat template (`[|Human|]` / `[|AI|]` turns, EOS after
every AI turn), the same text the adapter was trained on.

```python
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer

model = AutoPeftModelForCausalLM.from_pretrained("{{ adapter_ref }}")
tokenizer = AutoTokenizer.from_pretrained("{{ adapter_ref }}")
"""
    + GENERATE_SNIPPET
    + """```
"""
)

LOSS_PLOT = "loss.png"


def card_base_model(name_or_path: str) -> str | None:
    """The Hub id a card names as the base: the model's own (repo id, packaged or converted model), or for a local
    model folder with a card (a merged v1) the base that card names."""
    hub_id = hub_model_id(name_or_path)
    readme = Path(name_or_path) / "README.md"
    if hub_id is None and readme.is_file():
        base = ModelCard.load(readme, ignore_metadata_errors=True).data.get("base_model")
        hub_id = hub_model_id(base) if isinstance(base, str) else None  # a local path some writer put there: none
    return hub_id


def model_reference(name_or_path: str, gguf_file: str | None = None) -> str:
    """How a card's text names a model: a Hub link, never a local path (a folder goes by its name)."""
    hub_id = hub_model_id(name_or_path)
    if hub_id:
        note = f" (de-quantised once from its GGUF file `{gguf_file}`)" if gguf_file else ""
        return f"[{hub_id}](https://huggingface.co/{hub_id}){note}"
    base = card_base_model(name_or_path)
    kind = "adapter" if (Path(name_or_path) / "adapter_config.json").exists() else "model"
    where = f" over [{base}](https://huggingface.co/{base})" if base else ""
    return f"`{model_title(name_or_path)}` (a local {kind} folder{where})"


def base_license(name_or_path: str) -> str | None:
    """The license of a base model, which an adapter or a merge inherits: a packaged/converted model's record, a
    local folder's card, or the Hub's card when it can be reached."""
    source = model_source(name_or_path)
    if source.get("license"):
        return source["license"]
    readme = Path(name_or_path) / "README.md"
    if readme.is_file():
        return ModelCard.load(readme, ignore_metadata_errors=True).data.get("license")
    if source.get("hub_id"):
        try:
            return ModelCard.load(source["hub_id"]).data.get("license")
        except Exception:  # offline, gated or gone: the card says "other" instead
            return None
    return None


def model_title(output_dir: str | Path) -> str:
    """A run's model name from its folder: runs/baize-smol/sft -> baize-smol, runs/baize-smol/sdf/v2 -> baize-smol-v2,
    runs/baize-smol/sdf/round-2/v3 -> baize-smol-v3."""
    path = Path(output_dir).resolve()
    if path.name == "sft":
        return path.parent.name
    if path.name.startswith("v") and path.name[1:].isdigit() and path.parent.name in ("sdf", "dpo"):
        return f"{path.parent.parent.name}-{path.name}"
    if path.name.startswith("v") and path.name[1:].isdigit() and path.parent.name.startswith("round-"):
        return f"{path.parent.parent.parent.name}-{path.name}"  # runs/baize-smol/sdf/round-2/v3 -> baize-smol-v3
    return path.name


def how_to_path(output_dir: str | Path) -> str:
    """The output folder as the how-to snippet names it: relative to where the run started (the repo root for
    `make train`), so it works pasted there."""
    path = Path(output_dir)
    if path.is_absolute():
        try:
            return path.relative_to(Path.cwd()).as_posix()
        except ValueError:
            return path.name
    return path.as_posix()


def _rounded(value, digits: int = 3):
    return f"{value:.{digits}f}" if isinstance(value, float) else value


def sft_model_card(
    output_dir: str | Path, *, recipe: str, model_args, training_args, dataset_args, summary: dict
) -> ModelCard:
    """Card for an SFT adapter folder: metadata for the Hub, hyperparameters, data mix, metrics, loss plot."""
    base = card_base_model(model_args.model_name_or_path)
    hub_datasets = sorted({d.path for d in dataset_args.datasets if hub_model_id(d.path)})
    quantization = "full-precision"
    if model_args.load_in_8bit:
        quantization = "int8"
    elif model_args.load_in_4bit:
        quantization = f"4-bit {model_args.bnb_4bit_quant_type}"
    data = "; ".join(
        f"`{d.path}`"
        + (f" / `{how_to_path(str(d.data_files))}`" if d.data_files else "")
        + (f" (fraction {d.fraction})" if d.fraction else "")
        for d in dataset_args.datasets
    )
    license = base_license(model_args.model_name_or_path)
    card_data = ModelCardData(
        base_model=base,
        library_name="peft",
        pipeline_tag="text-generation",
        license=license or "other",
        license_name=None if license and license != "other" else "base-model-license",
        datasets=hub_datasets or None,
        tags=["baize", "lora", "sft", "self-chat", "trl", "peft"],
    )
    steps = (
        f"{training_args.max_steps} steps"
        if training_args.max_steps > 0
        else f"{training_args.num_train_epochs:g} epoch(s)"
    )
    hyperparameters = {
        "LoRA r / alpha / dropout": f"{model_args.lora_r} / {model_args.lora_alpha} / {model_args.lora_dropout}",
        "LoRA target modules": model_args.lora_target_modules,
        "base quantisation": quantization,
        "max length": f"{training_args.max_length} tokens",
        "packing": training_args.packing,
        "learning rate": f"{training_args.learning_rate:g}",
        "scheduler / warmup": f"{getattr(training_args.lr_scheduler_type, 'value', training_args.lr_scheduler_type)} / "
        f"{training_args.warmup_steps} steps",
        "batch (per device x accumulation x processes)": f"{training_args.per_device_train_batch_size} x "
        f"{training_args.gradient_accumulation_steps} x {summary.get('num_processes', 1)} sequences",
        "training length": steps,
        "seed": training_args.seed,
    }
    metrics = {"steps trained": f"{summary['global_step']} steps"}
    if summary.get("loss_first") is not None:
        metrics["training loss, first -> last step"] = (
            f"{_rounded(summary['loss_first'])} -> {_rounded(summary['loss_last'])}"
        )
    if summary.get("eval_loss_last") is not None:
        metrics["evaluation loss (last)"] = _rounded(summary["eval_loss_last"])
    if summary.get("train_tokens"):
        metrics["training tokens"] = f"{int(summary['train_tokens']):,}"
    if summary.get("tokens_per_second"):
        metrics["throughput"] = f"{summary['tokens_per_second']:,.0f} tokens/s"
    if summary.get("train_runtime_s") is not None:
        metrics["training time"] = f"{summary['train_runtime_s']:,.0f} s"
    if summary.get("cpu_peak_rss_mb") is not None:
        metrics["peak memory (CPU RSS)"] = f"{summary['cpu_peak_rss_mb']:,.0f} MB"
    if summary.get("gpu_peak_allocated_mb") is not None:
        metrics["peak memory (GPU, allocated)"] = f"{summary['gpu_peak_allocated_mb']:,.0f} MB"
    if summary.get("mixed_precision"):
        metrics["precision"] = {"no": "fp32"}.get(summary["mixed_precision"], summary["mixed_precision"])
    metrics["dialogues kept / skipped"] = (
        f"{sum(summary['data']['kept'].values())} / {sum(summary['data']['skipped'].values())}"
    )
    checked = summary["data"].get("decontaminated_against")
    contaminated = summary["data"].get("contaminated") or {}
    metrics["decontamination (8-word n-grams)"] = (
        f"checked against {', '.join(checked)}: "
        + ", ".join(f"{name} {contaminated.get(name, 0)} rows dropped" for name in checked)
        if checked
        else "not checked against evaluation sets"
    )
    return ModelCard.from_template(
        card_data,
        template_str=CARD_TEMPLATE,
        model_name=model_title(output_dir),
        recipe=how_to_path(recipe) if recipe.endswith((".yaml", ".yml")) else recipe,
        base_model_ref=model_reference(model_args.model_name_or_path, model_args.gguf_file),
        method=f"LoRA (r={model_args.lora_r}) on the {quantization} base",
        data=data,
        hyperparameters=hyperparameters,
        metrics=metrics,
        loss_plot=LOSS_PLOT if (Path(output_dir) / LOSS_PLOT).exists() else None,
        adapter_ref=how_to_path(output_dir),
    )


PLACEHOLDER_CARD_TEXT = "[More Information Needed]"  # the empty card PEFT writes next to an adapter

USAGE_SECTION = """
## Chat, merge and serve with baize

```bash
baize chat {repo_id}                      # streaming chat in the terminal (Baize prompt, /reset, /undo)
baize merge {repo_id} --output merged     # base + adapter -> one safetensors model folder
transformers serve merged --device cpu    # or: vllm serve merged  (OpenAI-compatible endpoint)
```
"""


def complete_card_metadata(
    data, *, license: str | None = None, license_name: str | None = "base-model-license", tags=("baize",)
) -> None:
    """One rule for every card that is pushed: `license` over the card's own, else "other" (with `license_name`
    saying whose terms apply), and the baize tags after the card's own."""
    if license:
        data.license = license
    if not data.get("license"):
        data.license = "other"
    if license_name and data.license == "other" and not data.get("license_name"):
        data.license_name = license_name
    existing = list(data.get("tags") or [])
    data.tags = existing + [tag for tag in tags if tag not in existing]


def rewrite_how_to(text: str, repo_id: str) -> str:
    """Point the card's code snippets at the repo instead of the local output dir they were written with; Hub ids
    in them (a v2's base and v1) stay."""

    def local_to_repo(match: re.Match) -> str:
        return match.group(0) if is_repo_id(match.group(2)) else f'{match.group(1)}"{repo_id}"'

    text = re.sub(r'(from_pretrained\(\s*)"([^"]*)"', local_to_repo, text)
    text = re.sub(r'(pipeline\([^)]*?model=)"([^"]*)"', local_to_repo, text)
    return re.sub(
        r"(baize (?:chat|web|eval) )(\S+)`",
        lambda m: m.group(0) if is_repo_id(m.group(2)) else f"{m.group(1)}{repo_id}`",
        text,
    )


def adapter_card_for_push(
    folder: str | Path, repo_id: str, *, base_model: str | None = None, license: str | None = None,
    datasets: list[str] | None = None
) -> ModelCard:  # fmt: skip
    """The adapter's card as it goes to the Hub: the folder's README.md (written by `baize train`) or a new
    card, with complete metadata (base_model, library_name peft, datasets, license, tags) and a how-to that
    names the repo."""
    folder = Path(folder)
    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    readme = folder / "README.md"
    card = ModelCard.load(readme, ignore_metadata_errors=True) if readme.exists() else None
    if card is None or PLACEHOLDER_CARD_TEXT in card.text:  # none, or PEFT's empty boilerplate card
        card = _new_adapter_card(folder, repo_id, adapter_config)
    data = card.data
    known = data.get("base_model")
    known = [known] if isinstance(known, str) else list(known or [])
    if not all(is_repo_id(b) for b in known):  # a local path written by PEFT or TRL
        known = []
    base = base_model or (known[0] if len(known) == 1 else known or None)
    base = base or hub_model_id(adapter_config.get("base_model_name_or_path") or "")
    base = LEGACY_BASE_MODELS.get(base, base) if isinstance(base, str) else base
    data.base_model = base
    data.library_name = "peft"
    data.pipeline_tag = data.get("pipeline_tag") or "text-generation"
    known_datasets = data.get("datasets") or []
    known_datasets = [known_datasets] if isinstance(known_datasets, str) else list(known_datasets)
    merged = [d for d in dict.fromkeys(known_datasets + list(datasets or [])) if hub_model_id(d)]
    data.datasets = merged or None
    data.tags = [t for t in data.get("tags") or [] if not str(t).startswith("base_model:")]  # the Hub derives these
    # an adapter inherits the terms of its base model and data
    complete_card_metadata(data, license=license, tags=("baize", "peft", "lora", "text-generation"))
    data.pop("licence", None)  # TRL's generic card misspells it
    card.text = rewrite_how_to(card.text, repo_id)
    if "baize chat" not in card.text:
        card.text = card.text.rstrip() + "\n" + USAGE_SECTION.format(repo_id=repo_id)
    return card


ADAPTER_CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ name }}

A LoRA adapter{% if base %} for `{{ base }}`{% endif %} in the [Baize](https://arxiv.org/abs/2304.01196) format
(`[|Human|]` / `[|AI|]` turns).

| setting | value |
|---|---|
{% for key, value in settings.items() -%}
| {{ key }} | {{ value }} |
{% endfor %}
## How to use

```python
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer

model = AutoPeftModelForCausalLM.from_pretrained("{{ repo_id }}")
tokenizer = AutoTokenizer.from_pretrained("{{ repo_id }}")
```
"""


def _new_adapter_card(folder: Path, repo_id: str, adapter_config: dict) -> ModelCard:
    settings = {
        "LoRA r / alpha / dropout": f"{adapter_config.get('r')} / {adapter_config.get('lora_alpha')} / "
        f"{adapter_config.get('lora_dropout')}",
        "target modules": ", ".join(sorted(adapter_config.get("target_modules") or [])),
    }
    summary_path = folder / "run_summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        for key in ("global_step", "loss_first", "loss_last", "eval_loss_last", "train_tokens"):
            if summary.get(key) is not None:
                settings[key] = summary[key]
    base = hub_model_id(adapter_config.get("base_model_name_or_path") or "")
    return ModelCard.from_template(
        ModelCardData(library_name="peft", base_model=base),
        template_str=ADAPTER_CARD_TEMPLATE,
        name=repo_id.split("/")[-1],
        base=base,
        settings=settings,
        repo_id=repo_id,
    )


def dataset_card(
    *,
    pretty_name: str,
    description: str,
    license: str = "other",
    source_datasets: list[str] | None = None,
    tags: list[str] | None = None,
    sections: dict[str, str] | None = None,
    **metadata,
) -> DatasetCard:
    """A dataset card from huggingface_hub's card tools, e.g. for SDF scores or a data mix:

    dataset_card(pretty_name="Baize SDF scores", description="...", sections={"Scoring": "..."})
    """
    card_data = DatasetCardData(
        pretty_name=pretty_name,
        license=license,
        license_name="seed-dataset-and-teacher-terms" if license == "other" else None,
        source_datasets=source_datasets or None,
        task_categories=["text-generation"],
        tags=list(dict.fromkeys(["baize", *(tags or [])])),
        **metadata,
    )
    body = "\n".join(f"## {title}\n\n{text.strip()}\n" for title, text in (sections or {}).items())
    return DatasetCard(f"---\n{card_data.to_yaml()}\n---\n\n# {pretty_name}\n\n{description.strip()}\n\n{body}")
