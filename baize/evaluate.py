"""Evaluation: the Baize paper's metric and a position-bias-free pairwise judge, in three resumable steps.

    baize eval --config recipes/baize-smol/eval.yaml                    # answer, judge, report
    baize eval --config recipes/baize-7b/eval.yaml --step report         # tables and charts from the files
    baize eval --config recipes/baize-7b/eval.yaml --model me/baize-7b --model_label mine

1. answer  the model and the reference answer every question -> answers/<label>.jsonl, appended as they are
           done (a re-run answers only what is missing). A contestant is an adapter or model (a local folder
           or Hub id, loaded like `baize chat`; batched generation), or `openai:MODEL` at an OpenAI-compatible
           endpoint (the paper's reference: `openai:gpt-3.5-turbo`). Temperatures are set per category
           (writing 0.7, math 0.0, ...). Questions: the project's own 80 over 9 Vicuna-style categories
           (baize/eval_questions.jsonl), or any Hub dataset / local file of prompts (e.g. MT-Bench's).
2. judge   per question, the judge scores both answers 1-10 side by side, asked twice:
           - reference first, as the paper did (GPT-4 with ChatGPT first): the paper's metric is the model's
             total score as a % of the reference's, per category and overall;
           - model first: a side wins a question only if it wins in both orders; a disagreement between the
             orders (position bias) or an equal score is a tie. Reported as win/tie/loss and the adjusted win
             rate (win + tie/2) with a bootstrap confidence interval over questions.
           Every verdict is cached on disk (judge_cache.jsonl) under the question, the answers in the order
           shown, the judge and the prompt, so a re-run (or a resumed run) asks the judge nothing twice.
3. report  results.json, results.md (a Markdown table with answer lengths next to the scores) and bar charts
           per category: scores_by_category.png, pairwise_by_category.png.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from baize.arguments import parse_recipe
from baize.batch import batch_label
from baize.endpoint import EndpointError, describe_error, describe_url, gather_bounded
from baize.errors import MissingColumn, UsageError, configure_logging, one_line_errors
from baize.generation import batch_seed
from baize.jsonl import JSONLAppender, read_jsonl, write_jsonl_atomically
from baize.judge import (
    JUDGE_BATCH_FOLDER,
    JudgeArguments,
    JudgeClient,
    VerdictCache,
    new_usage,
    pair_reminder,
    pair_template,
    parse_score,
    parse_score_pair,
    render_context,
    single_reminder,
    single_template,
    verdict_key,
)
from baize.runs import claim_step

logger = logging.getLogger("baize.eval")

STEPS = ("answer", "judge", "report", "all")
QUESTIONS_FILE = Path(__file__).with_name("eval_questions.jsonl")
# Two turns per question (the first is QUESTIONS_FILE's question of the same id), reference answers for math,
# coding and one Fermi question: `questions_path` set to it and `question_column: turns`.
TWO_TURN_QUESTIONS_FILE = Path(__file__).with_name("eval_questions_2turn.jsonl")
OPENAI_PREFIX = "openai:"
SCALE = 10  # the paper's (and Vicuna's) 1-10 scores
JUDGE_TEMPLATE = pair_template(scale=SCALE)
JUDGE_REMINDER = pair_reminder(scale=SCALE)
SINGLE_REMINDER = single_reminder(scale=SCALE)
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
    """The judge endpoint's fields (judge_model, judge_base_url, ...) are baize.judge.JudgeArguments'."""

    output_dir: str = field(default="runs/eval", metadata={"help": "Folder of every step's files."})
    step: str = field(
        default="all",
        metadata={"help": "answer, judge, report, or all (in that order).", "choices": STEPS},
    )
    # ------------------------------------------------------------------ questions
    questions_path: str | None = field(
        default=None,
        metadata={
            "help": "Hub dataset id or local .jsonl/.parquet/.csv of questions (unset: the project's own 80 "
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
    model_base: str | None = field(default=None, metadata={"help": "Base of an adapter (unset: its own)."})
    model_gguf_file: str | None = field(default=None, metadata={"help": "GGUF file of the base (pkg:NAME)."})
    reference: str = field(
        default="openai:gpt-3.5-turbo",
        metadata={"help": "The reference whose answers the model is scored against (paper: ChatGPT)."},
    )
    reference_label: str | None = field(default=None, metadata={"help": "Its name in files and tables."})
    reference_base: str | None = field(default=None, metadata={"help": "Base of a reference adapter."})
    reference_gguf_file: str | None = field(
        default=None, metadata={"help": "GGUF file of the reference (pkg:NAME, local folder or openai:pkg:NAME)."}
    )
    answer_base_url: str | None = field(
        default=None, metadata={"help": "Endpoint of openai:MODEL contestants (unset: judge_base_url)."}
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
        default=None, metadata={"help": "Environment variable with their API key (unset: judge_api_key_env)."}
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
    max_new_tokens: int = field(default=512, metadata={"help": "Longest answer, in tokens."})
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
    seed: int = field(default=42, metadata={"help": "Sampling seed (per batch, derived from the question ids)."})
    # ------------------------------------------------------------------ judging and report
    judge_model: str = field(default="gpt-4", metadata={"help": "Judge model at the endpoint (paper: GPT-4)."})
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
    from trl import TrlParser

    parser = TrlParser(
        (EvalConfig,),
        prog="baize eval",
        description="Evaluate a chat model the way the Baize paper did (an LLM judge scores its answers against a "
        "reference model's, 1-10, reported as %% of the reference) and with a pairwise judge asked in both "
        "orders (win/tie/loss, adjusted win rate with a bootstrap interval). "
        "baize eval --config recipes/baize-smol/eval.yaml [--step answer|judge|report|all] [--model ...]",
    )
    (config,) = parse_recipe(parser, list(sys.argv[1:] if argv is None else argv))
    return config


# --------------------------------------------------------------------------- questions


def load_questions(config: EvalConfig) -> list[dict]:
    """Question rows {question_id, category, question}, in file order, after the limits."""
    from baize.seeds import column_values, load_table

    path = config.questions_path or str(QUESTIONS_FILE)
    table = load_table(path, config.questions_name, config.questions_split, key="questions_path")
    try:
        texts = column_values(table, config.question_column)
    except (KeyError, MissingColumn):
        raise MissingColumn(
            f"{path}: question column {config.question_column!r} not found; columns: {table.column_names} "
            "(set question_column)"
        ) from None
    categories = table[config.category_column] if config.category_column in table.column_names else None
    ids = table[config.id_column] if config.id_column in table.column_names else None
    try:
        references = column_values(table, config.reference_column)
    except MissingColumn:
        references = None
    questions, seen, per_category = [], set(), {}
    for row, text in enumerate(texts):
        question_id = str(ids[row] if ids is not None else row + 1)
        turns = list(text) if isinstance(text, list | tuple) else [text]
        if not turns or not isinstance(turns[0], str) or not turns[0].strip():
            raise UsageError(f"{path}: row {row + 1} (question {question_id}) has no question text")
        for number, turn in enumerate(turns, 1):
            if not isinstance(turn, str) or not turn.strip():
                raise UsageError(
                    f"{path}: row {row + 1} (question {question_id}): turn {number} is missing or empty; every "
                    f"turn in {config.question_column!r} needs text"
                )
        if question_id in seen:
            raise UsageError(f"{path}: row {row + 1}: question id {question_id} appears twice")
        seen.add(question_id)
        category = str(categories[row]) if categories is not None and categories[row] else "all"
        per_category[category] = per_category.get(category, 0) + 1
        if config.limit_per_category is not None and per_category[category] > config.limit_per_category:
            continue
        reference = references[row] if references is not None else None
        reference = [reference] if isinstance(reference, str) else list(reference or [])
        questions.append(
            {
                "question_id": question_id,
                "category": category,
                "question": turns[0].strip(),
                "turns": [turn.strip() for turn in turns],
                "references": [r.strip() if isinstance(r, str) else None for r in reference],
            }
        )
    return questions[: config.limit] if config.limit is not None else questions


def conversation(question: dict, turn: int, answers: dict) -> list[dict]:
    """The chat messages that ask `turn` (1-based) of a question: every earlier turn with the contestant's own
    answer to it (`answers`: (question_id, turn) -> answer row), then the turn's question."""
    messages = []
    for earlier in range(1, turn):
        messages.append({"role": "user", "content": question["turns"][earlier - 1]})
        messages.append({"role": "assistant", "content": answers[(question["question_id"], earlier)]["answer"]})
    return [*messages, {"role": "user", "content": question["turns"][turn - 1]}]


def turns_to_answer(questions: list[dict], done: dict) -> list[tuple[dict, int]]:
    """(question, turn) pairs not answered yet whose earlier turns are: turn 2 waits for the turn-1 answer."""
    todo = []
    for question in questions:
        for turn in range(1, len(question["turns"]) + 1):
            if (question["question_id"], turn) in done:
                continue
            if turn == 1 or (question["question_id"], turn - 1) in done:
                todo.append((question, turn))
            break
    return todo


# --------------------------------------------------------------------------- step 1: answer


@dataclass
class Contestant:
    role: str  # model | reference
    spec: str  # folder / Hub id, or openai:MODEL
    label: str
    base: str | None = None
    gguf_file: str | None = None
    prompt_from: str | None = None  # an endpoint contestant prompted with this folder's builder (/v1/completions)

    @property
    def endpoint_model(self) -> str | None:
        return self.spec[len(OPENAI_PREFIX) :] if self.spec.startswith(OPENAI_PREFIX) else None


def default_label(spec: str) -> str:
    return re.sub(r"[^\w.+-]+", "_", spec).strip("_") or "model"


def contestants(config: EvalConfig) -> tuple[Contestant, Contestant]:
    if not config.model:
        raise UsageError("model is not set: give the adapter / model to evaluate (--model or `model:` in the recipe)")
    model = Contestant(
        "model", config.model, config.model_label or default_label(config.model), config.model_base,
        config.model_gguf_file, config.model_prompt_from,
    )  # fmt: skip
    reference = Contestant(
        "reference", config.reference, config.reference_label or default_label(config.reference),
        config.reference_base, config.reference_gguf_file, config.reference_prompt_from,
    )  # fmt: skip
    for contestant in (model, reference):
        if contestant.prompt_from and contestant.endpoint_model is None:
            raise UsageError(f"{contestant.role}_prompt_from is for openai:MODEL contestants, not {contestant.spec!r}")
    if model.label == reference.label:
        raise UsageError(f"model and reference have the same label {model.label!r}: set model_label / reference_label")
    return model, reference


def answers_path(config: EvalConfig, contestant: Contestant) -> Path:
    return Path(config.output_dir) / "answers" / f"{contestant.label}.jsonl"


def read_answers(config: EvalConfig, contestant: Contestant) -> dict[tuple[str, int], dict]:
    """(question_id, turn) -> answer row; answers of another contestant under the same label are an error."""
    path = answers_path(config, contestant)
    rows = read_jsonl(path)
    for number, row in enumerate(rows, 1):
        if row.get("contestant") != contestant.spec:
            raise UsageError(
                f"{path}: line {number} was answered by {row.get('contestant')!r}, not {contestant.spec!r}: "
                f"give this {contestant.role} another {contestant.role}_label, or delete the file"
            )
    return {(row["question_id"], row.get("turn", 1)): row for row in rows}


def _messages(config: EvalConfig, messages: list[dict]) -> list[dict]:
    system = [{"role": "system", "content": config.system_prompt}] if config.system_prompt else []
    return [*system, *messages]


def local_system_prompt(config: EvalConfig):
    """The system text of a local model: the configured one, the guardrail, else (`...`) the one it was trained
    with (ChatModel.prompt_builder's default, as `baize chat`)."""
    from baize.prompts import GUARDRAIL_SYSTEM_PROMPT

    if config.system_prompt is not None:
        return config.system_prompt or None
    return GUARDRAIL_SYSTEM_PROMPT if config.guardrail else ...


def _answer_row(
    contestant: Contestant, question: dict, turn: int, temperature: float, text: str, finish, tokens
) -> dict:
    return {
        "question_id": question["question_id"],
        "turn": turn,
        "category": question["category"],
        "contestant": contestant.spec,
        "label": contestant.label,
        "temperature": temperature,
        "answer": text,
        "finish_reason": finish,
        "new_tokens": tokens,
        "words": len(text.split()),
    }


def answer_locally(
    config: EvalConfig, contestant: Contestant, questions: list[dict], done: dict, appender: JSONLAppender
) -> dict:
    """Batched generation with transformers, turn by turn (turn 2 with the model's own turn-1 answer in the
    history): questions grouped by temperature, `batch_size` per generate call."""
    import torch
    from tqdm.auto import tqdm

    from baize.generation import generate_candidates
    from baize.models import load_chat_model

    chat = load_chat_model(
        contestant.spec,
        load_in_8bit=config.load_in_8bit,
        load_in_4bit=config.load_in_4bit,
        base=contestant.base,
        gguf_file=contestant.gguf_file,
        prompt_format=config.prompt_format,
        dtype=config.dtype,
    )
    # Prompted exactly as `baize chat` prompts (for original adapters: their demo's primer and turn tags).
    builder = chat.prompt_builder(system=local_system_prompt(config))
    stats = {"answered": 0}
    total = sum((q["question_id"], t) not in done for q in questions for t in range(1, len(q["turns"]) + 1))
    with tqdm(total=total, desc=f"answers: {contestant.label}", unit="turn") as bar:
        while todo := turns_to_answer(questions, done):
            by_temperature: dict[float, list[tuple[dict, int]]] = {}
            for question, turn in todo:
                by_temperature.setdefault(config.temperature(question["category"]), []).append((question, turn))
            for temperature, items in sorted(by_temperature.items()):
                for first in range(0, len(items), config.batch_size):
                    batch = items[first : first + config.batch_size]
                    ids = [f"{q['question_id']}/{turn}" if turn > 1 else q["question_id"] for q, turn in batch]
                    torch.manual_seed(batch_seed(config.seed, ids))
                    prompts = [builder.encode_messages(conversation(q, turn, done)) for q, turn in batch]
                    results = generate_candidates(
                        chat.model,
                        chat.tokenizer,
                        prompts,
                        1,
                        max_new_tokens=config.max_new_tokens,
                        temperature=temperature,
                        top_p=config.top_p,
                        share_prefill=False,  # one sample per prompt: nothing to share
                        stop_strings=builder.stop_strings,
                    )
                    for (question, turn), (answer,) in zip(batch, results, strict=True):
                        row = _answer_row(
                            contestant, question, turn, temperature, answer["text"], answer["finish_reason"],
                            answer["new_tokens"],
                        )  # fmt: skip
                        appender.append(row)
                        done[(question["question_id"], turn)] = row
                        stats["answered"] += 1
                    bar.update(len(batch))
    return stats


async def answer_at_endpoint(
    config: EvalConfig, contestant: Contestant, questions: list[dict], done: dict, appender: JSONLAppender
) -> dict:
    """Chat completions at answer_base_url, `judge_concurrency` at a time, turn by turn; a failed request is
    retried next run (and its later turns wait for it)."""
    from tqdm.auto import tqdm

    client = JudgeClient(
        config,
        model=contestant.endpoint_model,
        gguf_file=contestant.gguf_file,
        base_url=config.answer_base_url,
        api_key_env=config.answer_api_key_env,
    )
    stats = {"answered": 0, "request_errors": 0, "usage": new_usage()}
    bar = tqdm(desc=f"answers: {contestant.label}", unit="turn")
    failed: set[str] = set()
    builder = None
    if contestant.prompt_from:  # prompted exactly as a local model would be, through /v1/completions
        from baize.models import load_chat_model
        from baize.prompts import reply_text

        source = load_chat_model(contestant.prompt_from, prompt_format=config.prompt_format, without_weights=True)
        builder = source.prompt_builder(system=local_system_prompt(config))

    async def complete(question: dict, turn: int, temperature: float):
        if builder is None:
            return await client.complete(
                _messages(config, conversation(question, turn, done)),
                stats["usage"],
                temperature=temperature,
                max_tokens=config.max_new_tokens,
            )
        (choice,), _ = await client.endpoint.complete_text(
            client.model,
            builder.render_messages(conversation(question, turn, done)),
            usage=stats["usage"],
            max_tokens=config.max_new_tokens,
            stop=builder.stop_strings or None,
            temperature=temperature,
            top_p=config.top_p if temperature > 0 else None,
            seed=batch_seed(config.seed, [f"{question['question_id']}/{turn}"]),
        )
        choice.content = reply_text(choice.content, builder.stop_strings)
        return choice

    async def answer(question: dict, turn: int) -> None:
        temperature = config.temperature(question["category"])
        try:
            choice = await complete(question, turn, temperature)
        except Exception as error:  # openai.APIError after the client's retries
            stats["request_errors"] += 1
            stats["last_error"] = describe_error(error)
            failed.add(question["question_id"])
            logger.warning("answer: question %s turn %d failed: %s", question["question_id"], turn, error)
            return
        text = choice.content.strip()
        row = _answer_row(
            contestant, question, turn, temperature, text, choice.finish_reason, choice.completion_tokens
        )
        appender.append(row)
        done[(question["question_id"], turn)] = row
        stats["answered"] += 1
        bar.update(1)

    try:
        while todo := [(q, t) for q, t in turns_to_answer(questions, done) if q["question_id"] not in failed]:
            await gather_bounded((answer(q, t) for q, t in todo), config.judge_concurrency)
    finally:
        bar.close()
        await client.close()
    stats["usage"] = stats["usage"].as_dict()
    return stats


def answer_settings(config: EvalConfig, contestant: Contestant) -> dict:
    """What shapes a contestant's answers: who answers (with the weights' fingerprint) and how."""
    from baize.runs import fingerprint

    settings = {
        "contestant": contestant.spec,
        "weights": fingerprint(contestant.spec) if contestant.endpoint_model is None else None,
        "base": contestant.base,
        "gguf_file": contestant.gguf_file,
        "max_new_tokens": config.max_new_tokens,
        "top_p": config.top_p,
        "category_temperatures": config.category_temperatures,
        "default_temperature": config.default_temperature,
        "seed": config.seed,
        "system_prompt": config.system_prompt,
    }
    if contestant.prompt_from:  # only when set: answers made before this option keep their signature
        settings["prompt_from"] = contestant.prompt_from
    if contestant.endpoint_model is None:
        settings.update(
            prompt_format=config.prompt_format, guardrail=config.guardrail, dtype=config.dtype,
            load_in_8bit=config.load_in_8bit, load_in_4bit=config.load_in_4bit,
        )  # fmt: skip
    return settings


def answer_step(config: EvalConfig) -> dict:
    """Step 1: answers/<label>.jsonl for the model and the reference; questions already answered are skipped."""
    questions = load_questions(config)
    report = {}
    for contestant in contestants(config):
        path = answers_path(config, contestant)
        claim_step(path.parent, f"{contestant.label}.signature.json", answer_settings(config, contestant), [path],
                   overwrite=config.overwrite, what=f"answers of {contestant.label}")  # fmt: skip
        done = read_answers(config, contestant)
        wanted = sum(len(q["turns"]) for q in questions)
        already = sum((q["question_id"], t) in done for q in questions for t in range(1, len(q["turns"]) + 1))
        stats = {"questions": len(questions), "turns": wanted, "already_done": already}
        todo = wanted - already
        if todo:
            with JSONLAppender(answers_path(config, contestant), writer="`baize eval`") as appender:
                if contestant.endpoint_model is not None:
                    stats.update(asyncio.run(answer_at_endpoint(config, contestant, questions, done, appender)))
                else:
                    stats.update(answer_locally(config, contestant, questions, done, appender))
        logger.info("answer %s: %s", contestant.label, stats)
        report[contestant.label] = stats
        if stats.get("request_errors"):  # the answers that came are kept; a re-run asks only for the rest
            raise EndpointError(
                f"{contestant.label} at {describe_url(config.answer_base_url or config.judge_base_url)} failed "
                f"{stats['request_errors']} of {todo} answers ({stats['last_error']}): check answer_base_url "
                "and that the server is up, then re-run the same command"
            )
    return report


# --------------------------------------------------------------------------- step 2: judge


def order_outcome(first: float, second: float) -> str:
    return "win" if first > second else "loss" if first < second else "tie"


def question_outcome(reference_first: tuple | None, model_first: tuple | None) -> str | None:
    """The model's result on one question from the two orders: win or loss only when both orders agree;
    a disagreement (position bias) or an equal score is a tie; None when a verdict is missing."""
    if reference_first is None or model_first is None:
        return None
    orders = {order_outcome(reference_first[1], reference_first[0]), order_outcome(*model_first)}
    return orders.pop() if len(orders) == 1 and "tie" not in orders else "tie"


def pair_inputs(row: dict) -> tuple[str, str, str]:
    """(context, model answer, reference answer) as the pair judge sees one turn. Turn 1: the question and the two
    answers, as the paper asked. A later turn: each side's own conversation (its earlier answers differ), judged
    on its answer to the last question."""
    if row["turn"] == 1:
        return render_context([{"role": "user", "content": row["turns"][0]}]), row["model"], row["reference"]
    asked = "\n".join(f"{n}. {text}" for n, text in enumerate(row["turns"][: row["turn"]], 1))
    context = (
        f"The user asked these {row['turn']} questions in turn, each assistant answering in its own conversation:"
        f"\n{asked}\nJudge each assistant's answer to the LAST question, given its own earlier answers."
    )

    def side(role: str) -> str:
        return render_context(row["conversations"][role] + [{"role": "assistant", "content": row[role]}])

    return context, side("model"), side("reference")


async def judge_questions(config: EvalConfig, rows: list[dict], client: JudgeClient, cache: VerdictCache) -> dict:
    """Both orders for every (question, turn) (reference first = the paper's call), and with single_grading each
    answer on its own; verdicts come from the cache when they are there, and go into it as soon as they arrive."""
    from tqdm.auto import tqdm

    stats = {"judged": 0, "request_errors": 0, "parse_failures": 0, "parse_errors": {}, "usage": new_usage()}
    bar = tqdm(total=len(rows), desc="judge", unit="turn")

    async def cached_verdict(key: str, prompt: str, parse, reminder: str) -> dict:
        cached = cache.get(key)
        if cached is not None:
            return {**cached, "cached": True}
        batch_label.set(key[:16])  # with judge_batch: the custom_id starts with the verdict key
        result = await client.verdict(prompt, parse, reminder, stats["usage"])
        cache.put(key, result)
        return {**result, "cached": False}

    async def pair_verdict(row: dict, order: tuple[str, str]) -> dict:
        context, model_text, reference_text = pair_inputs(row)
        shown = {"model": model_text, "reference": reference_text}
        answers = [shown[order[0]], shown[order[1]]]
        # the turn-1 key is the question text, as before multi-turn evaluation: old caches keep working
        key = verdict_key(row["turns"][0] if row["turn"] == 1 else context, answers, config, JUDGE_TEMPLATE)
        prompt = JUDGE_TEMPLATE.format(context=context, answer_1=answers[0], answer_2=answers[1])
        return await cached_verdict(key, prompt, lambda text: parse_score_pair(text, SCALE), JUDGE_REMINDER)

    async def single_verdict(row: dict, role: str) -> dict:
        reference = row["reference_answer"]
        template = single_template(SCALE, reference=reference is not None)
        context = render_context(row["conversations"][role])
        key = verdict_key(context, [row[role], reference or ""], config, template)
        prompt = template.format(context=context, answer=row[role], reference=reference or "")
        return await cached_verdict(key, prompt, lambda text: parse_score(text, SCALE), SINGLE_REMINDER)

    async def judge(row: dict) -> None:
        calls = [pair_verdict(row, ("reference", "model"))]
        if config.pairwise:
            calls.append(pair_verdict(row, ("model", "reference")))
        if config.single_grading:
            calls += [single_verdict(row, "model"), single_verdict(row, "reference")]
        try:
            results = await client.endpoint.together(*calls)
        except Exception as error:  # openai.APIError after the client's retries: the next run asks again
            stats["request_errors"] += 1
            stats["last_error"] = describe_error(error)
            logger.warning("judge: question %s turn %d failed: %s", row["question_id"], row["turn"], error)
            return
        row["reference_first"] = results[0]
        row["model_first"] = results[1] if config.pairwise else None
        row["single"] = dict(zip(("model", "reference"), results[-2:], strict=True)) if config.single_grading else None
        stats["parse_failures"] += sum(r["value"] is None for r in results)
        for reason in (error for r in results if not r.get("cached") for error in r["errors"]):  # re-asks, by reason
            stats["parse_errors"][reason] = stats["parse_errors"].get(reason, 0) + 1
        stats["judged"] += 1
        bar.update(1)

    try:
        await client.endpoint.gather((judge(row) for row in rows), config.judge_concurrency)
    finally:
        bar.close()
    stats["usage"] = stats["usage"].as_dict()
    return stats


def judge_rows(config: EvalConfig, questions: list[dict], answers: dict[str, dict]) -> list[dict]:
    """One row per (question, turn) answered by both contestants: the answers, each side's conversation up to that
    turn (its own earlier answers) and the reference answer the single-answer judge may see."""
    rows = []
    for question in questions:
        for turn in range(1, len(question["turns"]) + 1):
            key = (question["question_id"], turn)
            if key not in answers["model"] or key not in answers["reference"]:
                continue
            references = question.get("references") or []
            guided = question["category"] in config.reference_guided_categories
            rows.append(
                {
                    **question,
                    "turn": turn,
                    "model": answers["model"][key]["answer"],
                    "reference": answers["reference"][key]["answer"],
                    "conversations": {
                        role: conversation(question, turn, answers[role]) for role in ("model", "reference")
                    },
                    "reference_answer": references[turn - 1] if guided and len(references) >= turn else None,
                }
            )
    return rows


def judge_step(config: EvalConfig) -> dict:
    """Step 2: judgements.jsonl, one row per (question, turn) with every verdict (scores, rationales, retries)."""
    model, reference = contestants(config)
    answers = {"model": read_answers(config, model), "reference": read_answers(config, reference)}
    questions = load_questions(config)
    rows = judge_rows(config, questions, answers)
    missing = sum(len(q["turns"]) for q in questions) - len(rows)
    if missing:
        logger.warning("judge: %d question turns lack an answer (run the answer step): not judged", missing)
    cache = VerdictCache(config.judge_cache or Path(config.output_dir) / "judge_cache.jsonl")

    async def run():
        client = JudgeClient(config)
        client.use_batches(cache.path.parent / JUDGE_BATCH_FOLDER)
        try:
            return await judge_questions(config, rows, client, cache), client.model
        finally:
            await client.close()

    try:
        stats, judge_model = asyncio.run(run())
    finally:
        cache.close()
    judged = [
        {
            "question_id": r["question_id"],
            "turn": r["turn"],
            "category": r["category"],
            "model": model.label,
            "reference": reference.label,
            "judge": config.judge_model,
            "reference_first": r["reference_first"],
            "model_first": r["model_first"],
            "outcome": question_outcome(
                r["reference_first"]["value"], r["model_first"]["value"] if r["model_first"] else None
            ),
            "single": r["single"],
            "reference_guided": r["reference_answer"] is not None,
        }
        for r in rows
        if "reference_first" in r
    ]
    write_jsonl_atomically(Path(config.output_dir) / JUDGEMENTS_FILE, judged)
    stats.update(missing_answers=missing, cache_hits=cache.hits, cache_misses=cache.misses, judge=judge_model)
    logger.info("judge: %s", stats)
    if stats["request_errors"]:  # every verdict that came is cached; a re-run asks only for the rest
        raise EndpointError(
            f"the judge at {describe_url(config.judge_base_url)} failed {stats['request_errors']} of {len(rows)} "
            f"question turns ({stats['last_error']}): check judge_base_url / judge_model and that the server is up, "
            "then re-run the same command"
        )
    return stats


# --------------------------------------------------------------------------- step 3: report


def bootstrap_interval(
    samples: list, statistic, *, resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of `statistic(resample)` over resamples (with replacement) of `samples`."""
    if not samples:
        return None
    rng = random.Random(seed)
    values = sorted(statistic(rng.choices(samples, k=len(samples))) for _ in range(resamples))
    tail = (1 - confidence) / 2
    low = values[int(tail * (resamples - 1))]
    high = values[int(round((1 - tail) * (resamples - 1)))]
    return low, high


def adjusted_win_rate(outcomes: list[str]) -> float:
    points = {"win": 1.0, "tie": 0.5, "loss": 0.0}
    return sum(points[o] for o in outcomes) / len(outcomes)


def relative_score(pairs: list[tuple[float, float]]) -> float:
    """The paper's metric: the model's total score as a % of the reference's; pairs are (model, reference)."""
    reference_total = sum(r for _, r in pairs)
    return 100.0 * sum(m for m, _ in pairs) / reference_total if reference_total else float("nan")


def _mean(values: list[float]) -> float | None:
    return round(statistics.mean(values), 1) if values else None


def summarize(config: EvalConfig, judged: list[dict], lengths: dict[str, dict[str, int]]) -> dict:
    """One block of numbers for a set of judged questions (a category, or all of them)."""
    paper, both_orders, outcomes = [], [], []
    for row in judged:
        first = row["reference_first"]["value"]
        if first is not None:
            paper.append((first[1], first[0]))
            second = (row.get("model_first") or {}).get("value")
            if second is not None:
                both_orders.append((first[1] + second[0], first[0] + second[1]))
        if row["outcome"] is not None:
            outcomes.append(row["outcome"])
    interval = {"resamples": config.bootstrap_samples, "confidence": config.confidence, "seed": config.seed}
    ci_paper = bootstrap_interval(paper, relative_score, **interval)
    ci_win = bootstrap_interval(outcomes, adjusted_win_rate, **interval)
    ids = [(row["question_id"], row.get("turn", 1)) for row in judged]
    single = {}
    graded = [row["single"] for row in judged if row.get("single")]
    if graded:
        for role in ("model", "reference"):
            scores = [g[role]["value"] for g in graded if g[role]["value"] is not None]
            ci = bootstrap_interval(scores, statistics.mean, **interval)
            single[f"{role}_single_score"] = _mean(scores)
            single[f"{role}_single_score_ci"] = [round(v, 2) for v in ci] if ci else None
        single["single_unparsed"] = sum(g[role]["value"] is None for g in graded for role in ("model", "reference"))
        single["reference_guided"] = sum(bool(row.get("reference_guided")) for row in judged)
    return {
        "questions": len(judged),
        "score_pct": round(relative_score(paper), 1) if paper else None,
        "score_pct_ci": [round(v, 1) for v in ci_paper] if ci_paper else None,
        "score_pct_both_orders": round(relative_score(both_orders), 1) if both_orders else None,
        "model_mean_score": _mean([m for m, _ in paper]),
        "reference_mean_score": _mean([r for _, r in paper]),
        "scored": len(paper),
        "win": outcomes.count("win"),
        "tie": outcomes.count("tie"),
        "loss": outcomes.count("loss"),
        # a verdict that did not parse (with `pairwise: false` there is no second verdict to miss)
        "unjudged": sum(
            row["reference_first"]["value"] is None or (row.get("model_first") or {"value": 0})["value"] is None
            for row in judged
        ),
        "adjusted_win_rate": round(adjusted_win_rate(outcomes), 3) if outcomes else None,
        "adjusted_win_rate_ci": [round(v, 3) for v in ci_win] if ci_win else None,
        "model_words": _mean([lengths["model"][i] for i in ids if i in lengths["model"]]),
        "reference_words": _mean([lengths["reference"][i] for i in ids if i in lengths["reference"]]),
        **single,
    }


def markdown_table(results: dict) -> str:
    model, reference = results["model"], results["reference"]
    confidence = int(results["confidence"] * 100)
    lines = [
        f"# {model} vs {reference}",
        "",
        f"Judge: `{results['judge']}`, scores 1-10. **Score %**: {model}'s total as a % of {reference}'s, reference "
        f"shown first (the Baize paper's metric). **Win/tie/loss**: asked in both orders; a win or loss needs both "
        f"orders to agree; **unjudged**: a verdict did not parse. **Adj. win rate** = (win + tie/2) / judged. Intervals: {confidence}% bootstrap over "
        "questions. **Words**: mean answer length.",
        "",
        f"| category | n | score % | {confidence}% CI | score % (both orders) | win | tie | loss | unjudged "
        f"| adj. win rate | {confidence}% CI | words {model} | words {reference} |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    head = lines[-2:]  # the score table's header and separator, repeated for every turn
    lines += score_rows(results)
    for turn, blocks in (results.get("turns") or {}).items():
        lines += ["", f"## Turn {turn}", "", *head, *score_rows(blocks)]
    if results["overall"].get("model_single_score") is not None:
        lines += single_grading_table(results)
    lines += [
        "",
        f"Unparsed verdicts: {results['unparsed_verdicts']} of {results['verdicts']} (counted as unjudged, never as "
        "a score).",
    ]
    cut = results.get("cut_at_max_new_tokens")
    if cut:
        lines += [
            "",
            f"Answers cut at max_new_tokens ({cut['max_new_tokens']}, the same budget for both): {model} "
            f"{cut['model']}, {reference} {cut['reference']}.",
        ]
    return "\n".join(lines) + "\n"


def _fmt(value, digits=1):
    return "–" if value is None else f"{value:.{digits}f}"


def _ci(values, digits=1):
    return "–" if values is None else f"{values[0]:.{digits}f}–{values[1]:.{digits}f}"


def score_rows(results: dict) -> list[str]:
    fmt, ci = _fmt, _ci
    lines = []
    for name, block in [*results["categories"].items(), ("**overall**", results["overall"])]:
        lines.append(
            f"| {name} | {block['questions']} | {fmt(block['score_pct'])} | {ci(block['score_pct_ci'])} "
            f"| {fmt(block['score_pct_both_orders'])} | {block['win']} | {block['tie']} | {block['loss']} "
            f"| {block['unjudged']} | {fmt(block['adjusted_win_rate'], 3)} | {ci(block['adjusted_win_rate_ci'], 3)} "
            f"| {fmt(block['model_words'])} | {fmt(block['reference_words'])} |"
        )
    return lines


def single_grading_table(results: dict) -> list[str]:
    """Single-answer grades (1-10) per category and turn, MT-Bench style."""
    model, reference = results["model"], results["reference"]
    turns = list(results.get("turns") or {"1": results})
    confidence = int(results["confidence"] * 100)
    head = " | ".join(f"turn {t} {who}" for t in turns for who in (model, reference))
    lines = [
        "",
        "## Single-answer grading",
        "",
        f"Each answer graded on its own, 1-10, by `{results['judge']}` (MT-Bench's single-answer grading; the "
        f"question's reference answer shown in {', '.join(results['reference_guided_categories'])}). Mean grade; "
        f"overall with its {confidence}% bootstrap interval.",
        "",
        f"| category | {head} | all turns {model} | all turns {reference} |",
        "|---|" + "---|" * (2 * len(turns) + 2),
    ]
    blocks = {t: (results.get("turns") or {"1": results})[t] for t in turns}
    for name in [*results["categories"], "overall"]:
        cells = []
        for t in turns:
            block = blocks[t]["overall"] if name == "overall" else blocks[t]["categories"].get(name, {})
            cells += [_fmt(block.get("model_single_score")), _fmt(block.get("reference_single_score"))]
        pooled = results["overall"] if name == "overall" else results["categories"][name]
        both = [_fmt(pooled.get("model_single_score")), _fmt(pooled.get("reference_single_score"))]
        if name == "overall":
            both = [
                f"{b} ({_ci(pooled.get(f'{role}_single_score_ci'), 2)})"
                for b, role in zip(both, ("model", "reference"), strict=True)
            ]
        lines.append(f"| {'**overall**' if name == 'overall' else name} | {' | '.join(cells + both)} |")
    return lines


def plot_charts(results: dict, folder: Path) -> list[str]:
    """Two bar charts with a bar per category: the paper's score % and the pairwise win/tie/loss shares."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    names = [*results["categories"], "overall"]
    blocks = [*results["categories"].values(), results["overall"]]
    model, reference = results["model"], results["reference"]
    written = []

    def mark_unjudged(ax, missing: list[bool]) -> None:
        # An empty slot would read as a score of 0: say that the judge gave no usable verdict there.
        for x, empty in enumerate(missing):
            if empty:
                ax.text(x, 0.5, "no verdict", transform=ax.get_xaxis_transform(), ha="center", va="center",
                        rotation=90, color="grey")  # fmt: skip

    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names)), 4))
    scores = [b["score_pct"] or 0 for b in blocks]
    errors = [
        [s - b["score_pct_ci"][0] if b["score_pct_ci"] else 0 for s, b in zip(scores, blocks, strict=True)],
        [b["score_pct_ci"][1] - s if b["score_pct_ci"] else 0 for s, b in zip(scores, blocks, strict=True)],
    ]
    ax.bar(names, scores, yerr=errors, capsize=3, color=["tab:blue"] * (len(names) - 1) + ["tab:orange"])
    ax.axhline(100, color="grey", linestyle="--", linewidth=1)
    mark_unjudged(ax, [b["score_pct"] is None for b in blocks])
    ax.set_ylabel(f"score, % of {reference}")
    ax.set_title(f"{model}: judge score relative to {reference}")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(folder / "scores_by_category.png", dpi=120)
    plt.close(fig)
    written.append("scores_by_category.png")

    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names)), 4))
    bottom = [0.0] * len(names)
    for outcome, color in (("win", "tab:green"), ("tie", "tab:gray"), ("loss", "tab:red")):
        shares = [b[outcome] / max(1, b["win"] + b["tie"] + b["loss"]) for b in blocks]
        ax.bar(names, shares, bottom=bottom, color=color, label=outcome)
        bottom = [x + y for x, y in zip(bottom, shares, strict=True)]
    mark_unjudged(ax, [b["win"] + b["tie"] + b["loss"] == 0 for b in blocks])
    ax.set_ylabel("share of judged questions")
    ax.set_ylim(0, 1)
    ax.set_title(f"{model} vs {reference}, both orders (disagreement = tie)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")  # outside: never over a bar
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(folder / "pairwise_by_category.png", dpi=120)
    plt.close(fig)
    written.append("pairwise_by_category.png")
    return written


def plot_turn_charts(results: dict, folder: Path) -> list[str]:
    """Per turn, a bar per category: single-answer grades of both contestants (with single_grading), else the
    paper's score %. Only for multi-turn sets or single grading."""
    turns = results.get("turns") or ({"1": results} if results["overall"].get("model_single_score") else {})
    if not turns:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for turn, blocks in turns.items():
        names = [*blocks["categories"], "overall"]
        rows = [*blocks["categories"].values(), blocks["overall"]]
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names)), 4))
        positions = range(len(names))
        if results["overall"].get("model_single_score") is not None:
            for offset, role in ((-0.2, "model"), (0.2, "reference")):
                values = [b.get(f"{role}_single_score") or 0 for b in rows]
                ax.bar([p + offset for p in positions], values, width=0.4, label=results[role])
            ax.set_ylim(0, SCALE)
            ax.set_ylabel(f"mean single-answer grade (1-{SCALE})")
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
        else:
            ax.bar(names, [b["score_pct"] or 0 for b in rows])
            ax.axhline(100, color="grey", linestyle="--", linewidth=1)
            ax.set_ylabel(f"score, % of {results['reference']}")
        ax.set_xticks(list(positions), names, rotation=30)
        ax.set_title(f"{results['model']} vs {results['reference']}: turn {turn}, by category")
        fig.tight_layout()
        name = f"turn{turn}_by_category.png"
        fig.savefig(folder / name, dpi=120)
        plt.close(fig)
        written.append(name)
    return written


def report_step(config: EvalConfig) -> dict:
    """Step 3: results.json, results.md and the charts, from judgements.jsonl and the answer files."""
    folder = Path(config.output_dir)
    judged = read_jsonl(folder / JUDGEMENTS_FILE)
    if not judged:
        raise UsageError(f"{folder / JUDGEMENTS_FILE}: no judgements yet (run the judge step first)")
    model, reference = contestants(config)
    answers = {role: read_answers(config, c) for role, c in (("model", model), ("reference", reference))}
    lengths = {role: {i: row["words"] for i, row in rows.items()} for role, rows in answers.items()}
    # Answers cut at max_new_tokens: a reference cut more often than the model is judged on unfinished text.
    cut = {role: sum(row.get("finish_reason") == "length" for row in rows.values()) for role, rows in answers.items()}

    def blocks(rows: list[dict]) -> dict:
        categories: dict[str, list[dict]] = {}
        for row in rows:
            categories.setdefault(row["category"], []).append(row)
        return {
            "categories": {name: summarize(config, group, lengths) for name, group in categories.items()},
            "overall": summarize(config, rows, lengths),
        }

    turns = sorted({row.get("turn", 1) for row in judged})
    verdicts = [
        v
        for row in judged
        for v in (row["reference_first"], row.get("model_first"), *(row.get("single") or {}).values())
        if v is not None
    ]
    results = {
        "model": model.label,
        "model_spec": model.spec,
        "reference": reference.label,
        "reference_spec": reference.spec,
        "judge": judged[0]["judge"],
        "confidence": config.confidence,
        **blocks(judged),  # all turns together
        "turns": {str(t): blocks([r for r in judged if r.get("turn", 1) == t]) for t in turns}
        if len(turns) > 1
        else None,
        "verdicts": len(verdicts),
        "unparsed_verdicts": sum(v["value"] is None for v in verdicts),
        "reference_guided_categories": config.reference_guided_categories,
        "cut_at_max_new_tokens": {**cut, "max_new_tokens": config.max_new_tokens},
        "config": {k: v for k, v in asdict(config).items() if "api_key" not in k},
    }
    (folder / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "results.md").write_text(markdown_table(results), encoding="utf-8")
    charts = plot_charts(results, folder) + plot_turn_charts(results, folder)
    overall = results["overall"]
    score = "no verdicts" if overall["score_pct"] is None else f"score {overall['score_pct']}% of {reference.label}"
    win_rate = "–" if overall["adjusted_win_rate"] is None else overall["adjusted_win_rate"]
    logger.info(
        "report: %s, win/tie/loss/unjudged %d/%d/%d/%d, adjusted win rate %s, %d of %d verdicts unparsed -> %s",
        score, overall["win"], overall["tie"], overall["loss"], overall["unjudged"], win_rate,
        results["unparsed_verdicts"], results["verdicts"], folder / "results.md",
    )  # fmt: skip
    return {
        "overall": overall,
        "turns": {turn: blocks["overall"] for turn, blocks in (results["turns"] or {}).items()} or None,
        "unparsed_verdicts": results["unparsed_verdicts"],
        "verdicts": results["verdicts"],
        "files": ["results.json", "results.md", *charts],
    }


# --------------------------------------------------------------------------- entry point


def main(config: EvalConfig) -> dict:
    steps = {"answer": answer_step, "judge": judge_step, "report": report_step}
    todo = list(steps) if config.step == "all" else [config.step]
    return {step: steps[step](config) for step in todo}


def cli(argv: list[str] | None = None) -> None:
    configure_logging()
    with one_line_errors("baize eval"):
        summary = main(parse_args(argv))
    print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    cli()
