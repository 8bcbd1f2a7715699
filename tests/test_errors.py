"""A user's mistake is one line on stderr naming the culprit and what to do, with exit code 2 (usage errors) and
no traceback: driven through the real commands, as a new user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run(*command: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    env.pop("BAIZE_DEBUG", None)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def one_line(result: subprocess.CompletedProcess, prog: str) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith(f"{prog}: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return errors[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("mistakes")
    (folder / "typo.yaml").write_text("output_dir: runs/x\nlearning_rte: 0.1\n")
    (folder / "empty.txt").write_text("\n")
    (folder / "seeds.jsonl").write_text('{"title": "How do I exit vim?"}\n')
    return {name.split(".")[0]: folder / name for name in ("typo.yaml", "empty.txt", "seeds.jsonl")}


MISTAKES = [
    # (command after `python -m`, program name, what the one line must say)
    (["baize.train", "--config", "{typo}"], "baize train", "unknown key 'learning_rte' (did you mean 'learning_rate'?)"),
    (["baize.train", "--config", "recipes/baize-smol/sft.yaml", "--learning_rte", "1e-4"], "baize train",
     "unknown argument --learning_rte (did you mean '--learning_rate'?)"),
    (["baize.train", "--config", "recipes/nope/sft.yaml"], "baize train", "recipe recipes/nope/sft.yaml not found"),
    (["baize.collect", "--config", "recipes/baize-smol/collect.yaml", "--concurency", "2"], "baize collect",
     "unknown argument --concurency (did you mean '--concurrency'?)"),
    (["baize.collect", "--config", "recipes/baize-smol/collect.yaml", "--concurrency", "0"], "baize collect",
     "concurrency must be >= 1"),
    (["baize.collect", "--seeds_path", "{empty}", "--mode", "alpaca"], "baize collect", "empty.txt: the file is empty"),
    (["baize.collect", "--seeds_path", "missing.jsonl"], "baize collect", "seeds_path: file not found: missing.jsonl"),
    (["baize.collect", "--seeds_path", "{seeds}", "--seeds_column", "question", "--base_url", "http://127.0.0.1:9/v1"],
     "baize collect", "seed column 'question' not found; the dataset has ['title']"),
    (["baize.sdf", "--config", "recipes/baize-smol/sdf.yaml", "--num_candidates", "1"], "baize sdf",
     "num_candidates must be >= 2"),
    (["baize.evaluate", "--config", "recipes/baize-smol/eval.yaml", "--stepp", "judge"], "baize eval",
     "unknown argument --stepp (did you mean '--step'?)"),
]  # fmt: skip


@pytest.mark.parametrize(("command", "prog", "says"), MISTAKES, ids=[" ".join(m[0][:3]) for m in MISTAKES])
def test_a_mistake_is_one_line_and_exit_2(files, tmp_path, command, prog, says):
    command = [arg.format(**{name: str(path) for name, path in files.items()}) for arg in command]
    if command[0] == "baize.collect":
        command += ["--output_dir", str(tmp_path / "out")]
    result = run(sys.executable, "-m", *command)
    assert result.returncode == 2, result.stderr[-3000:]
    assert says in one_line(result, prog)


def test_make_with_an_unknown_recipe_lists_the_recipes_that_have_that_stage():
    result = run("make", "--no-print-directory", "train", "RECIPE=nope")
    assert result.returncode == 2
    assert "no recipe recipes/nope/sft.yaml; recipes with a sft.yaml: baize-13b" in result.stderr
    assert "baize-smol" in result.stderr and "selfchat-quora" not in result.stderr


def test_a_model_on_the_command_line_drops_the_recipes_gguf_file():
    from baize.collect.config import parse_args

    config = parse_args(["--config", "recipes/baize-smol/collect.yaml", "--teacher_model", "gpt-4o-mini"])
    assert config.teacher_model == "gpt-4o-mini" and config.teacher_gguf_file is None
    recipe = parse_args(["--config", "recipes/baize-smol/collect.yaml"])
    assert recipe.teacher_gguf_file  # the recipe's own model keeps its file


def test_train_help_leads_with_the_baize_keys_and_explains_no_flags():
    result = run(sys.executable, "-m", "baize.train", "--help")
    assert result.returncode == 0
    text = result.stdout
    assert text.index("--on_bad_row") < text.index("--model_name_or_path") < text.index("--learning_rate")
    assert "turn --gradient_checkpointing off (it is on by default)" in " ".join(text.split())
    assert "(default: None) (default" not in text
