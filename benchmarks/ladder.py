"""bench7b as a ladder: what the recipes do, one option at a time, on a 7B-shaped Llama built once on the GPU.

Rows (cumulative where it says +): the 31.5 % anchor (bf16 LoRA r=8, dropout 0, 8 x 512); + dropout 0.05 (the
recipes'); + adapters in bf16; + Liger kernels; micro-batch 16 x 512 and 8 x 1024; + regional compile (compile
time apart); the best row with full and with selective checkpointing; a packed [1, 8192] batch of ~16 documents
(position_ids) through sdpa's dense block mask, baize's varlen attention and flex attention; then the memory rows
at the recipes' shapes with checkpointing: int8 32 x 512 (fp16, dropout 0.05), fp16 LoRA at the same shape (the
int8 speed factor), int8 with ~0.2 % outlier features (LLM.int8's slow path), QLoRA 4 x 1024 and 8 x 1024.
Each row: tokens/s, MFU (4N + attention per document), peak allocated and reserved memory, and beside them what
`baize train --plan` predicts for the row (peak allocated, step seconds); a one-step profiler split (GEMM /
attention / Triton / elementwise / idle) for the anchor and the best row. Rows are written as they
finish (`on_row`), so a cut-off run still leaves evidence. The base is built once on the GPU; the quantised rows
quantise its weights from memory through transformers' own loader (`state_dict=`), so nothing is saved to disk.

Every row carries the seconds it is expected to take on one H100/H200 and whether it is essential (it measures one
of the issue's targets). Under a time budget a row runs only if it fits, and an optional row only if every
essential row after it still fits too (`Budget.allows`); a row left out says so in the results.
"""

from __future__ import annotations

import gc
import importlib.util
import statistics
import time
import traceback
from dataclasses import dataclass, replace
from types import SimpleNamespace

PACKED_DOCUMENTS = 16


@dataclass(frozen=True)
class Row:
    label: str
    batch: int = 8
    length: int = 512
    dropout: float = 0.0
    adapter_dtype: str = "float32"
    liger: bool = False
    compile: bool = False
    checkpointing: str | None = None  # full | selective
    attention: str = "sdpa"  # sdpa | varlen | flex (packed rows)
    packed: bool = False
    quant: str | None = None  # 8bit | 4bit | fp16 (unquantised fp16 base, for the int8 factor)
    rank: int = 8
    outliers: bool = False
    profile: bool = False
    expected_s: int = 10  # on one H100/H200, load and compile included
    essential: bool = True  # measures a target; an optional row gives way to the essential ones after it


@dataclass
class Budget:
    """Seconds left for the check: a row or step runs if it fits, an optional one only if the essential ones after
    it still fit too. `deadline=None` is no limit (the dry run)."""

    deadline: float | None = None  # a time.monotonic() value

    @classmethod
    def of(cls, seconds: float | None) -> Budget:
        return cls(None if seconds is None else time.monotonic() + seconds)

    def left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def allows(self, expected_s: float, essential: bool, essential_after_s: float = 0.0) -> bool:
        return expected_s + (0.0 if essential else essential_after_s) <= self.left()

    def skipped(self, expected_s: float) -> dict:
        return {"skipped": f"time budget: {max(0, self.left()):.0f} s left, this needs ~{expected_s:.0f} s"}


def ladder_rows() -> list[Row]:
    """In the order they run: the options on the GPU-resident bf16 base first, then the quantised rows (the base
    moves to the CPU to make room). Expected seconds are estimates for one H100/H200 (compile ~1 min a variant)."""
    anchor = Row("anchor: bf16 8x512, dropout 0 (the 31.5 % row)", profile=True, expected_s=15)
    dropout = replace(anchor, label="+ dropout 0.05", dropout=0.05, profile=False, expected_s=8)
    bf16_adapters = replace(dropout, label="+ adapters in bf16", adapter_dtype="compute")
    liger = replace(bf16_adapters, label="+ Liger kernels", liger=True)
    wide = replace(liger, label="+ micro-batch 16x512", batch=16)
    long = replace(liger, label="+ micro-batch 8x1024", length=1024)
    best = replace(wide, label="+ regional compile (best)", compile=True, profile=True, expected_s=90)
    checkpointed = dict(length=512, dropout=0.05, checkpointing="full")
    return [
        anchor, dropout, bf16_adapters, liger, wide, long, best,
        replace(best, label="best + full checkpointing", checkpointing="full", profile=False, expected_s=45,
                essential=False),
        replace(best, label="best + selective checkpointing", checkpointing="selective", profile=False,
                expected_s=60, essential=False),
        *(replace(bf16_adapters, label=f"packed 1x8192, {name}", batch=1, length=8192, packed=True, attention=name,
                  expected_s=40 if name == "flex" else 10, essential=name != "flex")
          for name in ("sdpa", "varlen", "flex")),
        Row("int8 32x512 fp16, dropout 0.05, checkpointing", 32, **checkpointed, quant="8bit", expected_s=40),
        Row("fp16 LoRA 32x512, dropout 0.05, checkpointing", 32, **checkpointed, quant="fp16", expected_s=15),
        Row("int8 32x512 with 0.2 % outlier features", 32, **checkpointed, quant="8bit", outliers=True,
            expected_s=45, essential=False),
        Row("QLoRA NF4 4x1024, r=16, checkpointing", 4, 1024, 0.05, checkpointing="full", quant="4bit", rank=16,
            expected_s=25),
        Row("QLoRA NF4 8x1024, r=16, checkpointing", 8, 1024, 0.05, checkpointing="full", quant="4bit", rank=16,
            expected_s=25, essential=False),
    ]  # fmt: skip


def planned(row: Row, config, peak_tflops: float, cache: dict) -> dict:
    """What `baize train --plan` predicts for this row (baize/modeling/plan.py), written beside the measurement so
    every lent GPU checks the planner too: peak allocated GiB and seconds per step at the measured MFU."""
    from baize.modeling.plan import GIB, MEASURED_MFU, Shape, flops_per_token, memory_model

    quantization = {"8bit": "int8", "4bit": "nf4"}.get(row.quant or "")
    dtype = "float16" if row.quant in ("8bit", "fp16") else "bfloat16"
    shape = Shape(
        micro_batch=row.batch, length=row.length, compute_dtype=dtype, weight_dtype=dtype, quantization=quantization,
        double_quant=True, lora_r=row.rank, lora_alpha=2 * row.rank, lora_dropout=row.dropout,
        lora_targets="all-linear", adapter_dtype=row.adapter_dtype, attention="flash", fused_loss=False,
        # selective checkpointing keeps more than full: planned as none (an upper bound)
        checkpointing=row.checkpointing == "full", optimizer="adamw_torch",
    )  # fmt: skip
    if shape not in cache:
        cache[shape] = memory_model(config, shape)
    model = cache[shape]
    mfu, source = MEASURED_MFU[quantization or "16-bit"]
    model_flops, done_flops = flops_per_token(config, model.params, shape, row.length)
    step_s = row.batch * row.length * done_flops / (mfu * peak_tflops * 1e12)
    return {
        "peak_allocated_gib": round(model.peak(row.batch) / GIB, 2),
        "step_s": round(step_s, 3),
        "mfu_from": source,
    }


def essential_seconds(rows: list[Row]) -> int:
    return sum(row.expected_s for row in rows if row.essential)


def linear_params(config) -> int:
    d, f, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = d // config.num_attention_heads * config.num_key_value_heads
    return layers * (2 * d * d + 2 * d * kv + 3 * d * f) + d * config.vocab_size


def document_lengths(length: int, documents: int, generator) -> list[int]:
    import torch

    cuts = sorted(torch.randperm(length - 1, generator=generator)[: documents - 1].add(1).tolist())
    edges = [0, *cuts, length]
    return [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]


def batch_for(row: Row, vocab: int, device):
    """Random tokens (every position real, as with packing); a packed row gets position_ids that restart per
    document. Returns (inputs, attention tokens² per token: s for a plain row, sum(len²)/length for a packed one)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (row.batch, row.length), generator=generator).to(device)
    if not row.packed:
        return {"input_ids": ids, "labels": ids}, row.length
    lengths = document_lengths(row.length, PACKED_DOCUMENTS, generator)
    position_ids = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0).to(device)
    return {"input_ids": ids, "labels": ids, "position_ids": position_ids}, sum(n * n for n in lengths) / row.length


def profile_split(step) -> dict:
    """One step under the profiler: CUDA kernel time by kind, and the idle rest of the step, in ms."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    wall_ms = (time.perf_counter() - started) * 1000
    kinds = {"gemm": 0.0, "attention": 0.0, "triton": 0.0, "elementwise": 0.0}
    for event in prof.key_averages():
        name, ms = event.key.lower(), event.device_time_total / 1000
        if not ms:
            continue
        if "triton" in name:
            kinds["triton"] += ms
        elif any(k in name for k in ("flash", "fmha", "attention", "sdpa")):
            kinds["attention"] += ms
        elif any(k in name for k in ("gemm", "cutlass", "xmma", "matmul", "sm90", "sm80", "cublas")):
            kinds["gemm"] += ms
        else:
            kinds["elementwise"] += ms
    split = {k: round(v, 1) for k, v in kinds.items()}
    split["idle"] = round(max(0.0, wall_ms - sum(kinds.values())), 1)
    return split


def training_step(model, inputs: dict, optimizer, scaler, autocast):
    """One optimizer step of `model` on `inputs` (autocast to that dtype when given); returns the loss."""
    import torch

    device = inputs["input_ids"].device

    def step() -> float:
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            loss = model(**inputs).loss
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    return step


def timed_steps(step, losses: list[float], dry_run: bool) -> list[float]:
    """Seconds of each timed step after the first: four, or as many as fit in ~6 s (at least two) for the slow
    rows, so the ladder spends its time on rows rather than on repeats."""
    import torch

    times: list[float] = []
    while len(times) < 2 or (len(times) < (2 if dry_run else 4) and sum(times) < 6):
        started = time.perf_counter()
        losses.append(step())
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return times


def run_ladder(dims: dict, peak_tflops: float, dry_run: bool, on_row, budget: Budget | None = None) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig

    from baize.modeling import packed_attention
    from baize.modeling.speed import apply_speed_options, checkpoint_selectively

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    config = LlamaConfig(**dims, max_position_embeddings=8192, tie_word_embeddings=False)
    torch.manual_seed(0)
    with device:
        base = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if cuda else torch.float32)
    budget = budget or Budget()
    results, liger_applied, compiled, plan_cache = {}, False, False, {}
    n_linear = linear_params(config)
    rows = ladder_rows()
    for index, row in enumerate(rows):
        if not budget.allows(row.expected_s, row.essential, essential_seconds(rows[index + 1 :])):
            results[row.label] = budget.skipped(row.expected_s)
            on_row(results)
            continue
        if dry_run:
            row = replace(row, batch=min(row.batch, 2), length=min(row.length, 128))
        started_row = time.perf_counter()
        record: dict = {}
        try:
            record["plan"] = planned(row, config, peak_tflops, plan_cache)
        except Exception as error:  # the planner's failure is a result too, not the end of the ladder
            record["plan"] = {"error": f"{type(error).__name__}: {error}"[:300]}
        model = peft = None
        try:
            if row.liger and not (cuda and importlib.util.find_spec("liger_kernel")):
                record["liger"] = "not applied: needs liger-kernel and CUDA"
            if compiled and not row.compile and not row.quant:  # rows after the compiled ones run uncompiled
                for module in base.modules():
                    module._compiled_call_impl = None
                compiled = False
            start = time.perf_counter()
            if row.quant:
                if cuda and base.device.type == "cuda":  # room for the quantised copies (the last rows)
                    base = base.to("cpu")
                    gc.collect()
                    torch.cuda.empty_cache()
                quantization = {
                    "8bit": BitsAndBytesConfig(load_in_8bit=True),
                    "4bit": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                               bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16),
                }.get(row.quant)  # fmt: skip
                dtype = torch.float16 if row.quant in ("8bit", "fp16") else torch.bfloat16
                # transformers' own loading path (the recipes'), from the base's weights in memory: no disk
                model = type(base).from_pretrained(None, config=config, state_dict=base.state_dict(),
                                                   attn_implementation="sdpa", dtype=dtype if cuda else torch.float32,
                                                   quantization_config=quantization if cuda or dry_run else None,
                                                   device_map={"": 0} if cuda else None)  # fmt: skip
                if row.outliers:  # large activations in 0.2 % of the hidden features: LLM.int8's fp16 decomposition
                    features = torch.randperm(config.hidden_size)[: max(1, config.hidden_size // 500)]
                    for name, param in model.named_parameters():
                        if name.endswith("layernorm.weight"):  # a new tensor: the CPU dry run shares the base's
                            scaled = param.data.clone()
                            scaled[features] *= 40
                            param.data = scaled
            else:
                model = base
                model.set_attn_implementation(packed_attention.register() if row.attention != "sdpa" else "sdpa")
                packed_attention.BACKEND = "flex" if row.attention == "flex" else None
            record["load_s"] = round(time.perf_counter() - start, 1)
            peft = get_peft_model(model, LoraConfig(r=row.rank, lora_alpha=2 * row.rank, lora_dropout=row.dropout,
                                                    target_modules="all-linear"))  # fmt: skip
            autocast = torch.float16 if row.quant in ("8bit", "fp16") else torch.bfloat16
            if row.quant == "4bit":  # as TRL does for a quantised base: bf16 adapters
                for param in peft.parameters():
                    if param.requires_grad:
                        param.data = param.data.to(torch.bfloat16)
            options = SimpleNamespace(adapter_dtype=row.adapter_dtype, compile_layers=row.compile and not compiled,
                                      bf16=cuda and autocast == torch.bfloat16)  # fmt: skip
            if row.liger and not liger_applied and "liger" not in record:
                from liger_kernel.transformers import _apply_liger_kernel_to_instance

                _apply_liger_kernel_to_instance(model=base, fused_linear_cross_entropy=False)
                liger_applied = True
            applied = apply_speed_options(peft, options)
            compiled = compiled or bool(applied.get("compiled_layers"))
            if row.checkpointing:
                peft.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
                peft.enable_input_require_grads()
                if row.checkpointing == "selective":
                    record["selective_layers"] = checkpoint_selectively(peft)
            peft.train()
            inputs, attention_s = batch_for(row, config.vocab_size, device)
            optimizer = torch.optim.AdamW([p for p in peft.parameters() if p.requires_grad], lr=1e-5)
            scaler = torch.amp.GradScaler(enabled=cuda and autocast == torch.float16)
            step = training_step(peft, inputs, optimizer, scaler, autocast if cuda else None)

            if cuda:
                torch.cuda.reset_peak_memory_stats()
            first = time.perf_counter()
            losses = [step()]  # allocations, kernel selection and compilation
            record["first_step_s"] = round(time.perf_counter() - first, 2)
            times = timed_steps(step, losses, dry_run)
            if not all(abs(x) < float("inf") and x == x for x in losses):
                raise AssertionError(f"non-finite loss {losses}")
            step_s = statistics.median(times)
            tokens_per_s = row.batch * row.length / step_s
            flops_per_token = 4 * n_linear + 12 * config.num_hidden_layers * attention_s * config.hidden_size
            record.update(
                step_s=round(step_s, 3), tokens_per_s=round(tokens_per_s),
                tflops=round(flops_per_token * tokens_per_s / 1e12, 1),
                mfu_pct=round(100 * flops_per_token * tokens_per_s / (peak_tflops * 1e12), 1),
                peak_allocated_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
                peak_reserved_gib=round(torch.cuda.max_memory_reserved() / 2**30, 2) if cuda else None,
                options=applied or None, timed_steps=len(times),
            )  # fmt: skip
            if row.profile and cuda:
                record["profile_ms"] = profile_split(step)
        except Exception as error:  # a failed row is a result: record it and go on with the next
            record = {"error": f"{type(error).__name__}: {error}"[:600]}
            traceback.print_exc()
        finally:
            if peft is not None:
                unloaded = peft.unload()  # the base without this row's LoRA, for the next row
                if not row.quant:
                    base = unloaded
                if row.checkpointing:
                    base.gradient_checkpointing_disable()
            if row.quant:
                model = peft = None
                gc.collect()
                if cuda:
                    torch.cuda.empty_cache()
            packed_attention.BACKEND = None
        record.update(seconds=round(time.perf_counter() - started_row, 1), expected_s=row.expected_s)  # for the plan
        results[row.label] = record
        on_row(results)
    return results
