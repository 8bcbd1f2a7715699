"""How a training run meets the hardware: precision, the global batch, sharding guards, attention kernel.

Shared by `baize train` and `baize dpo`. Everything here reads what `accelerate launch` exported (WORLD_SIZE,
ACCELERATE_USE_FSDP, FSDP_VERSION, ACCELERATE_USE_DEEPSPEED, ACCELERATE_DEEPSPEED_ZERO_STAGE) so that a recipe
runs unchanged on one GPU, eight GPUs or several nodes, and refuses the combinations that are known to break.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from baize.io.errors import LaunchError

logger = logging.getLogger(__name__)

FAST_ATTENTION = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")
MODEL_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


@dataclass(frozen=True)
class Sharding:
    """The distributed setup `accelerate launch` exported for this process."""

    world_size: int = 1
    fsdp_version: int | None = None  # 1 or 2 under FSDP
    fsdp_use_orig_params: bool | None = None
    zero_stage: int | None = None  # DeepSpeed ZeRO stage

    @classmethod
    def from_env(cls) -> Sharding:
        env = os.environ
        fsdp = env.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
        deepspeed = env.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
        return cls(
            world_size=int(env.get("WORLD_SIZE", "1")),
            fsdp_version=int(env.get("FSDP_VERSION", "1")) if fsdp else None,
            fsdp_use_orig_params=env.get("FSDP_USE_ORIG_PARAMS", "true").lower() == "true" if fsdp else None,
            zero_stage=int(env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "0") or 0) if deepspeed else None,
        )

    @property
    def shards_parameters(self) -> bool:
        return self.fsdp_version is not None or self.zero_stage == 3

    def describe(self) -> str:
        if self.fsdp_version is not None:
            return f"FSDP{self.fsdp_version}"
        if self.zero_stage is not None:
            return f"DeepSpeed ZeRO-{self.zero_stage}"
        return "DDP" if self.world_size > 1 else "one process"


def native_bf16() -> bool:
    """bf16 where the GPU computes it natively (Ampere and newer); V100/T4 only emulate it, slowly."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def match_precision_to_hardware(config) -> None:
    """Defaults for a TRL config that work on any machine; call before the config's own __post_init__."""
    import torch

    # TRL turns bf16 on whenever fp16 is off, which fails on CPUs and emulates slowly on pre-Ampere GPUs.
    # When the recipe does not say: bf16 where native, fp16 on other GPUs, fp32 on CPU.
    if config.fp16 and not torch.cuda.is_available():
        # The int8 paper recipes train in fp16 as the original did; the same recipe on a CPU (a dry run) is fp32.
        logger.warning("fp16 mixed precision needs a CUDA GPU: training in fp32 on this machine")
        config.fp16 = False
        config.bf16 = False
    if config.bf16 is None and not config.fp16:
        config.bf16 = native_bf16()
        config.fp16 = torch.cuda.is_available() and not config.bf16
    # Without an accelerator, say so: accelerate then sets up gloo for multi-process CPU runs (torchrun).
    if not torch.accelerator.is_available():
        config.use_cpu = True
    # With LoRA every trainable parameter takes part in every step; the Trainer's default for a PeftModel
    # (find_unused_parameters=True) costs an extra graph walk per step and breaks reentrant checkpointing.
    if config.ddp_find_unused_parameters is None:
        config.ddp_find_unused_parameters = False


def derive_gradient_accumulation(config, sharding: Sharding | None = None) -> None:
    """`global_batch_size` -> gradient_accumulation_steps for the actual number of processes (axolotl's
    `batch_size`): the paper's 64 on 1 GPU or 8, by construction, or a clear refusal."""
    if config.global_batch_size is None:
        return
    world = (sharding or Sharding.from_env()).world_size
    micro = config.per_device_train_batch_size
    per_step = micro * world
    if config.global_batch_size % per_step:
        fits = [b for b in (1, 2, 4, 8, 16, 32, 64, 128) if config.global_batch_size % (b * world) == 0]
        hint = (
            f"use --per_device_train_batch_size {max(fits)} (or {', '.join(map(str, fits[:-1]))})"
            if fits
            else ("change the number of processes")
        )
        raise LaunchError(
            f"global_batch_size {config.global_batch_size} cannot be reached with per_device_train_batch_size "
            f"{micro} x {world} process(es) = {per_step} per step: {hint}"
        )
    derived = config.global_batch_size // per_step
    if config.gradient_accumulation_steps not in (1, derived):
        raise LaunchError(
            f"gradient_accumulation_steps {config.gradient_accumulation_steps} contradicts global_batch_size "
            f"{config.global_batch_size} (= {micro} per device x {world} process(es) x {derived}): set only one"
        )
    config.gradient_accumulation_steps = derived


def check_quantization_fits_sharding(model_args, sharding: Sharding | None = None) -> None:
    """Refuse the quantised-base / sharding combinations that fail or train wrongly; make QLoRA shardable."""
    sharding = sharding or Sharding.from_env()
    if not sharding.shards_parameters:
        return
    setup = sharding.describe()
    if model_args.load_in_8bit:
        raise LaunchError(
            f"load_in_8bit cannot be sharded by {setup}: bitsandbytes int8 weights do not flatten (FSDP) or give a "
            "wrong loss (ZeRO-3). Use accelerate_configs/multi_gpu.yaml or deepspeed_zero2.yaml for int8, or "
            "--load_in_8bit false --load_in_4bit true with accelerate_configs/fsdp_qlora.yaml or deepspeed_zero3.yaml"
        )
    if not model_args.load_in_4bit:
        return
    if sharding.fsdp_version == 2 or sharding.fsdp_use_orig_params:
        raise LaunchError(
            f"a 4-bit base under {setup} (use_orig_params={sharding.fsdp_use_orig_params}) is not supported: "
            "launch with accelerate_configs/fsdp_qlora.yaml (FSDP1, use_orig_params false)"
        )
    # FSDP and ZeRO-3 flatten every parameter of a wrapped block into one tensor: the packed 4-bit weights must be
    # stored in the same dtype as the rest of the model (bitsandbytes' default storage, uint8, cannot be).
    dtype = model_args.dtype if model_args.dtype not in (None, "auto") else "bfloat16"
    storage = model_args.bnb_4bit_quant_storage
    if storage not in (None, dtype):
        raise LaunchError(
            f"bnb_4bit_quant_storage {storage} must equal dtype {dtype} for QLoRA under {setup} (or leave it unset)"
        )
    model_args.dtype, model_args.bnb_4bit_quant_storage = dtype, dtype


def trainable_weights_for_fp16(model, training_args) -> int:
    """Put the trainable weights back in fp32 when training in fp16; returns how many tensors changed.

    TRL casts the adapter of a quantised base to bf16 (the QLoRA advice). fp16 training scales the loss, and
    torch's GradScaler cannot unscale bf16 gradients ("_amp_foreach_non_finite_check_and_unscale_cuda not
    implemented for 'BFloat16'", seen on an H200 with the int8 recipes). fp32 trainable weights under fp16
    autocast are the usual mixed-precision pattern and what the original Baize trained with.
    """
    if not training_args.fp16:
        return 0
    import torch

    changed = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
            changed += 1
    return changed


def attention_implementation(requested: str | None) -> str | None:
    """The recipe's attention kernel; where its package is not installed, baize's per-document attention for packed
    batches (baize.modeling.packed_attention: PyTorch's varlen flash attention on CUDA, flex_attention elsewhere; sdpa for
    unpacked batches), with one warning."""
    package = FAST_ATTENTION.get(requested or "")
    if package is None:
        return requested
    import torch

    if importlib.util.find_spec(package) is not None and torch.cuda.is_available():
        return requested
    from baize.modeling.packed_attention import register

    logger.warning(
        "attn_implementation %s needs the %s package and a CUDA GPU; using baize's per-document attention for "
        "packed batches instead (PyTorch's own varlen or flex attention; sdpa otherwise)",
        requested,
        package,
    )
    return register()


def check_liger(training_args) -> None:
    if getattr(training_args, "use_liger_kernel", False) and importlib.util.find_spec("liger_kernel") is None:
        raise LaunchError("use_liger_kernel needs the liger-kernel package: pip install -e '.[liger]'")


def require_saved_model(output_dir: str | Path, adapter: bool) -> Path:
    """After training: the adapter (or full model) must be on disk before a card is written or anything pushed.

    A sharded state dict (FSDP `SHARDED_STATE_DICT`) makes `save_model` write no adapter at all, silently."""
    folder = Path(output_dir)
    wanted = ADAPTER_FILES if adapter else MODEL_FILES
    found = next((folder / name for name in wanted if (folder / name).is_file()), None)
    if found is None:
        raise LaunchError(
            f"training finished but no {'adapter' if adapter else 'model'} was saved in {folder} (expected "
            f"{wanted[0]}); under FSDP use fsdp_state_dict_type FULL_STATE_DICT (accelerate_configs/fsdp.yaml). "
            "No card was written and nothing was pushed"
        )
    return found
