"""Push a `baize export` folder (GGUF files, Modelfile, export.json) as a GGUF model repo, with a card that names
what it is a quantised copy of, the chat template it carries, and how llama.cpp, Ollama and LM Studio run it."""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from baize.hub.cards import base_license, complete_card_metadata
from baize.hub.push import PushPlan, plan_upload
from baize.io.errors import HubError

EXPORT_RECORD = "export.json"


def gguf_card(record: dict, repo_id: str, base_model: str | None, license: str | None) -> ModelCard:
    gguf_file = record["files"][0]
    data = ModelCardData(base_model=base_model, library_name="gguf", pipeline_tag="text-generation",
                         tags=["gguf", "llama.cpp", "ollama", "baize"])  # fmt: skip
    if base_model:
        data.base_model_relation = "quantized"
    complete_card_metadata(data, license=license or (base_license(base_model) if base_model else None))
    stops = ", ".join(f"`{json.dumps(s)}`" for s in record.get("stop_strings") or [])
    source = f"[{base_model}](https://huggingface.co/{base_model})" if base_model else "a baize model"
    text = f"""---
{data.to_yaml()}
---

# {repo_id.split("/")[-1]}

GGUF ({record["settings"]["quant"]}) of {source}, written by `baize export` with llama.cpp's own converter.
The file carries the chat template it was trained with (`tokenizer.chat_template`, the Baize `[|Human|]` /
`[|AI|]` format), its EOS token `{record["eos_token"]}`, and the turn tags as `baize.stop_strings`: {stops}.

## Run it

```bash
llama-server -hf {repo_id} --jinja                   # llama.cpp (OpenAI-compatible on :8080)
ollama run hf.co/{repo_id}                            # Ollama, straight from the Hub
ollama create baize -f Modelfile && ollama run baize  # Ollama with the Modelfile of this repo (download both)
lms get {repo_id}                                     # LM Studio
python -m llama_cpp.server --model {gguf_file}        # llama-cpp-python
```

Stop at the turn tags too (`stop=[...]` in an OpenAI request) when a client ignores the EOS.
"""
    return ModelCard(text)


def plan_gguf_push(folder: str | Path, repo_id: str, *, base_model: str | None = None, license: str | None = None,
                   exclude: list[str] | None = None) -> PushPlan:  # fmt: skip
    folder = Path(folder)
    if not (folder / EXPORT_RECORD).is_file():
        raise HubError(f"{folder} has no {EXPORT_RECORD}: give the --output folder of `baize export`")
    record = json.loads((folder / EXPORT_RECORD).read_text())
    plan = plan_upload(folder, repo_id, exclude=exclude)
    plan.card = gguf_card(record, repo_id, base_model or record.get("base_model"), license)
    return plan
