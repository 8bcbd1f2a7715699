"""Speed options a recipe can turn on (all off by default until a GPU run measures them; docs/gpu.md):

- `adapter_dtype: compute`: the LoRA matrices in the base's bf16 instead of PEFT's fp32 (no fp32 round trip of
  every LoRA input). Only under bf16: fp16 needs fp32 trainable weights for its loss scaling (baize.modeling.launch), and a
  quantised base already gets bf16 adapters from TRL.
- `compile_layers: true`: regional `torch.compile` of each decoder layer (the blocks transformers will not split),
  which fuses RMSNorm, RoPE and SiLU·mul without compiling the whole model (compile time once per layer shape).
- `selective_checkpointing: true` (with `activation_checkpointing: true`): PyTorch's selective activation
  checkpointing in every checkpointed layer: the matmul and attention outputs are kept, only the cheap elementwise
  work (norms, RoPE, SiLU·mul) is recomputed in the backward pass, for part of full checkpointing's memory saving
  at a fraction of its recompute.
- Liger kernels (RMSNorm, RoPE, SwiGLU, fused linear cross-entropy) are TRL's `use_liger_kernel: true`
  (`pip install -e ".[liger]"`, CUDA and triton).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass
class SpeedArguments:
    adapter_dtype: str = field(
        default="float32",
        metadata={"help": "LoRA weights in float32 (PEFT's default, safest) or in the compute dtype (`compute`: bf16 "
                  "runs only; no fp32 round trip of every LoRA input).", "choices": ["float32", "compute"]},
    )  # fmt: skip
    selective_checkpointing: bool = field(
        default=False,
        metadata={"help": "With activation_checkpointing: keep matmul and attention outputs, recompute only the "
                  "elementwise work (PyTorch's selective activation checkpointing)."},
    )  # fmt: skip
    compile_layers: bool = field(
        default=False,
        metadata={"help": "torch.compile each decoder layer (regional compilation: fused elementwise work, compile "
                  "time once per layer shape)."},
    )  # fmt: skip


def _saved_ops():
    import torch

    aten = torch.ops.aten
    ops = [aten.mm.default, aten.addmm.default, aten.bmm.default, aten._scaled_dot_product_efficient_attention.default,
           aten._scaled_dot_product_flash_attention.default, aten._scaled_dot_product_cudnn_attention.default]  # fmt: skip
    return set(ops)


def selective_context():
    """Contexts for torch.utils.checkpoint: matmuls and attention saved, everything else recomputed."""
    from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

    saved = _saved_ops()

    def policy(ctx, op, *args, **kwargs):
        return CheckpointPolicy.MUST_SAVE if op in saved else CheckpointPolicy.PREFER_RECOMPUTE

    return create_selective_checkpoint_contexts(policy)


def checkpoint_selectively(model) -> int:
    """Every layer whose activation checkpointing is on checkpoints selectively from now on (non-reentrant, which
    selective checkpointing needs); returns how many layers."""
    import functools

    from torch.utils.checkpoint import checkpoint
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = 0
    for module in model.modules():
        if isinstance(module, GradientCheckpointingLayer) and module.gradient_checkpointing:
            module._gradient_checkpointing_func = functools.partial(
                checkpoint, use_reentrant=False, context_fn=selective_context
            )
            layers += 1
    return layers


def selective_checkpointing_callback():
    """A Trainer callback: once the Trainer has turned checkpointing on (train start), checkpoint selectively."""
    from transformers import TrainerCallback

    class SelectiveCheckpointing(TrainerCallback):
        layers = 0

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.layers = checkpoint_selectively(model)

    return SelectiveCheckpointing()


def apply_speed_options(model, args) -> dict:
    """Apply the recipe's options to the trainer's model; returns what was applied (for the run summary)."""
    import torch

    applied = {}
    if args.adapter_dtype == "compute":
        if not getattr(args, "bf16", False):
            logger.warning("adapter_dtype: compute needs bf16 (fp16 keeps fp32 trainable weights): ignored")
        else:
            cast = 0
            for name, param in model.named_parameters():
                if (
                    param.requires_grad
                    and "lora_" in name
                    and "magnitude" not in name
                    and param.dtype != torch.bfloat16
                ):
                    param.data = param.data.to(torch.bfloat16)
                    cast += 1
            applied["adapter_dtype"] = f"bfloat16 ({cast} tensors)"
    if args.compile_layers:
        block_names = set(getattr(model, "_no_split_modules", None) or [])
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        block_names |= set(getattr(inner, "_no_split_modules", None) or [])
        layers = [module for module in model.modules() if type(module).__name__ in block_names]
        for layer in layers:
            layer.compile()
        applied["compiled_layers"] = len(layers)
    if applied:
        logger.info("Speed options: %s", applied)
    return applied
