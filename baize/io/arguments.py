"""The command lines of every stage.

- Recipe + command line -> TRL dataclasses, for every `--config` command (train, dpo, sdf, eval, collect):
  `TrlParser` does the parsing; `parse_recipe` wraps it so that a mistake is one line naming the recipe or flag
  at fault: an unknown key or flag gets "did you mean ...", a missing recipe file or a refused value names the
  file. A model given on the command line also drops the recipe's GGUF file that belonged to the recipe's model.
- `StageParser`, for the stages without a recipe (chat, web, merge, push, pull, convert): TRL's `--snake_case`
  flags, each with its dashed alias added once here, so that `--help` reads the same on every stage.
Neither takes an abbreviated flag: `--learning_rat` is an error, not `--learning_rate`.
"""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path

import yaml

from baize.io.errors import BaizeError, UsageError

# A model key and the recipe key that only makes sense with the recipe's own model.
MODEL_COMPANIONS = {
    "model_name_or_path": "gguf_file",
    "teacher_model": "teacher_gguf_file",
    "judge_model": "judge_gguf_file",
    "model": "model_gguf_file",
    "reference": "reference_gguf_file",
    "base_model": "gguf_file",  # SDF: the GGUF file of the v1's base
    "model_base": "model_gguf_file",
    "reference_base": "reference_gguf_file",
}


# A model key whose companion GGUF file belongs to this base key instead, when the recipe sets it.
BASE_OF = {"model_name_or_path": "base_model", "model": "model_base", "reference": "reference_base"}


def did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def baize_keys_first(parser) -> None:
    """--help lists the keys baize's own configs declare first, the most specific first (SDF's `step` before the
    judge's keys it inherits), then TRL's and transformers' in their own order."""
    declared: dict[str, tuple[int, int]] = {}
    for config in getattr(parser, "dataclass_types", ()):
        for depth, cls in enumerate(config.__mro__):
            for name in cls.__dict__.get("__annotations__", {}):
                if name not in declared:
                    declared[name] = (0, depth) if cls.__module__.startswith("baize") else (1, 0)
    for group in parser._action_groups:
        group._group_actions.sort(
            key=lambda action: declared.get(action.dest, (1, 0)) if action.dest != "help" else (-1, 0)
        )


def describe_yaml_error(error) -> str:
    """A YAML error as `line L, column C: problem` (1-based, as editors count)."""
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    hint = "; YAML indents with spaces, not tabs" if "\\t" in problem or "\t" in problem else ""
    return f"{where}{problem}{hint}"


def parse_recipe(parser, argv: list[str]) -> tuple:
    """`parser.parse_args_and_config(argv)` with one-line errors; returns the dataclasses."""
    argv = list(argv)
    parser.allow_abbrev = False  # a typo that happens to be a prefix of a key must not silently set that key
    recipe = argv[argv.index("--config") + 1] if "--config" in argv[:-1] else None
    if recipe is not None and not Path(recipe).is_file():
        raise UsageError(f"recipe {recipe} not found: pass an existing YAML file (recipes/<name>/<stage>.yaml)")
    # TrlParser reads --config before argparse sees it, so argparse's usage line would not mention it, and would
    # list every one of TRL's hundreds of options.
    parser.usage = f"{parser.prog} --config RECIPE.yaml [--key value ...]   (every key below works in both)"
    for action in parser._actions:  # HfArgumentParser gives `--no_x` the help text of `--x`
        negated = next((o for o in action.option_strings if o.startswith("--no_")), None)
        if negated:
            action.help = f"turn --{negated[5:]} off (it is on by default)"
    baize_keys_first(parser)
    flags = [name[2:] for name in parser._option_string_actions if name.startswith("--")]
    try:
        *outputs, from_recipe, from_command_line = parser.parse_args_and_config(
            argv, return_remaining_strings=True, separate_remaining_strings=True
        )
    except BaizeError:  # already one line (e.g. a launch that cannot work, with its own exit code)
        raise
    except yaml.YAMLError as error:  # an unclosed bracket, a tab: the line and what to fix, not a parser traceback
        raise UsageError(f"recipe {recipe}: not valid YAML: {describe_yaml_error(error)}") from None
    except ValueError as error:  # a dataclass refused a value (__post_init__), or a malformed recipe
        where = f"recipe {recipe}" if recipe else "command line"
        raise UsageError(f"{where}: {error}") from error
    unknown_keys = [s[2:] for s in from_recipe if s.startswith("--")]
    if unknown_keys:
        key = unknown_keys[0]
        raise UsageError(f"recipe {recipe}: unknown key {key!r}{did_you_mean(key, flags)}; see --help for the keys")
    unknown_flags = [s for s in from_command_line if s.startswith("-")]
    if unknown_flags or from_command_line:
        flag = (unknown_flags or from_command_line)[0]
        hint = did_you_mean(flag.lstrip("-").split("=")[0], flags).replace("'", "'--", 1) if unknown_flags else ""
        raise UsageError(f"unknown argument {flag}{hint}; see --help")
    given = {s[2:].split("=")[0].replace("-", "_") for s in argv if s.startswith("--")}
    for model_key, companion in MODEL_COMPANIONS.items():
        if model_key in given and companion not in given:
            for output in outputs:  # the recipe's GGUF file belongs to the recipe's model, not this one
                # ... unless it belongs to a base the recipe names apart (SDF's v1 adapter on base_model + gguf_file)
                base = getattr(output, BASE_OF.get(model_key, ""), None)
                if hasattr(output, model_key) and hasattr(output, companion) and not base:
                    setattr(output, companion, None)
    return tuple(outputs)


def with_dashed_aliases(names: tuple[str, ...]) -> list[str]:
    """`--max_new_tokens` -> [`--max_new_tokens`, `--max-new-tokens`]; other names as they are."""
    out = list(names)
    for name in names:
        if name.startswith("--") and "_" in name and name.replace("_", "-") not in out:
            out.append(name.replace("_", "-"))
    return out


class _DashedAliases:
    def add_argument(self, *names, **kwargs):
        return super().add_argument(*with_dashed_aliases(names), **kwargs)

    def add_argument_group(self, *args, **kwargs):
        group = _ArgumentGroup(self, *args, **kwargs)
        self._action_groups.append(group)
        return group

    def add_mutually_exclusive_group(self, **kwargs):
        group = _MutuallyExclusiveGroup(self, **kwargs)
        self._mutually_exclusive_groups.append(group)
        return group


class _ArgumentGroup(_DashedAliases, argparse._ArgumentGroup):
    pass


class _MutuallyExclusiveGroup(_DashedAliases, argparse._MutuallyExclusiveGroup):
    pass


class StageParser(_DashedAliases, argparse.ArgumentParser):
    """argparse for a stage without a recipe: `--snake_case` flags get their `--dashed-alias`, the description keeps
    its line breaks (examples paste as they are), and no flag may be abbreviated."""

    def __init__(self, prog: str | None = None, description: str | None = None, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(prog=prog, description=description, allow_abbrev=False, **kwargs)
