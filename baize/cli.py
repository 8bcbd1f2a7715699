"""`baize <stage> ...`: one console script over the pipeline's stages.

Each stage lives in its own module with a `cli(argv)` function; modules are imported only when their
stage runs, so `baize --help` is instant and a stage's heavy imports never slow down another.
"""

from __future__ import annotations

import importlib
import os
import sys

# stage -> (module, one-line help)
STAGES = {
    "collect": ("baize.collect", "self-chat data from a teacher LLM (any OpenAI-compatible endpoint) into a dataset"),
    "train": ("baize.train", "LoRA SFT of a chat model from a YAML recipe (Baize v1)"),
    "sdf": ("baize.sdf", "Baize v2 self-distillation with feedback: sample N answers, LLM-judge them, SFT a new LoRA"),
    "eval": ("baize.evaluate", "judge answers against a reference's: the paper's score % and a pairwise win rate"),
    "dpo": ("baize.dpo", "DPO of a new LoRA on SDF best-vs-worst pairs (alternative to the sdf train step)"),
    "push": ("baize.push", "upload an adapter, model or data folder to the Hub (checkpoints and secrets left out)"),
    "pull": ("baize.pull", "download an adapter (and its base model) from the Hub into the HF cache"),
    "chat": ("baize.chat", "streaming terminal chat with an adapter or model (Baize prompt, /reset, /undo)"),
    "web": ("baize.web", "the browser chat demo (Gradio): a local adapter or model, or an OpenAI-compatible endpoint"),
    "merge": ("baize.merge", "merge a LoRA adapter into its base: one model folder for transformers serve / vLLM"),
    "export": ("baize.export", "a model as GGUF for llama.cpp / LM Studio, or GGUF + Modelfile for Ollama"),
    "convert": ("baize.convert", "convert data files between the original Baize format and chat JSONL"),
    "data": ("baize.curate", "check a training set: drop near-duplicates or eval-set overlaps (decontaminate)"),
}

USAGE = """usage: baize <stage> [--help] [args ...]

The Baize pipeline on the Hugging Face stack. Stages:
{stages}

Every stage takes --help. `baize --debug <stage> ...` (or BAIZE_DEBUG=1) shows tracebacks for errors that are
otherwise one line. Recipes live in recipes/<name>/<stage>.yaml, e.g.
  baize train --config recipes/baize-smol/sft.yaml --max_steps 10
"""


def usage() -> str:
    width = max(map(len, STAGES))
    return USAGE.format(stages="\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in STAGES.items()))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in argv:  # tracebacks for the errors that are otherwise one line (baize.io.errors)
        argv.remove("--debug")
        os.environ["BAIZE_DEBUG"] = "1"
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"baize: unknown stage {stage!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(STAGES[stage][0])
    module.cli(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
