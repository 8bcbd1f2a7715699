"""Step 1, answer: the model and the reference answer every question turn through the one sampler
(baize.llm.sampling) -> answers/<label>.jsonl, appended as they are done; turn 2 is asked with the contestant's own
turn-1 answer. A contestant is a local adapter or model (loaded like `baize chat`, batched generation) or
`openai:MODEL` at an OpenAI-compatible endpoint (chat completions, or the local builder's prompt text at
/v1/completions with `*_prompt_from`)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from baize.evaluate.config import OPENAI_PREFIX, EvalConfig
from baize.evaluate.questions import conversation, load_questions, turns_to_answer
from baize.io.errors import UsageError
from baize.io.jsonl import JSONLAppender, read_jsonl
from baize.io.runs import claim_step, fingerprint
from baize.llm.endpoint import describe_url
from baize.llm.generation import SamplingSettings
from baize.llm.preflight import check_endpoints
from baize.llm.roles import EndpointRole
from baize.llm.sampling import EndpointSampler, LocalSampler, Sample, Sampled, SampleRequest, sample_all
from baize.modeling.loading import load_chat_model, resolve_model_name
from baize.prompts import GUARDRAIL_SYSTEM_PROMPT

logger = logging.getLogger("baize.eval")


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


def local_system_prompt(config: EvalConfig):
    """The system text of a local model: the configured one, the guardrail, else (`...`) the one it was trained
    with (ChatModel.prompt_builder's default, as `baize chat`)."""
    if config.system_prompt is not None:
        return config.system_prompt or None
    return GUARDRAIL_SYSTEM_PROMPT if config.guardrail else ...


def request_for(config: EvalConfig, question: dict, turn: int, done: dict, chat_system: bool) -> SampleRequest:
    """One question turn as a sampler request: its id keys the seed ("Q" for turn 1, "Q/2" after), its
    temperature is its category's. A chat endpoint gets the configured system text as a message; a local model
    or a builder-prompted endpoint gets it from the builder."""
    messages = conversation(question, turn, done)
    if chat_system and config.system_prompt:
        messages = [{"role": "system", "content": config.system_prompt}, *messages]
    request_id = f"{question['question_id']}/{turn}" if turn > 1 else question["question_id"]
    return SampleRequest(request_id, messages, 1, config.temperature(question["category"]))


def answer_row(contestant: Contestant, question: dict, turn: int, temperature: float, answer: Sample) -> dict:
    return {
        "question_id": question["question_id"],
        "turn": turn,
        "category": question["category"],
        "contestant": contestant.spec,
        "label": contestant.label,
        "temperature": temperature,
        "answer": answer.text,
        "finish_reason": answer.finish_reason,
        "new_tokens": answer.new_tokens,
        "words": len(answer.text.split()),
    }


class Answers:
    """A contestant's answer file being filled: each sampled turn appended and marked done (its later turns wait
    for it)."""

    def __init__(self, contestant: Contestant, questions: list[dict], done: dict, appender: JSONLAppender, bar):
        self.contestant, self.done, self.appender, self.bar = contestant, done, appender, bar
        self.asked: dict[str, tuple[dict, int]] = {}
        self.answered = 0

    def requests(self, config: EvalConfig, questions: list[dict], chat_system: bool, skip=()) -> list:
        todo = [(q, t) for q, t in turns_to_answer(questions, self.done) if q["question_id"] not in skip]
        requests = [request_for(config, question, turn, self.done, chat_system) for question, turn in todo]
        self.asked.update({request.id: item for request, item in zip(requests, todo, strict=True)})
        return requests

    def write(self, sampled: Sampled) -> None:
        question, turn = self.asked[sampled.request.id]
        row = answer_row(self.contestant, question, turn, sampled.request.temperature, sampled.samples[0])
        self.appender.append(row)
        self.done[(question["question_id"], turn)] = row
        self.answered += 1
        self.bar.update(1)


def contestant_sampler(config: EvalConfig, contestant: Contestant):
    """(the sampler, whether the system text goes as a message): a local contestant loaded like `baize chat` and
    prompted exactly as it prompts (for original adapters: their demo's primer and turn tags), batched; an
    endpoint contestant at answer_base_url, `judge_concurrency` turns at a time, through chat completions or, with
    `*_prompt_from`, the local builder's prompt text at /v1/completions."""
    if contestant.endpoint_model is None:
        chat = load_chat_model(
            contestant.spec, load_in_8bit=config.load_in_8bit, load_in_4bit=config.load_in_4bit,
            base=contestant.base, gguf_file=contestant.gguf_file, prompt_format=config.prompt_format,
            dtype=config.dtype
        )  # fmt: skip
        builder = chat.prompt_builder(system=local_system_prompt(config))
        return LocalSampler(chat, builder, batch_size=config.batch_size), False
    endpoint = EndpointRole.of(config, "answer", fallback="judge").endpoint(config)
    builder = None
    if contestant.prompt_from:  # prompted exactly as a local model would be, through /v1/completions
        source = load_chat_model(contestant.prompt_from, prompt_format=config.prompt_format, without_weights=True)
        builder = source.prompt_builder(system=local_system_prompt(config))
    model = resolve_model_name(contestant.endpoint_model, contestant.gguf_file)
    return EndpointSampler([endpoint], model, builder=builder), builder is None


def answer_contestant(config: EvalConfig, contestant: Contestant, questions: list[dict], answers: Answers) -> dict:
    """Every turn still to answer, turn by turn through the one sampler call; a question whose request failed is
    retried by the next run (and its later turns wait for it)."""
    sampler, chat_system = contestant_sampler(config, contestant)
    settings = SamplingSettings(config.max_new_tokens, config.default_temperature, config.top_p, config.seed)

    def next_turns(failed: set[str]) -> list[SampleRequest]:
        skip = {answers.asked[request_id][0]["question_id"] for request_id in failed}
        return answers.requests(config, questions, chat_system, skip=skip)

    where = describe_url(EndpointRole.of(config, "answer", fallback="judge").base_url)
    failing = (f"{contestant.label} at {where}", "answers", "answer_base_url")
    stats = sample_all(sampler, next_turns, settings, answers.write, concurrency=config.judge_concurrency,
                       failing=failing)  # fmt: skip
    stats.pop("failed")
    return {"answered": answers.answered, **stats}


def answer_settings(config: EvalConfig, contestant: Contestant) -> dict:
    """What shapes a contestant's answers: who answers (with the weights' fingerprint) and how."""
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
        "prompt_from": contestant.prompt_from,
    }
    if contestant.endpoint_model is None:
        settings.update(
            prompt_format=config.prompt_format, guardrail=config.guardrail, dtype=config.dtype,
            load_in_8bit=config.load_in_8bit, load_in_4bit=config.load_in_4bit,
        )  # fmt: skip
    return settings


def preflight(config: EvalConfig, answering: list[Contestant], judge: bool) -> None:
    """Before minutes of local answering: the endpoints of the contestants that answer there, and the judge when
    this run goes on to judge, have their keys and answer."""
    endpoints = []
    if any(contestant.endpoint_model is not None for contestant in answering):
        endpoints += EndpointRole.of(config, "answer", fallback="judge").preflight("answer endpoint")
    if judge:
        endpoints += EndpointRole.of(config, "judge").preflight("judge")
    if endpoints:
        check_endpoints(endpoints)


def answer_step(config: EvalConfig, preflight_judge: bool = False) -> dict:
    """Step 1: answers/<label>.jsonl for the model and the reference; questions already answered are skipped.
    Before answering, the answer endpoint (and with `preflight_judge`, the judge the run goes on to) must answer."""
    from tqdm.auto import tqdm

    questions = load_questions(config)
    report = {}
    plan = []
    for contestant in contestants(config):
        path = answers_path(config, contestant)
        claim_step(path.parent, f"{contestant.label}.signature.json", answer_settings(config, contestant), [path],
                   overwrite=config.overwrite, what=f"answers of {contestant.label}",
                   resume_state=["../judge-batches/**", "../plan.json"])  # fmt: skip
        done = read_answers(config, contestant)
        wanted = sum(len(q["turns"]) for q in questions)
        already = sum((q["question_id"], t) in done for q in questions for t in range(1, len(q["turns"]) + 1))
        plan.append((contestant, path, done, wanted, already))
    if any(wanted > already for *_, wanted, already in plan) and not config.skip_preflight:
        preflight(
            config, [contestant for contestant, *_, wanted, already in plan if wanted > already], preflight_judge
        )
    for contestant, path, done, wanted, already in plan:
        stats = {"questions": len(questions), "turns": wanted, "already_done": already}
        todo = wanted - already
        if todo:
            bar = tqdm(total=todo, desc=f"answers: {contestant.label}", unit="turn")
            with bar, JSONLAppender(path, writer="`baize eval`") as appender:
                answers = Answers(contestant, questions, done, appender, bar)
                stats.update(answer_contestant(config, contestant, questions, answers))
        logger.info("answer %s: %s", contestant.label, stats)
        report[contestant.label] = stats
    return report
