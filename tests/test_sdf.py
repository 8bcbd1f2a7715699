"""Baize v2 SDF: sampling (N distinct, resume), judge parsing against the loopback OpenAI server, selection,
and the v2 LoRA trained on top of a frozen v1, end to end on a tiny random Llama."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from helpers import chatty_copy, transformers_serve, write_jsonl
from openai_server import OpenAIServer, Reply

from baize import sdf
from baize.judging.rubrics import PAIR_100, POINTWISE_100
from baize.llm.generation import generate_candidates
from baize.sdf import SDFConfig

REPO = Path(__file__).resolve().parent.parent
ANSWER = re.compile(r"\[The Start of Assistant's Answer\]\n(.*?)\n\[The End of Assistant's Answer\]", re.S)
PAIR = re.compile(r"Assistant 1's Answer\]\n(.*?)\n\[The End.*?Assistant 2's Answer\]\n(.*?)\n\[The End", re.S)


@pytest.fixture(scope="module")
def v1_adapter(tmp_path_factory, tiny_llama_dir) -> Path:
    """A v1 LoRA with random (non-zero) B matrices, so v1 visibly changes the base's outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from baize import BAIZE_TEMPLATE

    path = tmp_path_factory.mktemp("v1")
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    model.save_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tokenizer.chat_template = Path(BAIZE_TEMPLATE).read_text()
    tokenizer.save_pretrained(path)
    return path


def config_for(tmp_path: Path, v1: Path, prompts: list[str], **overrides) -> SDFConfig:
    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text("".join(p + "\n" for p in prompts))
    values = {
        "output_dir": str(tmp_path / "sdf"),
        "model_name_or_path": str(v1),
        "prompts_path": str(prompt_file),
        "num_candidates": 3,
        "max_new_tokens": 6,
        "batch_size": 2,
        "judge_model": "test-judge",
        "judge_api_key_env": "BAIZE_TEST_UNSET_KEY",
        "max_retries": 0,
        "timeout": 10,
        "min_score": 30,
        **overrides,
    }
    return SDFConfig(**values)


def run_judge(config: SDFConfig, rows: list[dict]) -> dict:
    """SDF's judged step on `rows` with a fresh verdict cache (judge_step's judged.jsonl left out): its stats and
    the judged rows."""
    Path(config.output_dir, sdf.JUDGE_CACHE_FILE).unlink(missing_ok=True)
    judged = []
    stats = sdf.judge_rows(config, rows, judged.append)
    return {**stats, "rows": judged}


# --------------------------------------------------------------------------- sample


@pytest.mark.slow
def test_sampling_gives_n_distinct_candidates_and_resume_skips_done_prompts(tmp_path, v1_adapter, monkeypatch):
    prompts = ["Why is the sky blue?", "How do bees make honey?", "What is rain?"]
    config = config_for(tmp_path, v1_adapter, prompts)
    stats = sdf.sample_step(config)
    rows = sdf.read_jsonl(Path(config.output_dir) / sdf.CANDIDATES_FILE)
    assert stats["sampled"] == 3 and len(rows) == 3
    for row in rows:
        texts = [c["text"] for c in row["candidates"]]
        assert len(texts) == 3 and len(set(texts)) == 3, texts
        assert row["messages"][-1]["role"] == "user" and row["prompt_tokens"] > 0

    # A torn last line (crash mid-write) and one new prompt: only the new prompt is sampled.
    with open(Path(config.output_dir) / sdf.CANDIDATES_FILE, "ab") as f:
        f.write(b'{"id": "torn')
    calls = []
    import baize.llm.sampling

    real = baize.llm.sampling.generate_candidates
    monkeypatch.setattr(
        baize.llm.sampling,
        "generate_candidates",
        lambda m, t, p, *a, **k: calls.append(len(p)) or real(m, t, p, *a, **k),
    )
    config = config_for(tmp_path, v1_adapter, [*prompts, "How do magnets work?"])
    stats = sdf.sample_step(config)
    assert stats["already_done"] == 3 and stats["sampled"] == 1 and calls == [1]
    rows = sdf.read_jsonl(Path(config.output_dir) / sdf.CANDIDATES_FILE)
    assert [r["messages"][0]["content"] for r in rows][-1] == "How do magnets work?" and len(rows) == 4


def test_shared_prefill_matches_plain_generate(v1_adapter):
    from baize.modeling.loading import load_chat_model

    chat = load_chat_model(v1_adapter)
    prompts = [
        chat.prompt_builder().encode_messages([{"role": "user", "content": q}])
        for q in ("Hi", "Why is the sky so blue?")
    ]
    shared = generate_candidates(chat.model, chat.tokenizer, prompts, 2, max_new_tokens=5, temperature=0)
    plain = generate_candidates(
        chat.model, chat.tokenizer, prompts, 2, max_new_tokens=5, temperature=0, share_prefill=False
    )
    assert shared == plain


# --------------------------------------------------------------------------- judge


@pytest.mark.parametrize(
    "text, expected",
    [
        ("85\nClear and detailed.", (85.0, None)),
        ("**Score: 72/100**\nGood.", (72.0, None)),
        ("The answer is fine. Overall score: 64 out of 100.", (64.0, None)),
        ("I would rate it 90/100 because...", (90.0, None)),
        ("150\nExcellent", (None, "out_of_range")),
        ("0", (None, "out_of_range")),
        ("I'm sorry, but I cannot evaluate this response.", (None, "refused")),
        ("Rating: excellent", (None, "no_score")),
        ("", (None, "empty")),
        # numbers that are not a verdict on the asked 1-100 scale
        ("This answer deserves an overall score of 8 out of 10.", (None, "wrong_scale")),
        ("8/10\nGood.", (None, "wrong_scale")),
        ("The user requested a response with a score of 100.", (None, "no_score")),
        ("Answers 1 to 100 are possible; the score is high.", (None, "no_score")),
        ("Score: 9 out of 10", (None, "wrong_scale")),
        ("Rating: [[78]]\nThorough.", (78.0, None)),  # MT-Bench's judges' format
        ("[[780]]", (None, "out_of_range")),
        # the single-answer (MT-Bench style) prompt echoed back
        ("Please act as an impartial judge and evaluate the quality... 9", (None, "echoed_prompt")),
        # the prompt echoed back with a number after it (SmolLM2-135M as the judge in `make demo`)
        (
            "[System]\nWe would like to request your feedback on the performance of an AI assistant...\n\n"
            "Your score: 9.9\nYour score: 9.9",
            (None, "echoed_prompt"),
        ),
    ],
)
def test_pointwise_parsing(text, expected):
    assert POINTWISE_100.parse(text) == expected


def test_pairwise_parsing():
    assert PAIR_100.parse("8 9\nBoth fine") == ((8.0, 9.0), None)
    assert PAIR_100.parse("70, 85") == ((70.0, 85.0), None)
    assert PAIR_100.parse("Assistant 1 gets 60 and Assistant 2: 75.") == ((60.0, 75.0), None)
    assert PAIR_100.parse("120 30") == (None, "out_of_range")
    assert PAIR_100.parse("I cannot compare these.") == (None, "refused")


def test_pointwise_judge_well_formed_malformed_out_of_range_refused(tmp_path, v1_adapter):
    def responder(request):
        answer = ANSWER.search(request.messages[1]["content"]).group(1)
        retry = len(request.messages) > 2
        if answer == "good":
            return Reply("85\nAccurate and detailed.", usage={"prompt_tokens": 100, "completion_tokens": 5})
        if answer == "malformed":  # fixed by the format reminder
            return "Score: 40/100\nThin." if retry else "Rating: meh, somewhat helpful"
        if answer == "huge":
            return "150\nOff the scale."
        return "I'm sorry, I can't help with rating that."

    with OpenAIServer(responder) as server:
        config = config_for(tmp_path, v1_adapter, ["q"], judge_base_url=server.base_url, judge_parse_retries=1)
        row = {
            "id": "p1",
            "messages": [{"role": "user", "content": "q?"}],
            "candidates": [{"text": t} for t in ("good", "malformed", "huge", "refuse")],
        }
        stats = run_judge(config, [row])
        requests = len(server.requests)
    judged = stats["rows"][0]
    assert judged["scores"] == [85.0, 40.0, None, None]
    verdicts = judged["judge"]["verdicts"]
    assert [v["attempts"] for v in verdicts] == [1, 2, 2, 2] and requests == 7
    assert (
        verdicts[0]["rationale"].startswith("85\nAccurate") and verdicts[2]["replies"] == ["150\nOff the scale."] * 2
    )
    assert stats["parse_errors"] == {"no_score": 1, "out_of_range": 2, "refused": 2}
    assert stats["unscored_candidates"] == 2 and stats["usage"]["calls"] == 7


def test_pairwise_asks_both_orders_and_cancels_position_bias(tmp_path, v1_adapter):
    quality = {"weak": 40, "strong": 70}

    def biased(request):  # +30 for whoever is shown first
        first, second = PAIR.search(request.messages[1]["content"]).groups()
        return f"{min(100, quality[first] + 30)} {quality[second]}\nReasons."

    with OpenAIServer(biased) as server:
        config = config_for(tmp_path, v1_adapter, ["q"], judge_base_url=server.base_url, judge_mode="pairwise")
        row = {
            "id": "p1",
            "messages": [{"role": "user", "content": "q?"}],
            "candidates": [{"text": "weak"}, {"text": "strong"}],
        }
        judged = run_judge(config, [row])["rows"][0]
        shown = [PAIR.search(r.messages[1]["content"]).groups() for r in server.requests]
    assert sorted(shown) == [("strong", "weak"), ("weak", "strong")]  # the order really swaps
    comparison = judged["judge"]["comparisons"][0]
    assert comparison["a_score"] == 55.0 and comparison["b_score"] == 85.0  # (70+40)/2, (100+70)/2
    assert judged["judge"]["winner"] == 1 and judged["scores"] == [55.0, 85.0]

    # A judge that only prefers position 1 gives a tie: the incumbent (candidate 0) stays best.
    with OpenAIServer(lambda request: "90 10") as server:
        config = config_for(tmp_path, v1_adapter, ["q"], judge_base_url=server.base_url, judge_mode="pairwise")
        judged = run_judge(config, [row])["rows"][0]
    assert judged["scores"] == [50.0, 50.0] and judged["judge"]["winner"] == 0


# --------------------------------------------------------------------------- select


def test_selection_picks_argmax_with_deterministic_ties_and_threshold(tmp_path, v1_adapter):
    config = config_for(tmp_path, v1_adapter, ["q"], min_score=30)
    out = Path(config.output_dir)
    out.mkdir(parents=True)

    def row(pid, scores, **judge):
        return {
            "id": pid,
            "messages": [{"role": "user", "content": pid}],
            "scores": scores,
            "candidates": [{"text": f"{pid}-{i}"} for i in range(len(scores))],
            "judge": {"model": "test-judge", "mode": "pointwise", **judge},
        }

    rows = [
        row("a", [10, 80, 80, None]),  # tie 80/80 -> lower index 1; worst 0
        row("b", [20, 25, 5, 25]),  # best 25 < min_score -> not selected, but still a preference pair
        row("c", [None, None, None, None]),  # unscored
        row("d", [60, 90, 70, 60], winner=2),  # pairwise winner wins over the raw argmax
    ]
    (out / sdf.JUDGED_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    stats = sdf.select_step(config)
    selected = sdf.read_jsonl(out / sdf.SELECTED_FILE)
    assert [(s["prompt_id"], s["candidate"]) for s in selected] == [("a", 1), ("d", 2)]
    assert selected[0]["messages"] == [{"role": "user", "content": "a"}, {"role": "assistant", "content": "a-1"}]
    assert stats["below_min_score"] == 1 and stats["unscored"] == 1 and stats["best_score"]["max"] == 80
    prefs = sdf.read_jsonl(out / sdf.PREFERENCES_FILE)
    assert [(p["prompt_id"], p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in prefs] == [
        ("a", "a-1", "a-0"),
        ("b", "b-1", "b-2"),
        ("d", "d-2", "d-3"),
    ]


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_end_to_end_v2_lora_trains_on_top_of_frozen_v1(tmp_path, v1_adapter, tiny_llama_dir):
    from helpers import sdf_train_recipe
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    train_yaml = sdf_train_recipe(tmp_path, tiny_llama_dir, max_steps=2, save_steps=2, learning_rate=5e-2,
                                  output_dir=str(tmp_path / "v2"))  # fmt: skip

    def judge(request):  # longer answers score higher: deterministic, distinct scores
        return f"{min(100, 10 + len(ANSWER.search(request.messages[1]['content']).group(1)))}\nLength-based."

    prompts = [f"Question number {i}: why?" for i in range(4)]
    with OpenAIServer(judge) as server:
        config = config_for(
            tmp_path,
            v1_adapter,
            prompts,
            judge_base_url=server.base_url,
            min_score=1,
            train_config=str(train_yaml),
            num_candidates=2,
        )
        results = sdf.main(config)
    assert results["sample"]["sampled"] == 4 and results["judge"]["judged"] == 4
    assert results["select"]["selected"] == 4 and results["train"]["train"]["global_step"] == 2
    v2 = tmp_path / "v2"
    card = (v2 / "README.md").read_text()
    assert f"`{v1_adapter.name}` (a local adapter folder" in card and "`test-judge`" in card
    assert "2 answers per prompt" in card and str(tmp_path) not in card  # names, never local paths
    merged = Path(config.output_dir) / "v1-merged"
    assert json.loads((v2 / "adapter_config.json").read_text())["base_model_name_or_path"] == str(merged)

    tokenizer = AutoTokenizer.from_pretrained(v2)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Why?"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]

    def logits(model):
        with torch.no_grad():
            return model(input_ids=ids).logits[0, -1]

    base = logits(AutoModelForCausalLM.from_pretrained(tiny_llama_dir))
    v1 = logits(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), str(v1_adapter)))
    stacked = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(merged), str(v2))
    with stacked.disable_adapter():
        frozen_v1 = logits(stacked)
    v2_logits = logits(stacked)
    assert not torch.allclose(base, v1, atol=1e-3)  # v1 does something
    assert torch.allclose(frozen_v1, v1, atol=1e-4)  # ... and it is kept, unchanged, under v2
    assert not torch.allclose(v2_logits, v1, atol=1e-4)  # v2 learned something on top

    # Re-running continues: nothing is sampled or judged twice.
    with OpenAIServer(judge) as server:
        config.judge_base_url, config.step = server.base_url, "judge"
        again = sdf.main(config)
        assert again["judge"]["judged"] == 0 and not server.requests


def test_shipped_sdf_recipes_parse():
    from baize.train import parse_args as parse_train

    for name in ("baize-smol", "baize-v2-7b", "baize-v2-13b"):
        config, extra = sdf.parse_args(["--config", str(REPO / "recipes" / name / "sdf.yaml")])
        assert config.num_candidates == 4 and extra == []
        _, training, _, _ = parse_train(["--config", str(REPO / config.train_config)])
        assert training.max_length == 1024
    config, extra = sdf.parse_args(
        ["--config", str(REPO / "recipes/baize-v2-7b/sdf.yaml"), "--step", "judge", "--", "--max_steps", "3"]
    )
    assert config.step == "judge" and config.judge_model == "gpt-3.5-turbo" and extra == ["--max_steps", "3"]


@pytest.mark.slow
def test_judge_against_transformers_serve(tmp_path, tiny_llama_dir):
    """The judge step against a real `transformers serve`: every request is accepted and every verdict recorded
    (a tiny random judge does not give parseable scores: those are counted as unscored, not fatal)."""
    served = chatty_copy(tiny_llama_dir, tmp_path / "tiny-judge")
    rows = [
        {"id": str(i), "messages": [{"role": "user", "content": q}], "candidates": [{"text": a} for a in answers]}
        for i, (q, answers) in enumerate([("Why is the sky blue?", ["Rayleigh scattering.", "It reflects the sea."])])
    ]
    with transformers_serve(tmp_path / "serve.log") as base_url:
        for mode in ("pointwise", "pairwise"):
            config = SDFConfig(
                judge_model=str(served),
                judge_base_url=base_url,
                judge_mode=mode,
                judge_max_tokens=8,
                judge_parse_retries=1,
                judge_api_key_env="BAIZE_TEST_UNSET_KEY",
                timeout=60,
                max_retries=1,
            )
            stats = run_judge(config, rows)
            assert stats["judged"] == 1 and stats["request_errors"] == 0
            (row,) = stats["rows"]
            assert len(row["scores"]) == 2 and stats["usage"]["prompt_tokens"] > 0
            judge = row["judge"]
            verdicts = judge.get("verdicts") or [c[o] for c in judge["comparisons"] for o in ("order_ab", "order_ba")]
            assert stats["usage"]["calls"] == sum(v["attempts"] for v in verdicts)
            assert stats["unscored_candidates"] == sum(s is None for s in row["scores"])


def write_dpo_recipe(tmp_path: Path, tiny_llama_dir: Path, **overrides) -> Path:
    pairs = [
        {
            "prompt": [{"role": "user", "content": f"Question {i}: why is the sky blue?"}],
            "chosen": [{"role": "assistant", "content": "Sunlight scatters off air molecules; blue scatters most."}],
            "rejected": [{"role": "assistant", "content": "Because the sea reflects into it."}],
        }
        for i in range(4)
    ]
    recipe = {
        "model_name_or_path": str(tiny_llama_dir),
        "dtype": "float32",
        "use_peft": True,
        "lora_r": 4,
        "lora_alpha": 8,
        "lora_target_modules": "all-linear",
        "datasets": [{"path": "json", "data_files": str(write_jsonl(tmp_path / "preferences.jsonl", pairs))}],
        "output_dir": str(tmp_path / "dpo"),
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "learning_rate": 1e-2,
        "max_length": 128,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        **overrides,
    }
    (tmp_path / "dpo.yaml").write_text(yaml.safe_dump(recipe))
    return tmp_path / "dpo.yaml"


@pytest.mark.slow
def test_dpo_on_preference_pairs_trains_a_new_lora(tmp_path, tiny_llama_dir):
    """`baize dpo` (TRL's DPOTrainer) on pairs in the format the select step exports: a LoRA comes out and has
    moved away from its zero init; the recipe's 8-bit option reaches the trainer as a bitsandbytes config."""
    from safetensors.torch import load_file

    from baize import dpo
    from baize.modeling.training import prepare_model_loading

    write_dpo_recipe(tmp_path, tiny_llama_dir)
    metrics = dpo.main(*dpo.parse_args(["--config", str(tmp_path / "dpo.yaml")]))
    assert metrics["train_runtime"] > 0 and metrics["train_loss"] > 0
    weights = load_file(tmp_path / "dpo" / "adapter_model.safetensors")
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and any(w.abs().sum() > 0 for w in lora_b)  # B starts at zero: DPO updated it

    _, training_args, model_args, _ = dpo.parse_args(
        ["--config", str(tmp_path / "dpo.yaml"), "--load_in_8bit", "true"]
    )
    _, quantization = prepare_model_loading(model_args, training_args)
    assert quantization is not None and quantization.load_in_8bit
    assert dpo.parse_args(["--config", str(REPO / "recipes/baize-v2-7b/dpo.yaml")])[1].beta == 0.1


@pytest.mark.slow
def test_dpo_resumes_from_its_last_checkpoint(tmp_path, tiny_llama_dir):
    """Re-running `baize dpo` continues from the output dir's last checkpoint, as `baize train` does."""
    from baize import dpo

    recipe = write_dpo_recipe(tmp_path, tiny_llama_dir, save_strategy="steps", save_steps=1)
    dpo.main(*dpo.parse_args(["--config", str(recipe)]))
    assert (tmp_path / "dpo" / "checkpoint-2").is_dir()
    dpo.main(*dpo.parse_args(["--config", str(recipe), "--max_steps", "3"]))
    state = json.loads((tmp_path / "dpo" / "checkpoint-3" / "trainer_state.json").read_text())
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry] == [1, 2, 3]


def test_candidates_never_keep_a_turn_tag_and_count_their_real_tokens(v1_adapter):
    from baize.llm.generation import finished_sequence
    from baize.modeling.loading import load_chat_model

    chat = load_chat_model(v1_adapter)
    tok, stops = chat.tokenizer, chat.prompt_builder().stop_strings
    assert stops == ["[|Human|]", "[|AI|]", "\n[|"]  # the Baize format stops at turn tags too, not only at EOS
    eos, pad = tok.eos_token_id, tok.pad_token_id or tok.eos_token_id

    def encode(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    invented = encode("Paris.\n[|Human|] And Rome?\n[|AI|] Rome.")
    result = finished_sequence(tok, invented + [pad] * 3, eos=eos, pad=pad, stops=stops)
    tag_end = next(n for n in range(1, len(invented) + 1) if "\n[|" in tok.decode(invented[:n]))
    assert result == {"text": "Paris.", "finish_reason": "stop", "new_tokens": tag_end}

    made_up = encode("Paris.\n[|Machine|] Humans made it.")  # a turn of the model's own invention (make demo)
    assert finished_sequence(tok, made_up, eos=eos, pad=pad, stops=stops)["text"] == "Paris."

    cut_short = encode("Paris is the capital. [|Hu")  # max_new_tokens hit inside a tag
    result = finished_sequence(tok, cut_short, eos=eos, pad=pad, stops=stops)
    assert result == {"text": "Paris is the capital.", "finish_reason": "length", "new_tokens": len(cut_short)}

    short = encode("Yes.") + [eos] + [pad] * 10  # a 1-word answer in a batch padded to 14 tokens
    result = finished_sequence(tok, short, eos=eos, pad=pad, stops=stops)
    assert result == {"text": "Yes.", "finish_reason": "stop", "new_tokens": len(encode("Yes.")) + 1}


@pytest.mark.slow
def test_changed_sampling_or_judging_settings_are_refused_never_mixed(tmp_path, v1_adapter):
    from baize.io.errors import SettingsChanged

    config = config_for(tmp_path, v1_adapter, ["What is 2+2?"], num_candidates=2)
    sdf.sample_step(config)
    candidates = (Path(config.output_dir) / "candidates.jsonl").read_text()
    assert sdf.sample_step(config)["already_done"] == 1  # the same settings resume
    changed = config_for(tmp_path, v1_adapter, ["What is 2+2?"], num_candidates=2, temperature=0.5)
    with pytest.raises(SettingsChanged, match=r"temperature: 1.0 -> 0.5.*--overwrite true"):
        sdf.sample_step(changed)
    assert (Path(config.output_dir) / "candidates.jsonl").read_text() == candidates  # nothing mixed or lost
    changed.overwrite = True
    assert sdf.sample_step(changed)["sampled"] == 1

    judged = Path(config.output_dir) / "judged.jsonl"
    with OpenAIServer(lambda request: Reply("85\nGood.")) as server:
        judge = config_for(tmp_path, v1_adapter, ["What is 2+2?"], num_candidates=2, temperature=0.5,
                           judge_base_url=server.base_url)  # fmt: skip
        sdf.judge_step(judge)
        first = judged.read_text()
        judge.judge_temperature = 0.7
        with pytest.raises(SettingsChanged, match="judge_temperature: 0.0 -> 0.7"):
            sdf.judge_step(judge)
    assert judged.read_text() == first


@pytest.mark.slow
def test_an_unreachable_judge_fails_the_run_naming_its_url_and_nothing_is_selected(tmp_path, v1_adapter):
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    from baize.data.seeds import seed_id
    from baize.io.runs import claim_step

    config = config_for(tmp_path, v1_adapter, ["What is 2+2?"], judge_base_url=url)
    folder = Path(config.output_dir)
    claim_step(folder, sdf.SAMPLE_SIGNATURE, sdf.sample_settings(config), [], overwrite=False, what="candidates")
    write_jsonl(
        folder / "candidates.jsonl",
        [{"id": seed_id("What is 2+2?"), "messages": [{"role": "user", "content": "What is 2+2?"}],
          "candidates": [{"text": "4", "finish_reason": "stop", "new_tokens": 2}] * 2}],
    )  # fmt: skip
    recipe = tmp_path / "sdf.yaml"
    recipe.write_text(yaml.safe_dump({k: v for k, v in vars(config).items() if v is not None and k != "step"}))
    for step in ("judge", "all"):
        result = subprocess.run(
            [sys.executable, "-m", "baize.sdf", "--config", str(recipe), "--step", step],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 1, result.stderr[-2000:]
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("baize sdf: error: the judge at " + url) and "Traceback" not in result.stderr
    assert not (folder / "selected.jsonl").exists()
    with pytest.raises(Exception, match=r"1 of 1 sampled prompts have no verdict .* --allow_partial true"):
        sdf.select_step(config)


def test_verdict_cache_key_covers_how_the_judge_is_asked():
    from baize.judging.client import JudgeArguments, verdict_key

    asked = [JudgeArguments(), JudgeArguments(judge_temperature=0.5), JudgeArguments(judge_max_tokens=64)]
    keys = {verdict_key("q", ["a", "b"], judge, "TEMPLATE") for judge in asked}
    assert len(keys) == 3
    assert verdict_key("q", ["a", "b"], JudgeArguments(), "TEMPLATE") in keys  # the same asking hits the cache


# --------------------------------------------------------------------------- sampling at endpoints (vLLM)


def test_sampling_at_endpoints_sends_the_shared_prompt_and_resumes(tmp_path, v1_adapter):
    """`sample_base_urls`: the prompt text the shared builder renders goes to /v1/completions with n, stop, seed;
    prompts are spread over the replicas; the answers are cut at turn tags; a re-run asks nothing."""
    from baize.llm.generation import batch_seed
    from baize.modeling.loading import load_chat_model

    def replica(request):
        seed = request.body["seed"]
        return [
            Reply(f"Answer {seed} one.\n[|Human|] and more", finish_reason="stop"),
            Reply(f"Answer {seed} two, cut at the token budget", finish_reason="length"),
        ]

    prompts = [f"Question number {i}: why?" for i in range(6)]
    with OpenAIServer(replica) as first, OpenAIServer(replica) as second:
        config = config_for(
            tmp_path, v1_adapter, prompts, num_candidates=2, max_new_tokens=12,
            sample_base_urls=[first.base_url, second.base_url], sample_model="v1", sample_concurrency=4,
        )  # fmt: skip
        stats = sdf.sample_step(config)
        requests = first.requests + second.requests
        assert stats["sampled"] == 6 and stats["per_server"] == [3, 3] and len(requests) == 6
        assert first.requests and second.requests

        builder = load_chat_model(v1_adapter, without_weights=True).prompt_builder()
        rows = sdf.read_jsonl(Path(config.output_dir) / sdf.CANDIDATES_FILE)
        by_id = {row["id"]: row for row in rows}
        for request in requests:
            body = request.body
            row = next(r for r in rows if builder.render_messages(r["messages"]) == body["prompt"])
            assert builder.encode(body["prompt"]) == builder.encode_messages(row["messages"])  # token for token
            assert row["prompt_tokens"] == len(builder.encode(body["prompt"]))
            assert (body["model"], body["n"], body["max_tokens"]) == ("v1", 2, 12)
            assert body["stop"] == ["[|Human|]", "[|AI|]", "\n[|"]
            assert "add_special_tokens" not in body  # SmolLM2's tokenizer adds no BOS of its own: nothing to turn off
            assert body["seed"] == batch_seed(42, [row["id"]]) and (body["temperature"], body["top_p"]) == (1.0, 0.95)
        candidates = by_id[rows[0]["id"]]["candidates"]
        seed = batch_seed(42, [rows[0]["id"]])
        assert [c["text"] for c in candidates] == [
            f"Answer {seed} one.",
            f"Answer {seed} two, cut at the token budget",
        ]
        assert [c["finish_reason"] for c in candidates] == ["stop", "length"]
        assert all(c["new_tokens"] > 0 for c in candidates)

        first.reset()
        second.reset()
        again = sdf.sample_step(config)
        assert again["already_done"] == 6 and not first.requests and not second.requests


@pytest.mark.slow
def test_sampling_at_a_real_transformers_serve(tmp_path, tiny_llama_dir):
    """A real `transformers serve` takes the /v1/completions call; it ignores `n`, so each candidate is its own
    request (seed + i), and N candidates still come back per prompt."""
    model = chatty_copy(tiny_llama_dir, tmp_path / "v1-full")
    with transformers_serve(tmp_path / "serve.log") as url:
        config = config_for(
            tmp_path, model, ["Why is the sky blue?", "How do magnets work?"], num_candidates=3, max_new_tokens=8,
            sample_base_urls=[url], sample_model=str(model), timeout=120, max_retries=1,
        )  # fmt: skip
        stats = sdf.sample_step(config)
    assert stats["sampled"] == 2 and stats["usage"]["calls"] == 6  # 3 requests per prompt
    rows = sdf.read_jsonl(Path(config.output_dir) / sdf.CANDIDATES_FILE)
    assert all(len(row["candidates"]) == 3 for row in rows)
    assert all(
        c["finish_reason"] in ("stop", "length") and c["new_tokens"] >= 1 for r in rows for c in r["candidates"]
    )


@pytest.mark.slow
def test_rounds_sample_fresh_prompts_train_on_the_last_model_and_stop_when_the_gate_finds_no_gain(
    tmp_path, v1_adapter, tiny_llama_dir
):
    from helpers import sdf_train_recipe

    train_yaml = sdf_train_recipe(tmp_path, tiny_llama_dir, max_steps=1, save_steps=1,
                                  output_dir=str(tmp_path / "v2"))  # fmt: skip
    gate_file = tmp_path / "gate.txt"
    gate_file.write_text("What is a cloud?\nWhy do cats purr?\nHow do tides work?\n")

    def judge(request):  # candidates: longer scores higher; the gate's pairs: always a tie (no gain)
        prompt = request.messages[1]["content"]
        if "Assistant 1's Answer" in prompt:
            return "5 5\nEqually good."
        return f"{min(100, 10 + len(ANSWER.search(prompt).group(1)))}\nLength-based."

    prompts = [f"Question number {i}: why?" for i in range(4)]
    with OpenAIServer(judge) as server:
        config = config_for(tmp_path, v1_adapter, prompts, judge_base_url=server.base_url, min_score=1,
                            train_config=str(train_yaml), num_candidates=2, rounds=3, limit=2,
                            gate_questions_path=str(gate_file), gate_limit=3, gate_bootstrap_samples=200)  # fmt: skip
        summary = sdf.main(config)
        asked = len(server.requests)
        again = sdf.main(config)  # a finished loop re-run: nothing asked again, nothing retrained
        assert len(server.requests) == asked

    root = Path(config.output_dir)
    assert [r["round"] for r in summary["rounds"]] == [1, 2]  # round 3 never ran: round 2 found no gain
    assert summary["stopped"].startswith("no gain at round 2") and summary["best_round"] == 1
    assert summary["best"] == str(tmp_path / "v2") and again["best"] == summary["best"]
    first, second = summary["rounds"]
    assert second["model"] == str(tmp_path / "v2") and second["trained"] == str(root / "round-2" / "v3")
    assert (root / "round-2" / "v3" / "adapter_config.json").exists()
    gate = second["gate"]
    assert gate["judged"] == 3 and gate["tie"] == 3 and gate["adjusted_win_rate"] == 0.5 and not gate["passed"]
    round_1 = [row["messages"][-1]["content"] for row in sdf.read_jsonl(root / sdf.CANDIDATES_FILE)]
    round_2 = [row["messages"][-1]["content"] for row in sdf.read_jsonl(root / "round-2" / sdf.CANDIDATES_FILE)]
    assert len(round_1) == len(round_2) == 2 and not set(round_1) & set(round_2)  # fresh prompts each round
    assert json.loads((root / "rounds.json").read_text()) == summary


@pytest.mark.slow
def test_a_dpo_round_trains_on_the_best_vs_worst_pairs_on_top_of_the_frozen_parent(tmp_path, v1_adapter):
    """round_method dpo: the new LoRA learns from preferences.jsonl with `baize dpo` (reference: the parent, its
    LoRA off), on the parent merged into its base; the lineage and card say so, and it loads as base -> v1 -> v2."""
    from baize.modeling.loading import load_chat_model

    dpo_yaml = tmp_path / "dpo.yaml"
    dpo_yaml.write_text(yaml.safe_dump({
        "use_peft": True, "lora_r": 4, "lora_alpha": 8, "lora_target_modules": "all-linear", "beta": 0.1,
        "max_length": 128, "max_steps": 2, "per_device_train_batch_size": 2, "learning_rate": 1e-3,
        "logging_steps": 1, "save_strategy": "no", "report_to": "none", "dataloader_pin_memory": False,
        "output_dir": str(tmp_path / "sdf" / "v2"),
    }))  # fmt: skip

    def judge(request):  # longer candidates score higher: best and worst always differ
        return f"{min(100, 10 + len(ANSWER.search(request.messages[1]['content']).group(1)))}\nLength."

    prompts = [f"Question number {i}: why?" for i in range(3)]
    with OpenAIServer(judge) as server:
        config = config_for(tmp_path, v1_adapter, prompts, judge_base_url=server.base_url, min_score=1,
                            num_candidates=2, round_method="dpo", dpo_config=str(dpo_yaml))  # fmt: skip
        results = sdf.main(config)
    assert results["select"]["preferences"] >= 1
    trained = results["train"]
    out = Path(trained["output_dir"])
    assert trained["lineage"]["method"] == "dpo" and trained["lineage"]["version"] == 2
    assert (out / "adapter_config.json").exists()
    card = (out / "README.md").read_text()
    assert "## Baize v2: Self-Distillation with Feedback" in card and "preference pairs of a DPO step" in card
    chat = load_chat_model(out)  # its base is the merged v1 here
    with torch.no_grad():
        ids = chat.tokenizer("[|Human|] hi", return_tensors="pt").input_ids
        with chat.model.disable_adapter():
            parent = chat.model(ids).logits
        assert not torch.equal(parent, chat.model(ids).logits)  # DPO moved the new LoRA
