"""`baize eval`'s recipe keys, its file names, and the rubrics its judge asks on (1-10, as the paper)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from baize.io.arguments import parse_recipe
from baize.io.errors import UsageError
from baize.judging.client import JudgeArguments
from baize.judging.rubrics import pair_rubric, single_rubric
from baize.llm.generation import DEFAULT_MAX_NEW_TOKENS, DEFAULT_SEED

STEPS = ("answer", "judge", "report", "all", "calibrate")
QUESTIONS_FILE = Path(__file__).parent.parent / "eval_questions.jsonl"
# Two turns per question (the first is QUESTIONS_FILE's question of the same id), reference answers for math,
# coding and one Fermi question: `questions_path` set to it and `question_column: turns`.
TWO_TURN_QUESTIONS_FILE = Path(__file__).parent.parent / "eval_questions_2turn.jsonl"
OPENAI_PREFIX = "openai:"
SCALE = 10  # the paper's (and Vicuna's) 1-10 scores
PAIR_RUBRIC = pair_rubric(SCALE)  # both answers side by side, asked in both orders
SINGLE_RUBRICS = {reference: single_rubric(SCALE, reference) for reference in (False, True)}  # MT-Bench's grading
JUDGEMENTS_FILE = "judgements.jsonl"
# Sampling temperature per category: creative ones sampled, ones with a right answer greedy (0 = greedy).
# The Vicuna-style categories of the shipped set, plus MT-Bench's (the values FastChat uses for it).
CATEGORY_TEMPERATURES = {
    "generic": 0.7,
    "knowledge": 0.1,
    "roleplay": 0.7,
    "common-sense": 0.1,
    "fermi": 0.0,
    "counterfactual": 0.7,
    "coding": 0.0,
    "math": 0.0,
    "writing": 0.7,
    "extraction": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
}


@dataclass
class EvalConfig(JudgeArguments):
    """The judge endpoint's fields (judge_model, judge_base_url, ...) are baize.judging.client.JudgeArguments'."""

    output_dir: str = field(default="runs/eval", metadata={"help": "Folder of every step's files."})
    step: str = field(
        default="all",
        metadata={
            "help": "answer, judge, report, or all (in that order); calibrate measures the judge against human votes "
            "(calibration_path) instead.",
            "choices": STEPS,
        },
    )
    # ------------------------------------------------------------------ questions
    questions_path: str | None = field(
        default=None,
        metadata={
            "help": "mt_bench (MT-Bench's 80 two-turn questions, packaged: no network), a Hub dataset id or a local "
            ".jsonl/.parquet/.csv of questions (unset: the project's own 80 "
            "questions over 9 categories, baize/eval_questions.jsonl)."
        },
    )
    questions_name: str | None = field(default=None, metadata={"help": "Dataset config name (Hub datasets)."})
    questions_split: str = field(default="train", metadata={"help": "Dataset split."})
    question_column: str = field(
        default="question",
        metadata={
            "help": "Column with the question: a string (one turn) or a list of turns (two-turn sets: `turns`; "
            "MT-Bench: `prompt`). Turn 2 is asked with the model's own turn-1 answer in the history. Dotted "
            "paths reach into lists (prompt.0: the first turn only)."
        },
    )
    reference_column: str = field(
        default="reference",
        metadata={
            "help": "Column with reference answers (one per turn), if any: shown to the single-answer judge in "
            "reference_guided_categories."
        },
    )
    category_column: str = field(default="category", metadata={"help": "Column with the category, if any."})
    id_column: str = field(
        default="question_id", metadata={"help": "Column with a question id (unset: the row number)."}
    )
    limit: int | None = field(default=None, metadata={"help": "Use only the first N questions."})
    calibration_path: str = field(
        default="lmsys/mt_bench_human_judgments",
        metadata={
            "help": "--step calibrate: human-labelled pairs in MT-Bench's human-judgment format (question_id, "
            "model_a, model_b, winner, turn, conversation_a, conversation_b): the Hub dataset or a local .jsonl."
        },
    )
    calibration_split: str = field(default="human", metadata={"help": "Split of calibration_path (Hub datasets)."})
    calibration_limit: int | None = field(
        default=200, metadata={"help": "Judge only the first N human-labelled pairs (None: all)."}
    )
    limit_per_category: int | None = field(
        default=None, metadata={"help": "Use only the first N questions of every category (quick runs)."}
    )
    # ------------------------------------------------------------------ contestants
    model: str | None = field(
        default=None,
        metadata={
            "help": "The model to evaluate: an adapter or model (local folder or Hub id, loaded like `baize "
            "chat`), or openai:MODEL at answer_base_url."
        },
    )
    model_label: str | None = field(default=None, metadata={"help": "Its name in files and tables."})
    model_base: str | None = field(
        default=None, metadata={"base_of": "model", "help": "Base of an adapter (unset: its own)."}
    )
    model_gguf_file: str | None = field(
        default=None, metadata={"gguf_of": ("model", "model_base"), "help": "GGUF file of the base (pkg:NAME)."}
    )
    reference: str = field(
        default="openai:gpt-3.5-turbo",
        metadata={"help": "The reference whose answers the model is scored against (paper: ChatGPT)."},
    )
    reference_label: str | None = field(default=None, metadata={"help": "Its name in files and tables."})
    reference_base: str | None = field(
        default=None, metadata={"base_of": "reference", "help": "Base of a reference adapter."}
    )
    reference_gguf_file: str | None = field(
        default=None,
        metadata={
            "gguf_of": ("reference", "reference_base"),
            "help": "GGUF file of the reference (pkg:NAME, local folder or openai:pkg:NAME).",
        },
    )
    answer_base_url: str | None = field(
        default=None,
        metadata={
            "role": "answer",
            "part": "base_url",
            "help": "Endpoint of openai:MODEL contestants (unset: judge_base_url).",
        },
    )
    model_prompt_from: str | None = field(
        default=None,
        metadata={
            "help": "For an openai:MODEL model served by `vllm serve` (a merged or LoRA-served Baize model): build its "
            "prompts here from this adapter/model folder (template, system prompt, turn tags, as `baize chat`) and "
            "send the text to /v1/completions, so the answers are prompted as local ones are. Unset: chat "
            "completions, the server's own template."
        },
    )
    reference_prompt_from: str | None = field(
        default=None, metadata={"help": "The same for an openai:MODEL reference."}
    )
    answer_api_key_env: str | None = field(
        default=None,
        metadata={
            "role": "answer",
            "part": "api_key_env",
            "help": "Environment variable with their API key (unset: judge_api_key_env).",
        },
    )
    prompt_format: str = field(
        default="auto",
        metadata={"help": "Prompt format of local contestants: auto, baize, original or native (see baize chat)."},
    )
    system_prompt: str | None = field(
        default=None,
        metadata={
            "help": "System message before every question. Default: a local model gets the one it was trained "
            "with (as `baize chat`), endpoints none. An empty string: none for all."
        },
    )
    guardrail: bool = field(
        default=False, metadata={"help": "Local models get the Baize demo's guardrail system prompt instead."}
    )
    overwrite: bool = field(
        default=False,
        metadata={"help": "Answer again when a contestant or an answering setting changed (deletes its answers)."},
    )
    dtype: str | None = field(default=None, metadata={"help": "float32 / bfloat16 / float16 for local models."})
    load_in_8bit: bool = field(default=False, metadata={"help": "Load local models in int8 (bitsandbytes)."})
    load_in_4bit: bool = field(default=False, metadata={"help": "Load local models in 4-bit (bitsandbytes)."})
    # ------------------------------------------------------------------ answering
    max_new_tokens: int = field(default=DEFAULT_MAX_NEW_TOKENS, metadata={"help": "Longest answer, in tokens."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling for sampled categories."})
    category_temperatures: dict[str, float] | str | None = field(
        default=None,
        metadata={
            "help": "Temperature per category, a mapping in YAML or JSON on the command line; merged over the "
            "defaults (writing/roleplay/generic/counterfactual 0.7, knowledge/common-sense 0.1, fermi/coding/"
            "math 0.0). 0 means greedy."
        },
    )
    default_temperature: float = field(default=0.7, metadata={"help": "Temperature of categories not listed."})
    batch_size: int = field(default=8, metadata={"help": "Questions per generate call (local models)."})
    seed: int = field(
        default=DEFAULT_SEED, metadata={"help": "Sampling seed (per batch, derived from the question ids)."}
    )
    # ------------------------------------------------------------------ judging and report
    judge_model: str = field(
        default="gpt-4",
        metadata={
            "role": "judge",
            "part": "model",
            "signs": "judge",
            "help": "Judge model at the endpoint (paper: GPT-4).",
        },
    )
    pairwise: bool = field(
        default=True,
        metadata={"help": "Also ask with the model's answer first (pairwise win/tie/loss); false: paper only."},
    )
    single_grading: bool = field(
        default=False,
        metadata={
            "help": "Also grade every answer on its own, 1-10 per turn (MT-Bench's single-answer grading), with the "
            "reference answer shown in reference_guided_categories."
        },
    )
    reference_guided_categories: list[str] = field(
        default_factory=lambda: ["math", "reasoning", "coding", "fermi"],
        metadata={"help": "Categories whose single-answer grading shows the question's reference answer."},
    )
    judge_cache: str | None = field(
        default=None,
        metadata={"help": "Verdict cache file, can be shared by runs (unset: OUTPUT_DIR/judge_cache.jsonl)."},
    )
    bootstrap_samples: int = field(default=10_000, metadata={"help": "Bootstrap resamples for the intervals."})
    confidence: float = field(default=0.95, metadata={"help": "Confidence level of the intervals."})
    max_flip_rate: float = field(
        default=0.2,
        metadata={
            "help": "Flag the judge in the summary line and results.md when more than this share of its pair "
            "verdicts flip as the answers swap places (GPT-4 in FastChat's MT-Bench judgments: 0.13)."
        },
    )

    def __post_init__(self):
        if isinstance(self.category_temperatures, str):
            try:
                self.category_temperatures = json.loads(self.category_temperatures)
            except json.JSONDecodeError as error:
                raise UsageError(f"category_temperatures: not a JSON mapping: {error}") from None
        if self.category_temperatures is not None and not isinstance(self.category_temperatures, dict):
            raise UsageError("category_temperatures must be a mapping of category -> temperature")
        if not 0 < self.confidence < 1:
            raise UsageError("confidence must be between 0 and 1")

    def temperature(self, category: str) -> float:
        temperatures = {**CATEGORY_TEMPERATURES, **(self.category_temperatures or {})}
        return float(temperatures.get(category, self.default_temperature))


def parse_args(argv: list[str] | None = None) -> EvalConfig:
    (config,) = parse_recipe(
        (EvalConfig,),
        argv,
        prog="baize eval",
        description="Evaluate a chat model the way the Baize paper did (an LLM judge scores its answers against a "
        "reference model's, 1-10, reported as % of the reference) and with a pairwise judge asked in both "
        "orders (win/tie/loss, adjusted win rate with a bootstrap interval). "
        "baize eval --config recipes/baize-smol/eval.yaml [--step answer|judge|report|all] [--model ...]",
    )
    return config
