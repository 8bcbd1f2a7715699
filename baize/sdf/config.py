"""`baize sdf`'s recipe keys, its file names, and the settings each resumable step signs."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field

from baize.io.arguments import parse_recipe, signed_settings
from baize.judging.client import JudgeArguments
from baize.judging.rubrics import PAIR_100, POINTWISE_100
from baize.llm.generation import DEFAULT_MAX_NEW_TOKENS, DEFAULT_SEED, DEFAULT_TEMPERATURE, DEFAULT_TOP_P

STEPS = ("sample", "judge", "select", "train", "all")
CANDIDATES_FILE = "candidates.jsonl"
GRPO_PROMPTS_FILE = "grpo_prompts.jsonl"
REWARD_CACHE_FILE = "reward_cache.jsonl"
REWARD_SUMMARY_FILE = "reward_summary.json"
JUDGED_FILE = "judged.jsonl"
SELECTED_FILE = "selected.jsonl"
PREFERENCES_FILE = "preferences.jsonl"
SAMPLE_SIGNATURE = "sample_signature.json"
JUDGE_SIGNATURE = "judge_signature.json"
# What each step writes, in step order: a step that starts over takes the later steps' outputs with it.
STEP_OUTPUTS = {
    "sample": [CANDIDATES_FILE, SAMPLE_SIGNATURE],
    "judge": [JUDGED_FILE, JUDGE_SIGNATURE],
    "select": [SELECTED_FILE, PREFERENCES_FILE],
}


def outputs_after(folder, step: str) -> list:
    """The files of the steps after `step` in `folder`."""
    steps = list(STEP_OUTPUTS)
    return [folder / name for later in steps[steps.index(step) + 1 :] for name in STEP_OUTPUTS[later]]


@dataclass
class SDFConfig(JudgeArguments):
    """The judge endpoint's fields (judge_model, judge_base_url, ...) are baize.judging.client.JudgeArguments'."""

    output_dir: str = field(
        default="runs/sdf", metadata={"help": "Folder of every step's files; re-running continues there."}
    )
    step: str = field(
        default="all",
        metadata={
            "help": "Which step to run: sample, judge, select, train, or all (in that order).",
            "choices": STEPS,
        },
    )
    # ------------------------------------------------------------------ v1 model
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "signs": "sample",
            "help": "The v1 model: a LoRA adapter folder / Hub id (loaded on its base), or a full model.",
        },
    )
    base_model: str | None = field(
        default=None,
        metadata={
            "base_of": "model_name_or_path",
            "signs": "sample",
            "help": "Base of the v1 adapter (unset: the one in its adapter_config.json).",
        },
    )
    gguf_file: str | None = field(
        default=None,
        metadata={
            "gguf_of": ("model_name_or_path", "base_model"),
            "signs": "sample",
            "help": "GGUF file of the base (e.g. for pkg:NAME).",
        },
    )
    dtype: str | None = field(
        default=None,
        metadata={
            "signs": "sample",
            "help": "float32 / bfloat16 / float16 for sampling (unset: bf16 on GPU, fp32 on CPU).",
        },
    )
    load_in_8bit: bool = field(
        default=False, metadata={"signs": "sample", "help": "Sample from an int8 base (bitsandbytes)."}
    )
    # ------------------------------------------------------------------ prompts
    prompts_path: str | None = field(
        default=None,
        metadata={
            "signs": "sample",
            "help": "Prompts: Hub dataset id or local .txt/.jsonl/.parquet file. A `messages` column gives "
            "multi-turn contexts (a trailing assistant turn is dropped); otherwise `prompts_column` is one "
            "user question. De-duplicated like collection seeds.",
        },
    )
    prompts_name: str | None = field(
        default=None, metadata={"signs": "sample", "help": "Dataset config name (Hub datasets)."}
    )
    prompts_split: str = field(default="train", metadata={"signs": "sample", "help": "Dataset split."})
    prompts_column: str = field(
        default="text",
        metadata={"signs": "sample", "help": "Column with the question (dotted paths like questions.text.0 work)."},
    )
    messages_column: str = field(
        default="messages", metadata={"signs": "sample", "help": "Column with chat contexts, if present."}
    )
    limit: int | None = field(
        default=None, metadata={"signs": "sample", "help": "Use at most this many prompts (after dedup)."}
    )
    # ------------------------------------------------------------------ sampling
    num_candidates: int = field(
        default=4, metadata={"signs": "sample", "help": "N: answers sampled per prompt (paper: 4)."}
    )
    max_new_tokens: int = field(
        default=DEFAULT_MAX_NEW_TOKENS, metadata={"signs": "sample", "help": "Longest answer, in tokens."}
    )
    max_prompt_tokens: int = field(
        default=512,
        metadata={"signs": "sample", "help": "Prompts (rendered context) longer than this are skipped and counted."},
    )
    temperature: float = field(
        default=DEFAULT_TEMPERATURE, metadata={"signs": "sample", "help": "Sampling temperature (Baize demo: 1.0)."}
    )
    top_p: float = field(
        default=DEFAULT_TOP_P, metadata={"signs": "sample", "help": "Nucleus sampling (Baize demo: 0.95)."}
    )
    batch_size: int = field(
        default=8,
        metadata={"signs": "sample", "help": "Prompts per forward pass (each with N sequences: batch_size x N rows)."},
    )
    share_prefill: bool = field(
        default=True,
        metadata={"help": "Run each prompt's prefill once and copy its KV cache to the N samples (transformers)."},
    )
    seed: int = field(
        default=DEFAULT_SEED,
        metadata={"signs": "sample", "help": "Sampling seed (per batch, derived from the prompt ids)."},
    )
    sample_base_urls: list[str] | None = field(
        default=None,
        metadata={
            "role": "sample",
            "part": "base_urls",
            "help": "Sample at OpenAI-compatible servers instead of in this process: one or several base URLs "
            "(`vllm serve` replicas, prompts spread over them). The prompt text is built here by the shared prompt "
            "builder and sent to /v1/completions with n, stop (the turn tags), max_tokens, temperature, top_p and "
            "seed. The v1 must be what they serve (a merged v1, or `--enable-lora --lora-modules NAME=V1`).",
        },
    )
    sample_model: str | None = field(
        default=None,
        metadata={
            "role": "sample",
            "part": "model",
            "signs": "sample",
            "help": "The model name at sample_base_urls (the merged folder, or the LoRA module's NAME).",
        },
    )
    sample_api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={
            "role": "sample",
            "part": "api_key_env",
            "help": "Variable holding the sampling servers' key (vLLM: any).",
        },
    )
    sample_concurrency: int = field(default=16, metadata={"help": "Prompts in flight at once, over all servers."})
    serve_command: str | None = field(
        default=None,
        metadata={
            "help": "How to serve a model folder, for rounds at endpoints: a command with {model} (the folder; {gguf}: "
            "the same model as a GGUF file, for llama.cpp), {host} and {port}, "
            "e.g. `vllm serve {model} --host {host} --port {port}`. baize merges each round's model, starts one "
            "server per sample_base_urls entry on its host and port, waits until GET /models answers, samples the "
            "round's candidates and answers the gate's questions there, and stops the servers (before training, "
            "and at the end). Needed for rounds > 1 with sample_base_urls."
        },
    )
    serve_timeout: float = field(
        default=900.0, metadata={"help": "Seconds a started server may take to answer GET /models (vLLM: minutes)."}
    )
    # ------------------------------------------------------------------ judge (endpoint fields: JudgeArguments)
    judge_mode: str = field(
        default="pointwise",
        metadata={
            "signs": "judge",
            "help": "pointwise: a 1-100 score per candidate (paper); pairwise: challenger vs best, both orders.",
            "choices": ["pointwise", "pairwise"],
        },
    )
    # ------------------------------------------------------------------ select
    min_score: float = field(
        default=50.0, metadata={"help": "Drop prompts whose best candidate scores below this (1-100 scale)."}
    )
    max_flip_rate: float = field(
        default=0.2,
        metadata={"help": "Flag the judge in the select summary when more pairwise verdicts than this flip as the "
                  "candidates swap places."},
    )  # fmt: skip
    min_margin: float = field(
        default=1.0, metadata={"help": "Export a best-vs-worst preference pair only if best - worst >= this."}
    )
    # ------------------------------------------------------------------ train
    train_config: str | None = field(
        default=None,
        metadata={
            "help": "SFT recipe for the v2 LoRA (parsed by `baize train`; its model and datasets are set "
            "by SDF). Extra SFT overrides go after `--` on the command line."
        },
    )
    round_method: str = field(
        default="sft",
        metadata={
            "help": "How the new LoRA learns from the judge: sft on the best answer per prompt (the paper), dpo on "
            "the best-vs-worst pairs (preferences.jsonl) with dpo_config, the parent as reference, or grpo: online, "
            "with grpo_config: TRL's GRPOTrainer samples num_candidates answers per prompt at every step and the judge "
            "scores them as its reward (no sample, judge or select step).",
            "choices": ["sft", "dpo", "grpo"],
        },
    )
    grpo_config: str | None = field(
        default=None,
        metadata={"help": "GRPO recipe of the new LoRA when round_method is grpo (TRL's GRPOConfig and the LoRA keys; "
                  "its model and prompts are set by SDF, and num_generations, temperature, top_p and "
                  "max_completion_length are num_candidates, temperature, top_p and max_new_tokens)."},
    )  # fmt: skip
    max_cost: float | None = field(
        default=None,
        metadata={"help": "round_method grpo: the judge's budget in USD over every run of this output dir (with "
                  "rounds: of each round, in its folder), at judge_prices; the training stops in one line once it "
                  "is spent (raise it and re-run to go on)."},
    )  # fmt: skip
    max_tokens: int | None = field(
        default=None,
        metadata={"help": "round_method grpo: the judge's token budget (prompt + completion), like max_cost."},
    )
    dpo_config: str | None = field(
        default=None,
        metadata={"help": "DPO recipe of the new LoRA when round_method is dpo (parsed by `baize dpo`; its model "
                  "and datasets are set by SDF)."},
    )  # fmt: skip
    merged_dir: str | None = field(
        default=None, metadata={"help": "Where v1 is merged into its base (unset: OUTPUT_DIR/v1-merged)."}
    )
    merge_dtype: str = field(default="auto", metadata={"help": "dtype of the merged v1 (auto keeps the base's)."})
    # ------------------------------------------------------------------ rounds (v2 -> v3 -> ...)
    rounds: int = field(
        default=1,
        metadata={
            "help": "Rounds of self-distillation: round r samples from model r (v1 for round 1), judges, selects, "
            "trains model r+1 on model r merged, then a gate compares model r+1 with model r on held-out "
            "questions; the loop stops when the gate finds no gain (the lower bound of the adjusted win rate "
            "is not above 0.5) or after this many rounds. Round r >= 2 lives in OUTPUT_DIR/round-r."
        },
    )
    reuse_prompts: bool = field(
        default=False,
        metadata={"help": "Every round samples the same prompts (default: each round the next `limit` of them)."},
    )
    prompts_offset: int = field(
        default=0, metadata={"help": "Skip this many prompts first (set per round by `rounds`)."}
    )
    gate_questions_path: str | None = field(
        default=None,
        metadata={"help": "Held-out questions of the rounds' gate (unset: baize's own 80 eval questions, which no "
                  "round trains on): a .txt or .jsonl file with a `question` or `text` column."},
    )  # fmt: skip
    gate_limit: int = field(default=20, metadata={"help": "Gate questions per round."})
    gate_mode: str = field(
        default="pairwise",
        metadata={"help": "How the gate compares model r+1 with model r on each question. `pairwise`: the judge "
                  "sees both answers, in both orders, and a win needs both orders to agree. `pointwise`: each "
                  "answer is scored 1-100 on its own with SDF's pointwise rubric (probability-weighted with "
                  "judge_scoring: expected), the higher score wins and equal scores tie: no position bias to "
                  "cancel, and a judge too small to write a pair verdict still decides every question.",
                  "choices": ["pairwise", "pointwise"]},
    )  # fmt: skip
    gate_bootstrap_samples: int = field(default=2000, metadata={"help": "Bootstrap resamples of the gate's interval."})

    # ------------------------------------------------------------------ re-runs
    overwrite: bool = field(
        default=False,
        metadata={"help": "Start a step over when its settings changed (deletes its outputs and the later steps')."},
    )
    allow_partial: bool = field(
        default=False, metadata={"help": "Let select use a judged.jsonl that misses some sampled prompts."}
    )

    def __post_init__(self):
        if self.rounds < 1:
            raise ValueError("rounds must be >= 1")
        if self.round_method == "dpo" and not self.dpo_config:
            raise ValueError("round_method dpo needs dpo_config: the DPO recipe of the new LoRA")
        if self.round_method == "grpo" and not self.grpo_config:
            raise ValueError("round_method grpo needs grpo_config: the GRPO recipe of the new LoRA")
        if self.gate_mode not in ("pairwise", "pointwise"):
            raise ValueError(f"gate_mode must be pairwise or pointwise, not {self.gate_mode!r}")
        if self.num_candidates < 2:
            raise ValueError("num_candidates must be >= 2 (SDF picks the best of several)")


def parse_args(argv: list[str] | None = None) -> tuple[SDFConfig, list[str]]:
    """`--config FILE [--key value ...] [-- SFT overrides]` -> (config, SFT override argv)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    train_argv: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, train_argv = argv[:cut], argv[cut + 1 :]
    (config,) = parse_recipe(
        (SDFConfig,),
        argv,
        prog="baize sdf",
        description="Baize v2 Self-Distillation with Feedback: sample N answers from the v1 model, score them "
        "with an LLM judge, keep the best, train a new LoRA on top of v1. "
        "baize sdf --config recipes/baize-smol/sdf.yaml [--step sample|judge|select|train|all] [-- SFT overrides]",
    )
    return config, train_argv


def sample_settings(config: SDFConfig) -> dict:
    # The fields marked `signs: sample`; not the URLs: another replica, or a restarted server, samples the same model.
    return {**signed_settings(config, "sample"), "at_endpoint": bool(config.sample_base_urls)}


def judge_settings(config: SDFConfig) -> dict:
    # The fields marked `signs: judge` (the model and how it is asked; not its URL: a restarted server or another
    # replica serves the same judge) and the rubrics' text.
    templates = hashlib.sha256((POINTWISE_100.template + PAIR_100.template).encode()).hexdigest()[:16]
    return {**signed_settings(config, "judge"), "templates": templates}
