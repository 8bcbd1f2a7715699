"""Know before you rent: a training plan from the recipe alone (`baize train --plan true`, `baize dpo --plan true`).

Peak memory per GPU is not a formula here: the recipe's own model path (transformers + peft, its attention kernel,
its checkpointing, its adapter dtype and autocast) runs one forward on fake tensors (no weights, no GPU), and every
tensor saved for the backward is counted once per storage, with PyTorch's saved-tensor hooks. The model is traced
at 1 and 2 decoder layers and one sequence, and scaled: activations grow linearly in layers and in micro-batch, so a
7B or a 70B plan takes seconds. Attention other than `eager` is traced as flash/memory-efficient attention saves it
on CUDA (q, k, v, output, log-sum-exp). Quantised weights (LLM.int8, NF4) are counted by their storage formula.

Time comes from the tokens of one epoch (the recipe's data, tokenised with the model's template when they are on
this machine), the model FLOPs per token (4N + 12·L·s·d for a frozen base, docs/gpu.md) and an MFU taken from a
measured row (MEASURED_MFU says which); cost from the card's hourly price. Everything assumed is listed in the plan.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

GIB = 2**30
PLAN_FILE = "train_plan.json"


@dataclass(frozen=True)
class Card:
    label: str
    memory_gib: float  # what torch.cuda.get_device_properties().total_memory reports
    dense_tflops: float  # dense bf16 (fp16 on cards without bf16) tensor-core peak
    bf16: bool
    price_per_hour: float  # indicative on-demand USD per GPU-hour; --gpu_price overrides


# Indicative late-2026 on-demand prices per GPU-hour on the common GPU clouds; yours may differ (--gpu_price).
CARDS = {
    "h100-80": Card("NVIDIA H100 80GB SXM", 79.2, 989.0, True, 2.99),
    "h200": Card("NVIDIA H200 141GB", 139.8, 989.0, True, 3.79),
    "a100-80": Card("NVIDIA A100 80GB", 79.2, 312.0, True, 1.79),
    "a100-40": Card("NVIDIA A100 40GB", 39.4, 312.0, True, 1.29),
    "l40s": Card("NVIDIA L40S 48GB", 44.4, 362.0, True, 0.99),
    "4090": Card("NVIDIA GeForce RTX 4090 24GB", 23.6, 165.0, True, 0.49),
    "t4": Card("NVIDIA T4 16GB", 14.6, 65.0, False, 0.35),
}

# Model-FLOPs utilisation of one LoRA step, by base precision, from docs/gpu.md's measured rows (H200, 2026-11-27).
MEASURED_MFU = {
    "16-bit": (0.315, "measured: bf16 LoRA r=8, 8 x 512, Llama-2-7B shape, H200 (docs/gpu.md)"),
    "nf4": (0.336, "measured: NF4 QLoRA r=16, 4 x 1024, Llama-2-7B shape, H200 (docs/gpu.md)"),
    "int8": (0.1575, "assumed: half the bf16 row; LLM.int8 training speed is not measured yet (gpu-check's int8 row)"),
}
# Allocator and CUDA context on top of the peak allocated memory, for "fits": 5 % fragmentation + 1 GiB context.
FRAGMENTATION, CONTEXT_GIB = 0.05, 1.0
SCALING = {"gpus": 0.95, "nodes": 0.85}  # assumed throughput per GPU when several share a step (not measured)


@dataclass(frozen=True)
class Shape:
    """What the memory of one training step depends on, read from the recipe."""

    micro_batch: int
    length: int
    compute_dtype: str  # bfloat16 | float16 (autocast)
    weight_dtype: str  # the base's storage dtype when not quantised
    quantization: str | None  # int8 | nf4 | None
    double_quant: bool
    lora_r: int | None  # None: full fine-tuning
    lora_alpha: int
    lora_dropout: float
    lora_targets: object
    adapter_dtype: str  # float32 | compute
    checkpointing: bool
    attention: str  # eager | flash (anything else: sdpa, flash_attention_2, varlen, as CUDA runs it)
    fused_loss: bool  # Liger's fused linear cross-entropy: no logits tensor
    optimizer: str
    sequences_per_row: int = 1  # DPO: chosen and rejected
    reference_forward: bool = False  # DPO: the reference model's forward (the base with the adapter off)


BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def _flash_like_attention():
    """An attention that saves for the backward what flash / memory-efficient attention saves on CUDA: q, k, v,
    the output and the log-sum-exp per head and position. Registered once under a name without "flash" (transformers
    treats those names as the flash-attention-2 package)."""
    import torch
    from transformers import AttentionInterface

    class FlashLike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, query, key, value):
            out = torch.empty_like(query)
            lse = query.new_empty(query.shape[:-1], dtype=torch.float32)
            ctx.save_for_backward(query, key, value, out, lse)
            return out

        @staticmethod
        def backward(ctx, grad):
            query, key, value, _, _ = ctx.saved_tensors
            return torch.empty_like(query), torch.empty_like(key), torch.empty_like(value)

    def attention(module, query, key, value, attention_mask, **kwargs):
        return FlashLike.apply(query, key, value).transpose(1, 2).contiguous(), None

    AttentionInterface.register("baize_plan_kernel", attention)
    return "baize_plan_kernel"


def _lora_config(shape: Shape):
    from peft import LoraConfig

    return LoraConfig(
        r=shape.lora_r, lora_alpha=shape.lora_alpha, lora_dropout=shape.lora_dropout,
        target_modules=shape.lora_targets, task_type="CAUSAL_LM",
    )  # fmt: skip


def build_on_meta(config, shape: Shape, layers: int | None = None):
    """The recipe's model (and its LoRA) on the meta device: shapes only, no memory."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(config)
    if layers is not None:
        config.num_hidden_layers = layers
        if getattr(config, "layer_types", None):
            config.layer_types = config.layer_types[:layers]
    attention = "eager" if shape.attention == "eager" else _flash_like_attention()
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(
            config, dtype=getattr(torch, shape.weight_dtype), attn_implementation=attention
        )
    if shape.lora_r is None:
        return model
    import warnings

    from peft import get_peft_model

    with warnings.catch_warnings():  # peft asks transformers by a deprecated name (is_gradient_checkpointing)
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(model, _lora_config(shape))
    # Trainable weights' dtype as training has them: PEFT's fp32; bf16 for a quantised base under bf16 (TRL's
    # cast) or with adapter_dtype: compute; fp32 under fp16 loss scaling (baize's trainable_weights_for_fp16).
    if shape.compute_dtype == "bfloat16" and (shape.quantization or shape.adapter_dtype == "compute"):
        for param in model.parameters():
            if param.requires_grad:
                param.data = param.data.to(torch.bfloat16)
    return model


def saved_bytes(config, shape: Shape, layers: int) -> dict[str, int]:
    """One forward of one sequence on fake tensors; bytes saved for the backward, once per storage, split into
    logits (the tensors as wide as the vocabulary) and the rest."""
    import warnings

    with warnings.catch_warnings():  # peft still calls transformers' checkpointing by its deprecated names
        warnings.simplefilter("ignore", FutureWarning)
        return _saved_bytes(config, shape, layers)


def _saved_bytes(config, shape: Shape, layers: int) -> dict[str, int]:
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    model = build_on_meta(config, shape, layers)
    model.train()
    if shape.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    vocab = config.vocab_size
    saved: dict[int, tuple[int, bool]] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        saved.setdefault(storage._cdata, (storage.nbytes(), tensor.shape[-1:] == (vocab,) if tensor.dim() else False))
        return tensor

    from contextlib import nullcontext

    no_cast = nullcontext()
    if shape.quantization and shape.lora_r is not None:
        # PEFT's bitsandbytes LoRA layers leave the input in the autocast dtype (no cast to the adapter's dtype)
        from peft.helpers import disable_input_dtype_casting

        no_cast = disable_input_dtype_casting(model)
    with FakeTensorMode(allow_non_fake_inputs=True):
        model.to_empty(device="cpu")
        weights = {p.untyped_storage()._cdata for p in model.parameters()}
        ids = torch.zeros(shape.sequences_per_row, shape.length, dtype=torch.long)
        with (
            no_cast,
            torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor),
            torch.autocast("cpu", dtype=getattr(torch, shape.compute_dtype)),
        ):
            model(input_ids=ids, labels=ids, use_cache=False)
    logits = sum(n for key, (n, wide) in saved.items() if wide and key not in weights)
    rest = sum(n for key, (n, wide) in saved.items() if not wide and key not in weights)
    return {"activations": rest, "logits": logits}


def linear_shapes(config, shape: Shape) -> dict:
    """Parameter counts of the full model, from the meta model: quantisable linears (every nn.Linear but the
    output head, as transformers' bitsandbytes integration leaves lm_head), the rest, and LoRA's."""
    import torch

    model = build_on_meta(config, shape)
    head = model.get_output_embeddings()
    quantisable, rows, largest_in, largest_out, other, lora = 0, 0, 0, 0, 0, 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module is not head and "lora_" not in name:
            quantisable += module.weight.numel()
            rows += module.weight.shape[0]
            if module.weight.numel() > largest_in * largest_out:
                largest_out, largest_in = module.weight.shape
    counted = {id(m.weight) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not head}
    for param in model.parameters():
        if param.requires_grad and shape.lora_r is not None:
            lora += param.numel()
        elif id(param) not in counted:
            other += param.numel()
    head_params = head.weight.numel() if head is not None else 0
    return {
        "quantisable": quantisable, "rows": rows, "other": other, "lora": lora, "head": head_params,
        "largest_linear": (largest_out, largest_in), "total": quantisable + other,
    }  # fmt: skip


def weight_bytes(params: dict, shape: Shape) -> float:
    """Storage of the frozen base: bf16/fp16 as loaded, LLM.int8 (int8 weights + an fp32 scale per output row), or
    NF4 (4 bits + absmax per 64 weights: fp32, or 8 bits with an fp32 scale per 256 blocks under double quant)."""
    dense = BYTES[shape.weight_dtype]
    if shape.quantization == "int8":
        return params["quantisable"] + params["rows"] * 4 + params["other"] * BYTES[shape.compute_dtype]
    if shape.quantization == "nf4":
        per_weight = 0.5 + (1 / 64 + 4 / (64 * 256) if shape.double_quant else 4 / 64)
        return params["quantisable"] * per_weight + params["other"] * BYTES[shape.compute_dtype]
    return (params["quantisable"] + params["other"]) * dense


def trainable_bytes(params: dict, shape: Shape) -> dict[str, float]:
    trainable = params["lora"] if shape.lora_r is not None else params["total"]
    if shape.lora_r is None:
        dtype = shape.weight_dtype
    elif shape.compute_dtype == "bfloat16" and (shape.quantization or shape.adapter_dtype == "compute"):
        dtype = "bfloat16"
    else:
        dtype = "float32"
    size = BYTES[dtype]
    if "8bit" in shape.optimizer:
        state = 2
    elif "sgd" in shape.optimizer or "adafactor" in shape.optimizer:
        state = size
    else:  # AdamW: exp_avg and exp_avg_sq in the parameters' dtype
        state = 2 * size
    return {
        "trainable_params": trainable,
        "trainable_dtype": dtype,
        "lora": trainable * size if shape.lora_r is not None else 0.0,
        "gradients": trainable * size,
        "optimizer": trainable * state,
    }


@dataclass
class MemoryModel:
    """Per-GPU memory as a function of the micro-batch: fixed parts, and activations per sequence."""

    weights: float
    trainable: dict
    per_sequence: dict  # activations, logits, loss backward, recompute (bytes, one sequence)
    transient: float  # a quantised matmul's own buffers at the widest layer, per sequence (LLM.int8)
    transient_fixed: float  # ... and independent of the batch (NF4's dequantised weight)
    params: dict  # parameter counts (linear_shapes)
    world: int = 1
    sharding: str = "ddp"
    largest_layer_bytes: float = 0.0

    def parts(self, micro_batch: int) -> dict[str, float]:
        shard = self.world if self.sharding in ("fsdp", "zero3") else 1
        state_shard = self.world if self.sharding in ("fsdp", "zero2", "zero3") else 1
        parts = {
            "weights": self.weights / shard + (2 * self.largest_layer_bytes if shard > 1 else 0.0),
            "lora": self.trainable["lora"] / shard,
            "gradients": self.trainable["gradients"] / state_shard,
            "optimizer": self.trainable["optimizer"] / state_shard,
        }
        if self.trainable["lora"] == 0:  # full fine-tuning: the trained weights are the weights
            parts["weights"] = self.weights / shard
        for name, value in self.per_sequence.items():
            parts[name] = value * micro_batch
        parts["quantised_matmul"] = self.transient * micro_batch + self.transient_fixed
        return parts

    def peak(self, micro_batch: int) -> float:
        return sum(self.parts(micro_batch).values())


def needed_on_card(peak_bytes: float) -> float:
    return peak_bytes * (1 + FRAGMENTATION) + CONTEXT_GIB * GIB


def per_layer_and_outside(config, shape: Shape) -> tuple[dict[str, int], dict[str, int]]:
    """Saved bytes of one decoder layer, and of everything outside the layers, from traces at 1 and 2 layers."""
    one = saved_bytes(config, shape, layers=1)
    two = saved_bytes(config, shape, layers=2)
    per_layer = {k: two[k] - one[k] for k in one}
    return per_layer, {k: one[k] - per_layer[k] for k in one}


def memory_model(config, shape: Shape, world: int = 1, sharding: str = "ddp") -> MemoryModel:
    from dataclasses import replace

    layers = config.num_hidden_layers
    per_layer, outside = per_layer_and_outside(config, shape)
    activations = outside["activations"] + per_layer["activations"] * layers
    per_sequence = {"activations": float(activations), "logits": float(outside["logits"])}
    tokens = shape.length * shape.sequences_per_row
    if shape.fused_loss:  # Liger's fused linear cross-entropy never materialises the logits
        per_sequence["logits"] = 0.0
    else:  # the backward's first step: the loss gradient in fp32 and in the compute dtype, beside the saved logits
        per_sequence["loss_backward"] = float(tokens * config.vocab_size * (4 + BYTES[shape.compute_dtype]))
    if shape.checkpointing:  # one layer's activations live again while the backward recomputes it
        unchecked, _ = per_layer_and_outside(config, replace(shape, checkpointing=False))
        per_sequence["recompute"] = float(unchecked["activations"])
    params = linear_shapes(config, shape)
    out_features, in_features = params["largest_linear"]
    transient = 0.0
    if shape.quantization == "int8":  # int32 accumulator and the int8 copy of the input, at the widest layer
        transient = tokens * (4 * out_features + in_features)
    nf4_dequantised = out_features * in_features * BYTES[shape.compute_dtype] if shape.quantization == "nf4" else 0
    layer_params = params["quantisable"] / max(1, layers)
    model = MemoryModel(
        weights=weight_bytes(params, shape),
        trainable=trainable_bytes(params, shape),
        per_sequence=per_sequence,
        transient=transient,
        transient_fixed=float(nf4_dequantised),
        params=params,
        world=world,
        sharding=sharding,
        largest_layer_bytes=layer_params * BYTES[shape.compute_dtype],
    )
    return model


def flops_per_token(config, params: dict, shape: Shape, attention_span: int) -> tuple[float, float]:
    """(model FLOPs per token as MFU counts them, FLOPs the GPU actually does): 4N + 12·L·s·d for a frozen base
    (forward 2N, backward through the activations 2N), 6N + ... when every weight is trained; checkpointing adds
    a second forward that MFU does not count."""
    linear = params["quantisable"] + params["head"]
    attention = 12 * config.num_hidden_layers * attention_span * config.hidden_size
    forward = 2 * linear + attention / 3
    model = (4 if shape.lora_r is not None else 6) * linear + attention + (forward if shape.reference_forward else 0)
    done = model + (forward if shape.checkpointing else 0.0)
    return model, done


def epoch_tokens(lengths: list[int], shape: Shape, micro_batch: int, packing: bool) -> int:
    """Tokens a GPU computes in one epoch: every token once when packed; unpacked, each micro-batch is padded to
    its longest row (rows in a seeded random order, as the Trainer's sampler draws them)."""
    clipped = [min(n, shape.length) for n in lengths]
    if packing:
        return sum(clipped)
    order = list(clipped)
    random.Random(42).shuffle(order)
    return sum(
        max(order[i : i + micro_batch]) * len(order[i : i + micro_batch]) for i in range(0, len(order), micro_batch)
    )


def largest_micro_batch(model: MemoryModel, card: Card, per_gpu_batch: int | None) -> int:
    """The largest micro-batch that fits, among the divisors of the per-GPU batch when a global batch is set."""
    usable = card.memory_gib * GIB
    candidates = [b for b in range(1, (per_gpu_batch or 256) + 1) if not per_gpu_batch or per_gpu_batch % b == 0]
    fitting = [b for b in candidates if needed_on_card(model.peak(b)) <= usable]
    return max(fitting) if fitting else 0


def card_rows(model: MemoryModel, config, shape: Shape, *, lengths: list[int] | None, rows: int | None, packing: bool,
              global_batch: int, world: int, nodes: int, price: dict[str, float]) -> list[dict]:  # fmt: skip
    mfu_key = shape.quantization or "16-bit"
    mfu, _ = MEASURED_MFU[mfu_key]
    attention_span = shape.length
    model_flops, done_flops = flops_per_token(config, model.params, shape, attention_span)
    scaling = (SCALING["gpus"] if world > 1 else 1.0) * (SCALING["nodes"] if nodes > 1 else 1.0)
    per_gpu_batch = global_batch // world if global_batch and global_batch % world == 0 else None
    result = []
    for name, card in CARDS.items():
        peak = model.peak(shape.micro_batch)
        fits = needed_on_card(peak) <= card.memory_gib * GIB
        best = largest_micro_batch(model, card, per_gpu_batch)
        micro = shape.micro_batch if fits else best
        row = {
            "card": name,
            "memory_gib": card.memory_gib,
            "fits": fits,
            "needs_gib": round(needed_on_card(peak) / GIB, 1),
            "largest_micro_batch": best,
            "gradient_accumulation": (per_gpu_batch // best) if per_gpu_batch and best else None,
            "price_per_hour": price.get(name, card.price_per_hour),
        }
        if micro:
            # model FLOPs at the measured MFU; a checkpointed step also does the forward a second time
            tokens_per_s = mfu * card.dense_tflops * 1e12 / model_flops * (model_flops / done_flops)
            tokens_per_step = (global_batch or micro * world) * shape.length * shape.sequences_per_row
            row["tokens_per_s_per_gpu"] = round(tokens_per_s)
            row["step_s"] = round(tokens_per_step / (tokens_per_s * world * scaling), 4)
            if lengths is not None or rows is not None:
                per_row = lengths if lengths is not None else [shape.length] * rows
                tokens = epoch_tokens(per_row, shape, micro, packing) * shape.sequences_per_row
                hours = tokens / (tokens_per_s * world * scaling) / 3600
                row["epoch_tokens"] = tokens
                row["epoch_hours"] = round(hours, 4)
                row["epoch_cost_usd"] = round(hours * world * row["price_per_hour"], 4)
        result.append(row)
    return result


def plan_training(config, shape: Shape, *, lengths: list[int] | None, rows: int | None, packing: bool,
                  global_batch: int | None, args, source: dict) -> dict:  # fmt: skip
    world = max(1, args.num_gpus) * max(1, args.num_nodes)
    model = memory_model(config, shape, world, args.sharding if world > 1 else "ddp")
    price = {args.gpu: args.gpu_price} if args.gpu and args.gpu_price is not None else {}
    rows_out = card_rows(model, config, shape, lengths=lengths, rows=rows, packing=packing,
                         global_batch=global_batch or shape.micro_batch * world, world=world, nodes=args.num_nodes,
                         price=price)  # fmt: skip
    parts = model.parts(shape.micro_batch)
    peak = sum(parts.values())
    mfu, mfu_source = MEASURED_MFU[shape.quantization or "16-bit"]
    return {
        "source": source,
        "shape": {k: getattr(shape, k) for k in shape.__dataclass_fields__ if k != "lora_targets"},
        "params": {"base": model.params["total"], "trainable": model.trainable["trainable_params"]},
        "world": {"gpus_per_node": args.num_gpus, "nodes": args.num_nodes, "sharding": args.sharding},
        "memory_gib": {
            **{k: round(v / GIB, 3) for k, v in parts.items()},
            "peak_allocated": round(peak / GIB, 2),
            "with_allocator_and_context": round(needed_on_card(peak) / GIB, 2),
        },  # fmt: skip
        "cards": rows_out,
        "gpu": args.gpu,
        "assumptions": [
            f"MFU {mfu:.1%} ({mfu_source}), the same fraction of every card's dense peak",
            f"fits: peak allocated x {1 + FRAGMENTATION} (allocator) + {CONTEXT_GIB:g} GiB (CUDA context, cuBLAS)",
            "activations traced on fake tensors (saved for the backward, once per storage); attention as "
            + ("eager (the probabilities are saved)" if shape.attention == "eager" else "flash/memory-efficient"),
            "quantised weights by storage formula; LLM.int8's int32 accumulator and int8 input at the widest layer",
            f"several GPUs: {SCALING['gpus']:.0%} of one GPU's throughput each, x {SCALING['nodes']:.0%} across "
            "nodes (assumed, not measured)",
            *(
                ["epoch: each row at max_length tokens (the data is not on this machine: --plan_rows)"]
                if lengths is None and rows is not None
                else []
            ),
        ],  # fmt: skip
    }
