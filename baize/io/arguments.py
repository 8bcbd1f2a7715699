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
import dataclasses
import difflib
from pathlib import Path

import yaml

from baize.io.errors import BaizeError, UsageError

# What a config says about its own fields, on the field (metadata), so that no table keeps them in step:
#   signs     the step(s) whose signature the field is part of (a changed value is refused, not mixed in)
#   gguf_of   the model key(s) whose GGUF file this is (a model given on the command line drops the recipe's file)
#   base_of   the model key this is the base of (the GGUF file then belongs to the base and stays)
#   role/part the endpoint role (teacher, judge, sample, answer) and which part of it (baize.llm.roles)
MARKS = ("signs", "gguf_of", "base_of", "role", "part")


def _as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, list | tuple) else (value,) if value is not None else ()


def signed_settings(config, step: str) -> dict:
    """The settings that sign `step`: every field of `config` marked `signs` with it, by name."""
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if step in _as_tuple(f.metadata.get("signs"))
    }


def drop_recipe_gguf_files(outputs, given: set[str]) -> None:
    """A model key given on the command line without its GGUF file: the recipe's GGUF file belonged to the recipe's
    model, so it goes (unless it belongs to a base the recipe names apart: SDF's v1 adapter on base_model +
    gguf_file)."""
    for output in outputs:
        if not dataclasses.is_dataclass(output):
            continue
        fields = dataclasses.fields(output)
        for companion in fields:
            for model_key in _as_tuple(companion.metadata.get("gguf_of")):
                if model_key not in given or companion.name in given or not hasattr(output, model_key):
                    continue
                bases = [f.name for f in fields if f.metadata.get("base_of") == model_key]
                if not any(getattr(output, base) for base in bases):
                    setattr(output, companion.name, None)


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


def recipe_parser(dataclass_types: tuple, prog: str, description: str):
    """TRL's parser for these dataclasses; baize's field marks stay out of argparse."""
    from trl import TrlParser

    class RecipeParser(TrlParser):
        def add_argument(self, *args, **kwargs):
            for mark in MARKS:
                kwargs.pop(mark, None)
            return super().add_argument(*args, **kwargs)

    return RecipeParser(dataclass_types, prog=prog, description=description)


def parse_recipe(dataclass_types: tuple, argv: list[str] | None, *, prog: str, description: str) -> tuple:
    """The recipe and command line (`argv`; default: this process's) parsed into `dataclass_types` with one-line
    errors; returns the dataclasses."""
    import sys

    parser = recipe_parser(dataclass_types, prog, description)
    argv = list(sys.argv[1:] if argv is None else argv)
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
    drop_recipe_gguf_files(outputs, {s[2:].split("=")[0].replace("-", "_") for s in argv if s.startswith("--")})
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
