"""The Hub side of baize: cards (huggingface_hub's card tools, not hand-made YAML), push and pull.

- `sft_model_card`: the card `baize train` writes next to the adapter.
- `push_adapter` / `push_dataset` (CLI: `baize push`, module `baize.push`): upload an output folder as an
  adapter or dataset repo, resume state and secrets left out, card metadata completed.
- `pull` (CLI: `baize pull`, `python -m baize.hub`): a local folder for a repo id, through the HF cache.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData, RepoCard

logger = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------- push / pull
#
# Thin wrappers over huggingface_hub: `create_repo`, `create_branch`, `upload_folder` and `snapshot_download`.
# What goes up is decided locally (and shown by `--dry-run`): resume state and anything that looks like a
# secret stay home, and the card is completed (metadata, the repo id in the how-to) on a staged copy, so the
# local folder is never modified.

# Resume state: optimizer/scheduler/RNG states, checkpoints, pickled training arguments, collection journals.
RESUME_STATE_PATTERNS = [
    "run_signature.json",  # the local run's settings, with local paths: for resuming here, not for users
    "checkpoint-*",
    "**/checkpoint-*/**",
    "global_step*",
    "training_args.bin",
    "**/training_args.bin",
    "optimizer.pt",
    "optimizer.bin",
    "scheduler.pt",
    "scaler.pt",
    "rng_state*.pth",
    "trainer_state.json",
    "journal*.jsonl",
]
# Files that hold credentials; never uploaded, whatever the flags say.
SECRET_FILE_PATTERNS = [
    ".env",
    "*.env",
    ".netrc",
    ".git-credentials",
    "token",
    "stored_tokens",
    "*.pem",
    "*.key",
    "**/.huggingface/**",
    ".huggingface/**",
    ".cache/**",
    "**/.cache/**",
    ".git/**",
]
# Token shapes of the Hub and of OpenAI-compatible teachers (the collect stage uses those).
SECRET_REGEX = re.compile(rb"\bhf_[A-Za-z0-9]{30,}\b|\bsk-(?:proj-)?[A-Za-z0-9_\-]{32,}\b")
SECRET_SCAN_MAX_BYTES = 64 * 2**20  # regex-scan files up to this size; known token values are looked for everywhere

# The released LLaMA-1 repos the original adapters name; the first is gone from the Hub.
LEGACY_BASE_MODELS = {
    "decapoda-research/llama-7b-hf": "huggyllama/llama-7b",
    "decapoda-research/llama-13b-hf": "huggyllama/llama-13b",
    "decapoda-research/llama-30b-hf": "huggyllama/llama-30b",
}

PLACEHOLDER_CARD_TEXT = "[More Information Needed]"  # the empty card PEFT writes next to an adapter

USAGE_SECTION = """
## Chat, merge and serve with baize

```bash
baize chat {repo_id}                      # streaming chat in the terminal (Baize prompt, /reset, /undo)
baize merge {repo_id} --output merged     # base + adapter -> one safetensors model folder
transformers serve merged --device cpu    # or: vllm serve merged  (OpenAI-compatible endpoint)
```
"""


class HubError(RuntimeError):
    """A Hub operation failed for a reason the user can fix; the message says how."""


@dataclass
class PushPlan:
    """What a push uploads (relative paths) and what it leaves out, decided before any network call."""

    folder: Path
    repo_id: str
    repo_type: str
    upload: list[str]
    excluded: dict[str, str]  # path -> reason
    card: RepoCard | None = None
    adapter_config: dict | None = None  # rewritten adapter_config.json (base model id), when it changes
    notes: list[str] = dataclass_field(default_factory=list)
    include_checkpoints: bool = False

    def describe(self) -> str:
        sizes = {p: (self.folder / p).stat().st_size for p in self.upload}
        lines = [f"{self.repo_type} repo {self.repo_id}: {len(self.upload)} file(s), {sum(sizes.values()):,} bytes"]
        lines += [f"  + {p} ({sizes[p]:,} bytes)" for p in self.upload]
        if self.card is not None and "README.md" not in self.upload:
            lines.append("  + README.md (card, generated)")
        lines += [f"  - {p} ({reason})" for p, reason in sorted(self.excluded.items())]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass
class PushResult:
    repo_id: str
    repo_type: str
    revision: str
    commit_url: str
    url: str
    files: list[str]


def _matches(path: str, patterns: list[str]) -> bool:
    from fnmatch import fnmatch

    name = path.rsplit("/", 1)[-1]
    return any(fnmatch(path, pattern) or fnmatch(name, pattern) for pattern in patterns)


def _known_secret_values() -> list[bytes]:
    """The tokens this process could use: they must never appear in an uploaded file."""
    import os

    from huggingface_hub import get_token

    values = [get_token(), os.environ.get("HF_TOKEN"), os.environ.get("OPENAI_API_KEY")]
    return [v.encode() for v in values if v and len(v) >= 8]


def _stream_contains(path: Path, values: list[bytes], chunk_size: int = 8 * 2**20) -> bool:
    tail = b""
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            window = tail + chunk
            if any(value in window for value in values):
                return True
            tail = window[-256:]
    return False


def find_secrets(folder: str | Path, files: list[str]) -> dict[str, str]:
    """Files (of `files`, relative to `folder`) that contain a token: {path: "token value" | "token-shaped text"}.

    "token value": the HF_TOKEN / OPENAI_API_KEY / logged-in token of this process appears in the file.
    "token-shaped text": something that looks like an `hf_...` or `sk-...` key (files up to 64 MiB)."""
    folder = Path(folder)
    known = _known_secret_values()
    found = {}
    for rel in files:
        path = folder / rel
        if path.stat().st_size <= SECRET_SCAN_MAX_BYTES:
            data = path.read_bytes()
            if any(value in data for value in known):
                found[rel] = "token value"
            elif SECRET_REGEX.search(data):
                found[rel] = "token-shaped text"
        elif known and _stream_contains(path, known):
            found[rel] = "token value"
    return found


def plan_upload(
    folder: str | Path,
    repo_id: str,
    *,
    repo_type: str = "model",
    include_checkpoints: bool = False,
    exclude: list[str] | None = None,
) -> PushPlan:
    """List the files of `folder` to upload: no resume state unless asked, never secrets, no `exclude` patterns."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HubError(f"{folder} is not a folder (give the output_dir of a baize stage)")
    upload, excluded = [], {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if _matches(rel, SECRET_FILE_PATTERNS):
            excluded[rel] = "credentials or cache file"
        elif _matches(rel, exclude or []):
            excluded[rel] = "--exclude"
        elif not include_checkpoints and _matches(rel, RESUME_STATE_PATTERNS):
            excluded[rel] = "resume state; --include-checkpoints uploads it"
        else:
            upload.append(rel)
    # Checkpoint folders are reported once, not file by file.
    folded: dict[str, str] = {}
    for rel, reason in excluded.items():
        top = rel.split("/", 1)[0]
        key = f"{top}/" if "/" in rel and top.startswith(("checkpoint-", "global_step")) else rel
        folded[key] = reason
    if not upload:
        raise HubError(f"nothing to upload in {folder}")
    return PushPlan(
        folder=folder,
        repo_id=repo_id,
        repo_type=repo_type,
        upload=upload,
        excluded=folded,
        include_checkpoints=include_checkpoints,
    )


def _rewrite_how_to(text: str, repo_id: str) -> str:
    """Point the card's code snippets at the repo instead of the local output dir they were written with."""
    text = re.sub(r'from_pretrained\(\s*"[^"]*"', f'from_pretrained("{repo_id}"', text)
    return re.sub(r'(pipeline\([^)]*?model=)"[^"]*"', rf'\g<1>"{repo_id}"', text)


def adapter_card_for_push(
    folder: str | Path,
    repo_id: str,
    *,
    base_model: str | None = None,
    license: str | None = None,
    datasets: list[str] | None = None,
) -> ModelCard:
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
    if license:
        data.license = license
    if not data.get("license"):
        data.license = "other"
    if data.license == "other" and not data.get("license_name"):
        data.license_name = "base-model-license"  # an adapter inherits the terms of its base model and data
    tags = [t for t in data.get("tags") or [] if not str(t).startswith("base_model:")]  # the Hub derives these
    for tag in ("baize", "peft", "lora", "text-generation"):
        if tag not in tags:
            tags.append(tag)
    data.tags = tags
    data.pop("licence", None)  # TRL's generic card misspells it
    card.text = _rewrite_how_to(card.text, repo_id)
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


def plan_adapter_push(
    folder: str | Path,
    repo_id: str,
    *,
    base_model: str | None = None,
    license: str | None = None,
    datasets: list[str] | None = None,
    include_checkpoints: bool = False,
    exclude: list[str] | None = None,
) -> PushPlan:
    """Files, card and adapter config of an adapter push (see `push_adapter`)."""
    folder = Path(folder)
    if not (folder / "adapter_config.json").exists():
        raise HubError(f"{folder} has no adapter_config.json: not a PEFT adapter folder (`baize train` writes one)")
    plan = plan_upload(folder, repo_id, include_checkpoints=include_checkpoints, exclude=exclude)
    plan.card = adapter_card_for_push(folder, repo_id, base_model=base_model, license=license, datasets=datasets)
    config = json.loads((folder / "adapter_config.json").read_text())
    base_path = config.get("base_model_name_or_path") or ""
    if base_model and base_model != base_path:
        config["base_model_name_or_path"] = base_model
        plan.adapter_config = config
        plan.notes.append(f"adapter_config.json: base_model_name_or_path {base_path!r} -> {base_model!r}")
    elif not hub_model_id(base_path):
        plan.notes.append(
            f"the adapter's base is a local path ({base_path}); others cannot load it: "
            "pass --base-model HUB_ID (e.g. HuggingFaceTB/SmolLM2-135M-Instruct)"
        )
    if not any(name in plan.upload for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")):
        plan.notes.append("no tokenizer / chat template in the folder: users will get the base model's tokenizer")
    return plan


def plan_model_push(
    folder: str | Path,
    repo_id: str,
    *,
    base_model: str | None = None,
    license: str | None = None,
    include_checkpoints: bool = False,
    exclude: list[str] | None = None,
) -> PushPlan:
    """Files and card of a full model push (e.g. a `baize merge` folder)."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise HubError(f"{folder} has neither adapter_config.json nor config.json: not a model or adapter folder")
    plan = plan_upload(folder, repo_id, include_checkpoints=include_checkpoints, exclude=exclude)
    if (folder / "README.md").exists():
        card = ModelCard.load(folder / "README.md", ignore_metadata_errors=True)
    else:
        card = ModelCard(f"---\n{ModelCardData(library_name='transformers').to_yaml()}\n---\n\n# {repo_id}\n")
    if base_model:
        card.data.base_model = base_model
    if license:
        card.data.license = license
    if not card.data.get("license"):
        card.data.license = "other"
    if card.data.license == "other" and not card.data.get("license_name"):
        card.data.license_name = "base-model-license"
    tags = list(card.data.get("tags") or [])
    card.data.tags = tags if "baize" in tags else [*tags, "baize"]
    card.text = _rewrite_how_to(card.text, repo_id)
    plan.card = card
    return plan


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


def plan_dataset_push(
    folder: str | Path,
    repo_id: str,
    *,
    card: DatasetCard | None = None,
    license: str | None = None,
    include_checkpoints: bool = False,
    exclude: list[str] | None = None,
) -> PushPlan:
    """Files and card of a dataset push: the folder's README.md (e.g. the collect stage's card) or `card`,
    or a plain card listing the files."""
    folder = Path(folder)
    plan = plan_upload(folder, repo_id, repo_type="dataset", include_checkpoints=include_checkpoints, exclude=exclude)
    if card is None and (folder / "README.md").exists():
        card = DatasetCard.load(folder / "README.md", ignore_metadata_errors=True)
    if card is None:
        files = "\n".join(f"- `{p}`" for p in plan.upload)
        card = dataset_card(
            pretty_name=repo_id.split("/")[-1],
            description=f"Data written by a [Baize](https://arxiv.org/abs/2304.01196) pipeline stage.\n\n{files}",
        )
    if license:
        card.data.license = license
    if not card.data.get("license"):
        card.data.license = "other"
    tags = list(card.data.get("tags") or [])
    card.data.tags = tags if "baize" in tags else [*tags, "baize"]
    plan.card = card
    return plan


def _stage(plan: PushPlan, staging: Path) -> None:
    """Hard-link (or copy) the planned files into `staging` and write the generated card / adapter config there."""
    import os
    import shutil

    for rel in plan.upload:
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(plan.folder / rel, target)
        except OSError:
            shutil.copy2(plan.folder / rel, target)
    for name, content in (
        ("README.md", str(plan.card) if plan.card is not None else None),
        ("adapter_config.json", json.dumps(plan.adapter_config, indent=2) + "\n" if plan.adapter_config else None),
    ):
        if content is not None:
            (staging / name).unlink(missing_ok=True)  # never write through a hard link into the local folder
            (staging / name).write_text(content, encoding="utf-8")


def _auth_error(error: Exception) -> HubError:
    return HubError(
        f"the Hub rejected the token ({error}). Log in with `hf auth login` or set HF_TOKEN to a token with "
        "write access (https://huggingface.co/settings/tokens)."
    )


def whoami_name(api=None) -> str:
    """The user of the current token; a HubError that says how to log in otherwise."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    api = api or HfApi()
    try:
        return api.whoami()["name"]
    except LocalTokenNotFoundError as error:
        raise HubError("no Hugging Face token found: log in with `hf auth login` or set HF_TOKEN") from error
    except HfHubHTTPError as error:
        raise _auth_error(error) from error


def push_plan(
    plan: PushPlan,
    *,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
    allow_token_shaped_text: bool = False,
) -> PushResult:
    """Create the repo (and branch) if needed, then upload the plan's files in one commit.

    Refuses files containing this process's token values, or token-shaped text unless
    `allow_token_shaped_text` (e.g. placeholder keys in collected dialogues about APIs)."""
    import tempfile

    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    if create_pr and revision not in (None, "main"):
        raise HubError("--create-pr opens a pull request against main; it cannot be combined with --revision")
    secrets = find_secrets(plan.folder, plan.upload)
    blocking = {p: kind for p, kind in secrets.items() if kind == "token value" or not allow_token_shaped_text}
    if blocking:
        listed = ", ".join(f"{p} ({kind})" for p, kind in blocking.items())
        hint = "Remove the token, or leave the file out with --exclude."
        if any(kind == "token-shaped text" for kind in blocking.values()):
            hint += " If those are example strings in the data, not real keys, pass --allow-token-shaped-text."
        raise HubError(f"refusing to upload files that contain an access token: {listed}. {hint}")
    api = HfApi(token=token)
    whoami_name(api)
    try:
        url = api.create_repo(plan.repo_id, repo_type=plan.repo_type, private=private, exist_ok=True)
        if private is not None and api.repo_info(plan.repo_id, repo_type=plan.repo_type).private != private:
            api.update_repo_settings(plan.repo_id, repo_type=plan.repo_type, private=private)
        if revision and revision != "main" and not create_pr:
            api.create_branch(plan.repo_id, repo_type=plan.repo_type, branch=revision, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="baize-push-") as staging:
            _stage(plan, Path(staging))
            commit = api.upload_folder(
                repo_id=plan.repo_id,
                repo_type=plan.repo_type,
                folder_path=staging,
                revision=None if create_pr else revision,
                create_pr=create_pr,
                commit_message=commit_message or f"baize push: {plan.folder.name}",
                ignore_patterns=SECRET_FILE_PATTERNS + ([] if plan.include_checkpoints else RESUME_STATE_PATTERNS),
            )
    except RepositoryNotFoundError as error:
        raise HubError(f"repository {plan.repo_id} not found or not writable with this token ({error})") from error
    except RevisionNotFoundError as error:
        raise HubError(f"revision {revision!r} not found in {plan.repo_id}") from error
    except HfHubHTTPError as error:
        if error.response is not None and error.response.status_code in (401, 403):
            raise _auth_error(error) from error
        raise
    except ValueError as error:
        if "Invalid metadata in README.md" in str(error):  # the Hub's YAML validation refused the card
            raise HubError(f"the Hub refused the card: {error}") from error
        raise
    files = plan.upload + (["README.md"] if plan.card is not None and "README.md" not in plan.upload else [])
    return PushResult(
        repo_id=plan.repo_id,
        repo_type=plan.repo_type,
        revision=revision or "main",
        commit_url=commit.commit_url,
        url=str(url),
        files=files,
    )


def push_adapter(
    folder: str | Path,
    repo_id: str | None = None,
    *,
    private: bool | None = None,
    revision: str | None = None,
    base_model: str | None = None,
    license: str | None = None,
    datasets: list[str] | None = None,
    include_checkpoints: bool = False,
    exclude: list[str] | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
    allow_token_shaped_text: bool = False,
) -> PushResult:
    """Upload an adapter folder (`baize train` output) as a PEFT adapter repo.

    Uploads the adapter weights and config, tokenizer and chat template, run summary, and the card with its
    metadata completed; leaves out checkpoints, optimizer/scheduler/RNG states and training_args.bin unless
    `include_checkpoints`, and refuses files that contain a token. `repo_id` defaults to
    `<your user>/<folder name>`. `base_model` (a Hub id) is written into the card and the uploaded
    adapter_config.json when the adapter was trained on a local copy. The token comes from `token`, HF_TOKEN or
    `hf auth login`.
    """
    repo_id = repo_id or default_repo_id(folder, token=token)
    plan = plan_adapter_push(
        folder,
        repo_id,
        base_model=base_model,
        license=license,
        datasets=datasets,
        include_checkpoints=include_checkpoints,
        exclude=exclude,
    )
    for note in plan.notes:
        logger.warning("%s", note)
    return push_plan(
        plan,
        private=private,
        revision=revision,
        create_pr=create_pr,
        commit_message=commit_message,
        token=token,
        allow_token_shaped_text=allow_token_shaped_text,
    )


def push_dataset(
    folder: str | Path,
    repo_id: str | None = None,
    *,
    card: DatasetCard | None = None,
    private: bool | None = None,
    revision: str | None = None,
    license: str | None = None,
    include_checkpoints: bool = False,
    exclude: list[str] | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
    allow_token_shaped_text: bool = False,
) -> PushResult:
    """Upload a data folder (collected dialogues, SDF scores, ...) as a dataset repo, with its card.

    Collection journals (resume state) stay home unless `include_checkpoints`."""
    repo_id = repo_id or default_repo_id(folder, token=token)
    plan = plan_dataset_push(
        folder, repo_id, card=card, license=license, include_checkpoints=include_checkpoints, exclude=exclude
    )
    return push_plan(
        plan,
        private=private,
        revision=revision,
        create_pr=create_pr,
        commit_message=commit_message,
        token=token,
        allow_token_shaped_text=allow_token_shaped_text,
    )


def push_training_output(training_args, model_args=None) -> PushResult:
    """`push_to_hub: true` in an SFT/SDF recipe: push `output_dir` with the recipe's hub_* settings.

    Uses `hub_model_id` (default `<user>/<run name>`), `hub_private_repo` and `hub_revision`; the base model's
    Hub id comes from `model_args.model_name_or_path` when it is one."""
    base = hub_model_id(model_args.model_name_or_path) if model_args is not None else None
    return push_adapter(
        training_args.output_dir,
        training_args.hub_model_id,
        private=training_args.hub_private_repo,
        revision=getattr(training_args, "hub_revision", None),
        base_model=base,
    )


def default_repo_id(folder: str | Path, token: str | None = None) -> str:
    """`<user>/<name>` where name is the folder's name (its parent's for stage folders such as runs/x/sft)."""
    from huggingface_hub import HfApi

    path = Path(folder).resolve()
    name = path.parent.name if path.name in ("sft", "sdf", "collect", "merged") else path.name
    return f"{whoami_name(HfApi(token=token))}/{name}"


def is_repo_id(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+", name))


def pull(
    name_or_path: str | Path,
    *,
    revision: str | None = None,
    repo_type: str = "model",
    token: str | None = None,
    include_checkpoints: bool = False,
    ignore_patterns: list[str] | None = None,
) -> Path:
    """A local folder for a Hub repo id (downloaded into the HF cache, HF_HUB_CACHE) or a local path (as is).

    Resume state (checkpoints, optimizer states) is not downloaded unless `include_checkpoints`. Errors name
    the repo and say what to check."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise HubError(f"{path} is a file; give a model or adapter folder or a Hub repo id")
        return path
    name = str(name_or_path)
    if not is_repo_id(name):
        raise HubError(f"{name!r} is neither a local folder nor a Hub repo id (user/name)")
    try:
        folder = snapshot_download(
            name,
            repo_type=repo_type,
            revision=revision,
            token=token,
            ignore_patterns=(ignore_patterns or []) + ([] if include_checkpoints else RESUME_STATE_PATTERNS),
        )
    except RepositoryNotFoundError as error:
        raise HubError(
            f"{repo_type} repository {name!r} not found on {constants.ENDPOINT}. Check the name; if it is private "
            "or gated, log in with `hf auth login` or set HF_TOKEN."
        ) from error
    except RevisionNotFoundError as error:
        raise HubError(f"revision {revision!r} not found in {name!r}") from error
    except LocalEntryNotFoundError as error:
        raise HubError(
            f"{name!r} is not in the local cache and the Hub could not be reached (offline? HF_HUB_OFFLINE is "
            f"{'on' if constants.HF_HUB_OFFLINE else 'off'}): {error}"
        ) from error
    except HfHubHTTPError as error:
        if error.response is not None and error.response.status_code in (401, 403):
            raise _auth_error(error) from error
        raise
    return Path(folder)


def redundant_weight_patterns(repo_id: str, revision: str | None = None) -> list[str]:
    """When a model repo has safetensors weights, the other formats it also ships (e.g. huggyllama/llama-7b's
    .bin files) need not be downloaded: transformers loads the safetensors."""
    from huggingface_hub import HfApi

    try:
        files = HfApi().list_repo_files(repo_id, revision=revision)
    except Exception:  # the download that follows reports the real problem
        return []
    if any(f.endswith(".safetensors") for f in files):
        return ["*.bin", "*.bin.index.json", "*.pt", "*.pth", "*.h5", "*.msgpack", "*.ot", "*.onnx", "*.gguf"]
    return []


def cli(argv: list[str] | None = None) -> None:
    """`baize pull REPO_ID`: download an adapter/model (and the base model it names) into the HF cache."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="baize pull",
        description="Download an adapter or model repo into the Hugging Face cache (HF_HOME / HF_HUB_CACHE) so that "
        "`baize chat` and `baize merge` work offline later, and print its local folder. For an adapter, its "
        "base model (from adapter_config.json, or --base) is downloaded too.",
    )
    parser.add_argument("repo", help="Hub repo id (user/name) or local folder")
    parser.add_argument("--revision", help="branch, tag or commit (default: main)")
    parser.add_argument("--repo-type", choices=["model", "dataset"], default="model")
    parser.add_argument("--base", help="base model to fetch instead of the one adapter_config.json names")
    parser.add_argument("--no-base", action="store_true", help="only download the adapter itself")
    parser.add_argument("--include-checkpoints", action="store_true", help="also download checkpoint-*/ folders")
    args = parser.parse_args(argv)
    try:
        folder = pull(
            args.repo, revision=args.revision, repo_type=args.repo_type, include_checkpoints=args.include_checkpoints
        )
        print(folder)
        config_path = folder / "adapter_config.json"
        if args.repo_type == "model" and config_path.exists() and not args.no_base:
            base = args.base or json.loads(config_path.read_text()).get("base_model_name_or_path")
            base = LEGACY_BASE_MODELS.get(base, base)
            if base and not Path(base).exists() and is_repo_id(base):
                print(pull(base, ignore_patterns=redundant_weight_patterns(base)))
    except HubError as error:
        print(f"baize pull: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    cli()
