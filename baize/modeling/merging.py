"""Merging an adapter into its base: one full model folder (safetensors, config, generation_config.json with the
paper's sampling defaults, the tokenizer with the Baize chat template, a model card) that `transformers serve`,
vLLM and `AutoModelForCausalLM.from_pretrained` load. `baize merge` is its command line; SDF merges v1 with it."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from baize.hub import pull
from baize.hub.cards import base_license, how_to_path, model_reference, model_title
from baize.hub.ids import hub_model_id
from baize.io.errors import HubError
from baize.llm.generation import DEFAULT_MAX_NEW_TOKENS, DEFAULT_TEMPERATURE, DEFAULT_TOP_P
from baize.modeling.loading import loading, resolve_base
from baize.prompts import (
    ORIGINAL_TEMPLATE_HEADER,
    baize_template,
    detect_prompt_format,
    folder_chat_template,
    has_tokenizer,
    record_system_prompt,
    trained_system_prompt,
)

logger = logging.getLogger(__name__)

MERGED_CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ name }}

A [Baize](https://arxiv.org/abs/2304.01196) chat model: the LoRA adapter {{ adapter }} merged into
{{ base }} with PEFT's `merge_and_unload()`, saved as one safetensors model (dtype {{ dtype }}).

Prompt format: **{{ prompt_format }}**. The tokenizer's chat template renders it
{%- if prompt_format == "original" %} (the original project-baize format: no EOS after AI turns, so stop
generation at the turn tags, e.g. `"stop": ["[|Human|]", "[|AI|]"]` in OpenAI-style requests).
{%- else %} (`[|Human|]` / `[|AI|]` turns, EOS after every AI turn). A model trained long enough ends its
turn with EOS; a briefly trained one may run on into an invented `[|Human|]` turn, so stop at the turn tags too:
`"stop": ["[|Human|]", "[|AI|]"]` in OpenAI-style requests, `stop_strings=["[|Human|]", "[|AI|]"],
tokenizer=tokenizer` in `model.generate` (`baize chat` and `baize web` do it for you).
{%- endif %}

generation_config.json carries the Baize demo's sampling defaults: top_p 0.95, temperature 1.0, 512 new tokens.

## Serve it (OpenAI-compatible)

```bash
transformers serve {{ path }} --device cpu     # or: vllm serve {{ path }}
baize chat {{ path }}                          # terminal chat
baize web {{ path }}                           # the chat demo in the browser
```
"""


def merge_adapter(
    adapter: str | Path,
    output_dir: str | Path,
    *,
    base: str | None = None,
    gguf_file: str | None = None,
    revision: str | None = None,
    dtype: str = "auto",
    max_shard_size: str = "5GB",
    overwrite: bool = False,
    token: str | None = None,
) -> Path:
    """Merge `adapter` (local folder or Hub id) into its base and save a full model folder at `output_dir`.

    The base is loaded unquantised (merging into int8/4-bit weights would round the LoRA update away).
    `dtype` "auto" keeps the base checkpoint's dtype. Returns the output folder."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()):
        if not overwrite:
            raise HubError(f"{output_dir} exists and is not empty (--overwrite replaces it)")
        shutil.rmtree(output_dir)
    folder = pull(adapter, revision=revision, token=token)
    if not (folder / "adapter_config.json").exists():
        raise HubError(f"{adapter} is not an adapter (no adapter_config.json): nothing to merge")
    base_path = resolve_base(folder, base, gguf_file)

    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    with loading(f"{adapter} (base {base_path})"):
        model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch_dtype, token=token)
        model = PeftModel.from_pretrained(model, str(folder))
    merged = model.merge_and_unload(progressbar=True)  # a bar per layer: a 30B merge takes minutes

    tokenizer = AutoTokenizer.from_pretrained(str(folder) if has_tokenizer(folder) else base_path, token=token)
    prompt_format = detect_prompt_format(folder)
    if prompt_format == "original":
        # The original adapters' format becomes the template's default, so servers render it without kwargs.
        tokenizer.chat_template = ORIGINAL_TEMPLATE_HEADER + baize_template()
    elif prompt_format == "baize":
        tokenizer.chat_template = folder_chat_template(folder)

    generation = merged.generation_config
    generation.do_sample = True
    generation.top_p = DEFAULT_TOP_P
    generation.temperature = DEFAULT_TEMPERATURE
    generation.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
    eos = generation.eos_token_id if isinstance(generation.eos_token_id, list) else [generation.eos_token_id]
    generation.eos_token_id = [e for e in dict.fromkeys([tokenizer.eos_token_id, *eos]) if e is not None]
    if generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]

    staging = output_dir.with_name(f".{output_dir.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    merged.save_pretrained(staging, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(staging)
    record_system_prompt(staging, trained_system_prompt(folder, prompt_format))  # the merged model keeps it
    _merged_card(
        staging,
        name=f"{model_title(adapter if hub_model_id(str(adapter)) else folder).split('/')[-1]}-merged",
        path=how_to_path(output_dir),
        adapter=model_reference(str(adapter)) if hub_model_id(str(adapter)) else f"`{model_title(folder)}`",
        base=model_reference(base or base_path),
        license=base_license(base or base_path) or _adapter_card_license(folder),
        base_id=hub_model_id(base or "") or _adapter_card_base(folder) or hub_model_id(base_path),
        prompt_format=prompt_format,
        dtype=str(merged.dtype).replace("torch.", ""),
    ).save(staging / "README.md")
    for path in staging.iterdir():  # some writers create 0600 files; a served model is read by other users too
        path.chmod(0o644)
    staging.rename(output_dir) if not output_dir.exists() else _replace(staging, output_dir)
    logger.info("Merged %s into %s -> %s", folder, base_path, output_dir)
    return output_dir


def _replace(staging: Path, output_dir: Path) -> None:
    output_dir.rmdir()  # empty (checked above)
    staging.rename(output_dir)


def _adapter_card_base(folder: Path) -> str | None:
    from huggingface_hub import ModelCard

    if not (folder / "README.md").exists():
        return None

    base = ModelCard.load(folder / "README.md", ignore_metadata_errors=True).data.get("base_model")
    return hub_model_id(base) if isinstance(base, str) else None


def _adapter_card_license(folder: Path) -> str | None:
    from huggingface_hub import ModelCard

    if not (folder / "README.md").exists():
        return None
    return ModelCard.load(folder / "README.md", ignore_metadata_errors=True).data.get("license")


def _merged_card(folder: Path, *, name, path, adapter, base, license, base_id, prompt_format, dtype):
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        base_model=base_id,
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["baize", "merged", "lora", "text-generation", "conversational"],
        license=license or "other",
        license_name=None if license and license != "other" else "base-model-license",
    )
    return ModelCard.from_template(
        data, template_str=MERGED_CARD_TEMPLATE, name=name, path=path, adapter=adapter, base=base,
        prompt_format=prompt_format, dtype=dtype
    )  # fmt: skip
