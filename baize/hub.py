"""Model cards for the adapters baize trains (huggingface_hub's card tools, not hand-made YAML)."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

A [Baize](https://arxiv.org/abs/2304.01196) chat adapter: LoRA fine-tuned on self-chat dialogues with
TRL's `SFTTrainer` by the baize recipes (`{{ recipe }}`), loss on AI turns only.

- **Base model:** `{{ base_model_ref }}`
- **Method:** {{ method }}
- **Data:** {{ data }}

## Training

| hyperparameter | value |
|---|---|
{% for key, value in hyperparameters.items() -%}
| {{ key }} | {{ value }} |
{% endfor %}
## Results

| metric | value |
|---|---|
{% for key, value in metrics.items() -%}
| {{ key }} | {{ value }} |
{% endfor %}
## How to use

The tokenizer in this repository carries the Baize chat template (`[|Human|]` / `[|AI|]` turns, EOS after
every AI turn), the same text the adapter was trained on.

```python
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer

model = AutoPeftModelForCausalLM.from_pretrained("{{ adapter_ref }}")
tokenizer = AutoTokenizer.from_pretrained("{{ adapter_ref }}")
inputs = tokenizer.apply_chat_template(
    [{"role": "user", "content": "How do I undo the last git commit?"}],
    add_generation_prompt=True, return_tensors="pt", return_dict=True,
)
output = model.generate(**inputs, max_new_tokens=256, do_sample=True, top_p=0.95, temperature=1.0)
print(tokenizer.decode(output[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```
"""


def hub_model_id(name_or_path: str) -> str | None:
    """The Hub id of a base model, or None for local folders and pip-shipped files."""
    if name_or_path.startswith("pkg:") or Path(name_or_path).exists() or name_or_path.count("/") != 1:
        return None
    return name_or_path


def sft_model_card(
    output_dir: str | Path,
    *,
    recipe: str,
    model_args,
    training_args,
    dataset_args,
    summary: dict,
) -> ModelCard:
    """Card for an SFT adapter folder: metadata for the Hub, hyperparameters, data mix, metrics."""
    base = hub_model_id(model_args.model_name_or_path)
    base_ref = model_args.model_name_or_path + (f" ({model_args.gguf_file})" if model_args.gguf_file else "")
    hub_datasets = sorted({d.path for d in dataset_args.datasets if hub_model_id(d.path)})
    quantization = "full-precision"
    if model_args.load_in_8bit:
        quantization = "int8"
    elif model_args.load_in_4bit:
        quantization = f"4-bit {model_args.bnb_4bit_quant_type}"
    data = "; ".join(
        f"`{d.path}`"
        + (f" / `{d.data_files}`" if d.data_files else "")
        + (f" (fraction {d.fraction})" if d.fraction else "")
        for d in dataset_args.datasets
    )
    card_data = ModelCardData(
        base_model=base,
        library_name="peft",
        pipeline_tag="text-generation",
        datasets=hub_datasets or None,
        tags=["baize", "lora", "sft", "self-chat", "trl", "peft"],
    )
    steps = training_args.max_steps if training_args.max_steps > 0 else f"{training_args.num_train_epochs} epoch(s)"
    hyperparameters = {
        "LoRA r / alpha / dropout": f"{model_args.lora_r} / {model_args.lora_alpha} / {model_args.lora_dropout}",
        "LoRA target modules": model_args.lora_target_modules,
        "base quantisation": quantization,
        "max length": training_args.max_length,
        "packing": training_args.packing,
        "learning rate": training_args.learning_rate,
        "scheduler / warmup steps": f"{getattr(training_args.lr_scheduler_type, 'value', training_args.lr_scheduler_type)} / "
        f"{training_args.warmup_steps}",
        "batch (per device x accumulation x processes)": f"{training_args.per_device_train_batch_size} x "
        f"{training_args.gradient_accumulation_steps} x {summary.get('num_processes', 1)}",
        "training length": steps,
        "seed": training_args.seed,
    }
    metrics = {
        k: summary[k]
        for k in ("global_step", "loss_first", "loss_last", "eval_loss_last", "train_tokens", "tokens_per_second")
        if summary.get(k) is not None
    }
    metrics["dialogues kept / skipped"] = (
        f"{sum(summary['data']['kept'].values())} / {sum(summary['data']['skipped'].values())}"
    )
    return ModelCard.from_template(
        card_data,
        template_str=CARD_TEMPLATE,
        model_name=Path(output_dir).name
        if Path(output_dir).name not in ("sft", "sdf")
        else Path(output_dir).parent.name,
        recipe=recipe,
        base_model_ref=base_ref,
        method=f"LoRA (r={model_args.lora_r}) on the {quantization} base",
        data=data,
        hyperparameters=hyperparameters,
        metrics=metrics,
        adapter_ref=str(output_dir),
    )
