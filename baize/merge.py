"""`baize merge ADAPTER --output DIR`: fold a LoRA adapter into its base model and save one full model folder.

    baize merge runs/baize-smol/sft --output runs/baize-smol/merged
    baize merge project-baize/baize-lora-7B --output baize-7b-merged --dtype float16
    transformers serve runs/baize-smol/merged --device cpu       # OpenAI-compatible endpoint (docs/use.md)
    vllm serve runs/baize-smol/merged

The folder holds safetensors weights, config.json, generation_config.json (the paper's sampling defaults),
the tokenizer with the Baize chat template and a model card: what `transformers serve`, vLLM and
`AutoModelForCausalLM.from_pretrained` expect.
"""

from __future__ import annotations

import argparse
import logging
import sys

from baize.io.arguments import StageParser
from baize.io.errors import configure_logging, run_command
from baize.modeling.loading import add_chat_model_arguments
from baize.modeling.merging import merge_adapter

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Merge a LoRA adapter into its base model and save a full model folder (safetensors, config, tokenizer with
the Baize chat template, generation_config.json with the paper's sampling defaults, model card).

ADAPTER is an adapter folder from `baize train` or an adapter repo on the Hub (yours or an original
project-baize one, whose format becomes the template's default). The base named in adapter_config.json is
loaded in full precision (--base overrides it). The result loads with AutoModelForCausalLM and serves with
`transformers serve DIR` or `vllm serve DIR` (OpenAI-compatible; see docs/use.md), and `baize push DIR`
uploads it.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = StageParser("baize merge", DESCRIPTION)
    parser.add_argument("adapter", metavar="ADAPTER", help="adapter folder or Hub repo id")
    parser.add_argument("-o", "--output", required=True, help="folder to write the merged model to")
    add_chat_model_arguments(
        parser, quantization=False, prompt_format=False, dtype_default="auto",
        dtype_help="dtype of the saved weights (default: the base checkpoint's)",
    )  # fmt: skip
    parser.add_argument("--max_shard_size", default="5GB", help="largest safetensors shard (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    return parser


def cli(argv: list[str] | None = None) -> None:
    run_command("baize merge", build_parser, main, argv)


def main(args: argparse.Namespace) -> None:

    configure_logging(logging.INFO, timestamps=False)
    out = merge_adapter(
        args.adapter, args.output, base=args.base, gguf_file=args.gguf_file, revision=args.revision,
        dtype=args.dtype, max_shard_size=args.max_shard_size, overwrite=args.overwrite
    )  # fmt: skip
    print(f"Merged model written to {out}\nServe it: transformers serve {out} --device cpu   (or: vllm serve {out})")


if __name__ == "__main__":
    cli(sys.argv[1:])
