"""`baize chat`: chat with a Baize model in the terminal, answers streamed as they are generated.

    baize chat runs/baize-smol/sft                         # an adapter folder written by `baize train`
    baize chat me/baize-smol                                # an adapter repo on the Hub (downloaded to the HF cache)
    baize chat project-baize/baize-lora-7B --load_in_8bit   # an original Baize adapter, original prompt format
    baize chat merged/                                      # a full model folder (`baize merge`)

Loading is baize.modeling.loading', prompts baize.prompts' (the format and system prompt the adapter was trained with) and
generation baize.llm.generation's: this module is the terminal loop over them.
"""

from __future__ import annotations

import argparse
import logging
import sys

from baize.io.arguments import StageParser
from baize.io.errors import configure_logging, run_command
from baize.llm.generation import DEFAULT_MAX_NEW_TOKENS, DEFAULT_TEMPERATURE, DEFAULT_TOP_P, SamplingSettings
from baize.llm.sampling import LocalSampler
from baize.modeling.loading import ChatModel, add_chat_model_arguments, chat_model_from_args
from baize.prompts import DEFAULT_MAX_HISTORY_TOKENS, GUARDRAIL_SYSTEM_PROMPT, TURN_TAGS, PromptBuilder

logger = logging.getLogger(__name__)


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

The system prompt is the one the adapter was trained with (recorded by `baize train`; the original adapters keep
their demo's guardrail prompt): --guardrail uses the Baize guardrail prompt, --no_guardrail the template's plain
header, --system TEXT your own. History is kept within --max-history-tokens, newest exchanges first. Sampling defaults are the
paper's: top_p 0.95, temperature 1.0, 512 new tokens; --greedy for deterministic answers.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = StageParser("baize chat", DESCRIPTION)
    parser.add_argument("adapter_or_model", metavar="ADAPTER_OR_MODEL", help="local folder or Hub repo id")
    add_chat_model_arguments(parser)
    prompt = parser.add_argument_group("prompt")
    system = prompt.add_mutually_exclusive_group()
    system.add_argument("--system", help="system text instead of the one the adapter was trained with")
    system.add_argument(
        "--guardrail", action="store_true", help="the Baize demo's guardrail system prompt (declines sensitive topics)"
    )
    system.add_argument("--no_guardrail", action="store_true", help="no system text: the template's plain header")
    prompt.add_argument(
        "--max_history_tokens",
        type=int,
        default=DEFAULT_MAX_HISTORY_TOKENS,
        help="token budget for system prompt + kept history + question (default: %(default)s)",
    )
    gen = parser.add_argument_group("generation")
    gen.add_argument("--max_new_tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, help="default: %(default)s")
    gen.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE, help="default: %(default)s")
    gen.add_argument("--top_p", type=float, default=DEFAULT_TOP_P, help="default: %(default)s")
    gen.add_argument("--repetition_penalty", type=float, default=1.0, help="e.g. 1.1 against loops (default: off)")
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
    ui.add_argument("--no_stream", action="store_true", help="print each answer when it is complete")
    ui.add_argument(
        "--show_prompt_tokens",
        action="store_true",
        help="before each answer print '[prompt: N tokens, history: K of M exchanges]'",
    )
    ui.add_argument("--show_prompt", action="store_true", help="print the full prompt text before each answer")
    return parser


class ChatSession:
    """The conversation state and one turn of it; the CLI loop is a thin shell over this."""

    def __init__(self, chat: ChatModel, builder: PromptBuilder, settings: SamplingSettings, out=None):
        self.chat, self.builder, self.settings = chat, builder, settings
        self.sampler = LocalSampler(chat, builder)
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

        reply = self.sampler.reply(
            prompt, self.settings, stop_strings=self.builder.stop_strings, on_text=show if stream else None
        )
        if not stream:
            self.write(reply.text)
        self.write("\n" + ("[stopped]\n" if reply.finish == "interrupted" else ""))
        self.history.append((question, reply.text))
        return reply


def cli(argv: list[str] | None = None) -> None:
    run_command("baize chat", build_parser, main, argv)


def main(args: argparse.Namespace) -> None:
    configure_logging(logging.WARNING, timestamps=False)
    if args.seed is not None:
        from transformers import set_seed

        set_seed(args.seed)
    chat = chat_model_from_args(args)
    system = ...  # the adapter's own (ChatModel.prompt_builder)
    if args.system is not None or args.no_guardrail:
        system = args.system
    elif args.guardrail:
        system = GUARDRAIL_SYSTEM_PROMPT
    builder = chat.prompt_builder(system=system, max_history_tokens=args.max_history_tokens)
    settings = SamplingSettings(
        max_new_tokens=args.max_new_tokens,
        temperature=0.0 if args.greedy else args.temperature,
        top_p=args.top_p,
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
