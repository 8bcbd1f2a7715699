"""A training plan from a recipe (`baize train --plan true`, `baize dpo --plan true`): the plan's flags, the model's
config (nothing else is read from the Hub), the recipe's shape, the tokens of its data, and the printed table and
train_plan.json. The memory and time model itself is baize/modeling/plan.py."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from baize.modeling.plan import BYTES, CARDS, PLAN_FILE, Shape, plan_training


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
        default=None, metadata={"help": "The card to plan for (all are listed either way).", "choices": list(CARDS)}
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
    """Write the plan; the same plan again (only its own seconds differ) leaves the file as it was."""
    path = Path(output_dir, PLAN_FILE)
    if path.exists():
        try:
            earlier = json.loads(path.read_text())
        except ValueError:
            earlier = None
        if isinstance(earlier, dict) and {**earlier, "plan_seconds": None} == {**plan, "plan_seconds": None}:
            return path
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


def row_lengths(read_rows, name: str, gguf: str | None, template_path: str | None,
                pairs: bool) -> tuple[list[int] | None, str]:  # fmt: skip
    """Tokens of each training row of one epoch (the recipe's data as training sees it), or None when the data is
    not on this machine. Falls back to characters / 4 when the tokenizer is not here either."""
    from tqdm.auto import tqdm

    try:
        train = read_rows()
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


def plan_from_recipe(script_args, training_args, model_args, read_rows, pairs: bool = False) -> dict:
    """`--plan true`: the plan of this recipe, printed and written to output_dir/train_plan.json, nothing else.
    `read_rows()` returns the training rows as the command reads them (chat messages, or DPO's pairs)."""
    started = time.perf_counter()
    config, name, gguf = load_config(model_args)
    shape = shape_from_recipe(training_args, model_args, pairs)
    lengths, data_note = (None, "--plan_rows given")
    if script_args.plan_rows is None:
        lengths, data_note = row_lengths(
            read_rows, name, gguf, getattr(training_args, "chat_template_path", None), pairs
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
