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

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class PlanArguments:
    plan: bool = field(
        default=False,
        metadata={
            "help": "Plan the run and stop: peak memory per GPU (weights, LoRA, gradients, optimizer, activations, "
            "logits), whether it fits each card, the largest micro-batch, time and cost per epoch. Needs only the "
            "model's config (no weights, no GPU) and writes only train_plan.json in output_dir."
        },
    )
    gpu: str | None = field(
        default=None, metadata={"help": f"The card to plan for (all are listed either way): {', '.join(CARDS)}."}
    )
    gpu_price: float | None = field(
        default=None, metadata={"help": "Your hourly price of that card in USD (default: the plan's table)."}
    )
    num_gpus: int = field(default=1, metadata={"help": "GPUs per node the plan is for."})
    num_nodes: int = field(default=1, metadata={"help": "Nodes the plan is for."})
    sharding: str = field(
        default="ddp",
        metadata={
            "help": "How the GPUs share the model: ddp (a full copy each), zero2 (optimizer and gradients sharded), "
            "fsdp or zero3 (weights too).",
            "choices": ["ddp", "zero2", "zero3", "fsdp"],
        },
    )
    plan_rows: int | None = field(
        default=None,
        metadata={
            "help": "Training rows in one epoch, when the recipe's data is not on this machine; each row is then "
            "counted at max_length tokens (an upper bound)."
        },
    )


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
    layers: int
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


def memory_model(config, shape: Shape, world: int = 1, sharding: str = "ddp") -> MemoryModel:
    one = saved_bytes(config, shape, layers=1)
    two = saved_bytes(config, shape, layers=2)
    layers = config.num_hidden_layers
    per_layer = {k: two[k] - one[k] for k in one}
    outside = {k: one[k] - per_layer[k] for k in one}
    activations = outside["activations"] + per_layer["activations"] * layers
    per_sequence = {"activations": float(activations), "logits": float(outside["logits"])}
    tokens = shape.length * shape.sequences_per_row
    if shape.fused_loss:  # Liger's fused linear cross-entropy never materialises the logits
        per_sequence["logits"] = 0.0
    else:  # the backward's first step: the loss gradient in fp32 and in the compute dtype, beside the saved logits
        per_sequence["loss_backward"] = float(tokens * config.vocab_size * (4 + BYTES[shape.compute_dtype]))
    if shape.checkpointing:  # one layer's activations live again while the backward recomputes it
        unchecked = memory_model_unchecked(config, shape)
        per_sequence["recompute"] = float(unchecked)
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
        layers=layers,
        world=world,
        sharding=sharding,
        largest_layer_bytes=layer_params * BYTES[shape.compute_dtype],
    )
    model.params = params
    return model


def memory_model_unchecked(config, shape: Shape) -> float:
    """One decoder layer's activations without checkpointing: what its recomputation holds in the backward."""
    from dataclasses import replace

    plain = replace(shape, checkpointing=False)
    return saved_bytes(config, plain, 2)["activations"] - saved_bytes(config, plain, 1)["activations"]


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
                  global_batch: int | None, args: PlanArguments, source: dict) -> dict:  # fmt: skip
    started = time.perf_counter()
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
        "plan_seconds": round(time.perf_counter() - started, 2),
    }


def format_plan(plan: dict) -> str:
    memory = plan["memory_gib"]
    shape = plan["shape"]
    lines = [
        f"Training plan: {plan['source']['model']} ({plan['params']['base'] / 1e9:.2f} B params, "
        f"{plan['params']['trainable'] / 1e6:.1f} M trained), micro-batch {shape['micro_batch']} x {shape['length']}"
        f"{' x 2 (chosen, rejected)' if shape['sequences_per_row'] == 2 else ''}, "
        f"{shape['quantization'] or shape['weight_dtype']} base, {shape['compute_dtype']} compute, "
        f"checkpointing {'on' if shape['checkpointing'] else 'off'}, attention {shape['attention']}",
        "memory per GPU (GiB): " + ", ".join(f"{k} {v:.2f}" for k, v in memory.items() if k not in (
            "peak_allocated", "with_allocator_and_context") and v),
        f"peak allocated {memory['peak_allocated']:.1f} GiB; with allocator and CUDA context "
        f"{memory['with_allocator_and_context']:.1f} GiB",
        "",
        f"{'card':<9} {'GiB':>6} {'fits':>5} {'max micro':>9} {'step s':>8} {'epoch h':>8} {'$/h':>6} {'epoch $':>9}",
    ]  # fmt: skip

    def shown(value, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}g}"

    for row in plan["cards"]:
        mark = "*" if row["card"] == plan.get("gpu") else " "
        lines.append(
            f"{row['card'] + mark:<9} {row['memory_gib']:>6.0f} {'yes' if row['fits'] else 'no':>5} "
            f"{row['largest_micro_batch']:>9} {shown(row.get('step_s')):>8} {shown(row.get('epoch_hours')):>8} "
            f"{row['price_per_hour']:>6.2f} {shown(row.get('epoch_cost_usd')):>9}"
        )
    lines += ["", "assumptions: " + "; ".join(plan["assumptions"])]
    return "\n".join(lines)


def write_plan(plan: dict, output_dir: str | Path) -> Path:
    path = Path(output_dir, PLAN_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan, indent=2) + "\n")
    return path


def load_config(model_args):
    """The model's config only: from a local folder, the package a `pkg:` recipe names, a GGUF file's header, or
    the Hub (config.json alone; offline, the cache)."""
    from transformers import AutoConfig

    from baize.io.errors import UsageError
    from baize.modeling.loading import PACKAGE_PREFIX, package_dir

    name = model_args.model_name_or_path
    if name.startswith(PACKAGE_PREFIX):
        name = str(package_dir(name[len(PACKAGE_PREFIX) :]))
    gguf = getattr(model_args, "gguf_file", None) or None
    try:
        config = AutoConfig.from_pretrained(
            name, gguf_file=gguf, trust_remote_code=getattr(model_args, "trust_remote_code", False)
        )
    except (OSError, ValueError) as error:
        raise UsageError(
            f"model_name_or_path {model_args.model_name_or_path}: no config to plan with ({str(error).split('. ')[0]}); "
            f"the plan needs only that file: hf download {model_args.model_name_or_path} config.json"
        ) from None
    return config, name, gguf


def shape_from_recipe(training_args, model_args, pairs: bool = False) -> Shape:
    dtype = str(model_args.dtype or "bfloat16").replace("torch.", "")
    compute = "float16" if dtype == "float16" else "bfloat16"
    targets = model_args.lora_target_modules or "all-linear"
    if isinstance(targets, list) and targets == ["all-linear"]:
        targets = "all-linear"
    checkpointing = bool(
        getattr(training_args, "activation_checkpointing", False)
        or getattr(training_args, "gradient_checkpointing", False)
    )
    quantization = "int8" if model_args.load_in_8bit else "nf4" if model_args.load_in_4bit else None
    return Shape(
        micro_batch=training_args.per_device_train_batch_size,
        length=training_args.max_length or 1024,
        compute_dtype=compute,
        weight_dtype=dtype if dtype in BYTES else "bfloat16",
        quantization=quantization,
        double_quant=bool(getattr(model_args, "use_bnb_nested_quant", False)),
        lora_r=model_args.lora_r if model_args.use_peft else None,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        lora_targets=targets,
        adapter_dtype=getattr(training_args, "adapter_dtype", "float32") or "float32",
        checkpointing=checkpointing,
        attention="eager" if model_args.attn_implementation == "eager" else "flash",
        fused_loss=bool(getattr(training_args, "use_liger_kernel", False)),
        optimizer=str(getattr(training_args.optim, "value", training_args.optim)),
        sequences_per_row=2 if pairs else 1,
        reference_forward=pairs,
    )


def _tokenizer(name: str, gguf: str | None, template_path: str | None):
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(name, gguf_file=gguf)
    except (OSError, ValueError):
        return None
    if template_path and Path(template_path).exists():
        tokenizer.chat_template = Path(template_path).read_text()
    return tokenizer


def row_lengths(dataset_args, script_args, name: str, gguf: str | None, template_path: str | None,
                pairs: bool) -> tuple[list[int] | None, str]:  # fmt: skip
    """Tokens of each training row of one epoch (the recipe's data as training sees it), or None when the data is
    not on this machine. Falls back to characters / 4 when the tokenizer is not here either."""
    from tqdm.auto import tqdm

    try:
        if pairs:
            from trl import get_dataset

            train = get_dataset(dataset_args)[script_args.dataset_train_split]
        else:
            from baize.data.formats import load_chat_mixture

            train = load_chat_mixture(dataset_args, on_bad_row="skip")[0]["train"]
    except Exception as error:  # noqa: BLE001 - a Hub dataset offline, a missing file: the plan goes on without
        return None, f"data not loaded ({type(error).__name__}: {str(error)[:160]})"
    tokenizer = _tokenizer(name, gguf, template_path)

    def text(row) -> str:
        if pairs:
            prompt = row["prompt"] if isinstance(row["prompt"], str) else " ".join(m["content"] for m in row["prompt"])
            answers = [
                a if isinstance(a, str) else " ".join(m["content"] for m in a)
                for a in (row["chosen"], row["rejected"])
            ]
            return prompt + max(answers, key=len)
        if tokenizer is not None and tokenizer.chat_template:
            return tokenizer.apply_chat_template(row["messages"], tokenize=False)
        return "".join(m["content"] for m in row["messages"])

    texts = [text(row) for row in tqdm(train, desc="plan: reading the data", leave=False)]
    if tokenizer is None:
        return [
            max(1, len(t) // 4) for t in texts
        ], f"{len(texts)} training rows, tokens estimated as characters / 4 (no tokenizer here)"
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return lengths, f"{len(lengths)} training rows tokenised"


def plan_from_recipe(script_args, training_args, model_args, dataset_args, pairs: bool = False) -> dict:
    """`--plan true`: the plan of this recipe, printed and written to output_dir/train_plan.json, nothing else."""
    started = time.perf_counter()
    config, name, gguf = load_config(model_args)
    shape = shape_from_recipe(training_args, model_args, pairs)
    lengths, data_note = (None, "--plan_rows given")
    if script_args.plan_rows is None:
        lengths, data_note = row_lengths(
            dataset_args, script_args, name, gguf, getattr(training_args, "chat_template_path", None), pairs
        )
    world = max(1, script_args.num_gpus) * max(1, script_args.num_nodes)
    global_batch = getattr(training_args, "global_batch_size", None) or (
        shape.micro_batch * training_args.gradient_accumulation_steps * world
    )
    source = {"model": model_args.model_name_or_path, "data": data_note, "global_batch_size": global_batch,
              "packing": bool(getattr(training_args, "packing", False))}  # fmt: skip
    plan = plan_training(
        config, shape, lengths=lengths, rows=script_args.plan_rows, packing=source["packing"],
        global_batch=global_batch, args=script_args, source=source,
    )  # fmt: skip
    plan["plan_seconds"] = round(time.perf_counter() - started, 2)
    path = write_plan(plan, training_args.output_dir)
    print(format_plan(plan), flush=True)
    print(f"plan written to {path}", flush=True)
    return plan
