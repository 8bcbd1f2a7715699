"""Baize v2: Self-Distillation with Feedback (SDF, arXiv 2304.01196 section 3.3), as four resumable steps.

    python -m baize.sdf --config recipes/baize-smol/sdf.yaml                      # all steps
    python -m baize.sdf --config recipes/baize-smol/sdf.yaml --step judge         # one step
    python -m baize.sdf --config recipes/baize-v2-7b/sdf.yaml -- --max_steps 10   # after `--`: SFT overrides

1. sample  the v1 model (base + v1 adapter, or a full model) answers every prompt N times with the Baize
           chat template and the system prompt v1 was trained with -> `candidates.jsonl`. Several prompts x N
           sequences per forward pass, the prompt prefill computed once per prompt and shared by its N samples;
           every candidate stops at a turn tag (none is ever kept) and records its finish reason and tokens.
2. judge   an LLM judge (any OpenAI-compatible endpoint, `openai` client) scores every candidate ->
           `judged.jsonl`. `pointwise` (the paper): one 1-100 score per candidate for helpfulness,
           relevance, accuracy and level of detail. `pairwise`: king of the hill, every challenger vs the
           current best in BOTH orders (position bias cancels). Every score and rationale is kept.
3. select  the best candidate per prompt (argmax, ties -> lowest candidate index; `min_score` threshold)
           -> `selected.jsonl` (chat rows for SFT) and best-vs-worst `preferences.jsonl` (TRL DPO format).
4. train   v1 is merged into its base (`v1-merged/`, frozen) and a NEW LoRA is trained on top with
           `baize.train` and the SFT recipe named by `train_config` -> the v2 adapter, whose card names the
           v1 parent, the judge, N and the score statistics.

Every step appends JSONL lines durably (`baize.jsonl.JSONLAppender`: write + fdatasync) and skips prompts already
in its output file, so re-running the same command continues where it stopped. sample and judge record the
settings that shape their outputs (`sample_signature.json`, `judge_signature.json`): a re-run with other settings
is refused (or, with `--overwrite true`, that step and the ones after it start over), never mixed. A judge that
cannot be reached, or fails some prompts, makes the run exit non-zero naming its URL; select refuses to work from
candidates that are not all judged unless `--allow_partial true`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from baize.arguments import parse_recipe
from baize.batch import batch_label
from baize.cards import card_base_model, how_to_path, model_reference, model_title
from baize.endpoint import EndpointError, describe_error, describe_url, gather_bounded
from baize.errors import BaizeError, UsageError, configure_logging, one_line_errors
from baize.generation import batch_seed, generate_candidates
from baize.jsonl import JSONLAppender, read_jsonl, write_jsonl_atomically
from baize.judge import (
    JUDGE_BATCH_FOLDER,
    JudgeArguments,
    JudgeClient,
    new_usage,
    pair_reminder,
    pair_template,
    parse_score,
    parse_score_pair,
    render_context,
)
from baize.models import LINEAGE_FILE, hub_model_id
from baize.runs import claim_step

logger = logging.getLogger("baize.sdf")

STEPS = ("sample", "judge", "select", "train", "all")
CANDIDATES_FILE = "candidates.jsonl"
JUDGED_FILE = "judged.jsonl"
SELECTED_FILE = "selected.jsonl"
PREFERENCES_FILE = "preferences.jsonl"
SAMPLE_SIGNATURE = "sample_signature.json"
JUDGE_SIGNATURE = "judge_signature.json"


@dataclass
class SDFConfig(JudgeArguments):
    """The judge endpoint's fields (judge_model, judge_base_url, ...) are baize.judge.JudgeArguments'."""

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
        metadata={"help": "The v1 model: a LoRA adapter folder / Hub id (loaded on its base), or a full model."},
    )
    base_model: str | None = field(
        default=None, metadata={"help": "Base of the v1 adapter (unset: the one in its adapter_config.json)."}
    )
    gguf_file: str | None = field(default=None, metadata={"help": "GGUF file of the base (e.g. for pkg:NAME)."})
    dtype: str | None = field(
        default=None,
        metadata={"help": "float32 / bfloat16 / float16 for sampling (unset: bf16 on GPU, fp32 on CPU)."},
    )
    load_in_8bit: bool = field(default=False, metadata={"help": "Sample from an int8 base (bitsandbytes)."})
    # ------------------------------------------------------------------ prompts
    prompts_path: str | None = field(
        default=None,
        metadata={
            "help": "Prompts: Hub dataset id or local .txt/.jsonl/.parquet file. A `messages` column gives "
            "multi-turn contexts (a trailing assistant turn is dropped); otherwise `prompts_column` is one "
            "user question. De-duplicated like collection seeds."
        },
    )
    prompts_name: str | None = field(default=None, metadata={"help": "Dataset config name (Hub datasets)."})
    prompts_split: str = field(default="train", metadata={"help": "Dataset split."})
    prompts_column: str = field(
        default="text", metadata={"help": "Column with the question (dotted paths like questions.text.0 work)."}
    )
    messages_column: str = field(default="messages", metadata={"help": "Column with chat contexts, if present."})
    limit: int | None = field(default=None, metadata={"help": "Use at most this many prompts (after dedup)."})
    # ------------------------------------------------------------------ sampling
    num_candidates: int = field(default=4, metadata={"help": "N: answers sampled per prompt (paper: 4)."})
    max_new_tokens: int = field(default=512, metadata={"help": "Longest answer, in tokens."})
    max_prompt_tokens: int = field(
        default=512, metadata={"help": "Prompts (rendered context) longer than this are skipped and counted."}
    )
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (Baize demo: 1.0)."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling (Baize demo: 0.95)."})
    batch_size: int = field(
        default=8, metadata={"help": "Prompts per forward pass (each with N sequences: batch_size x N rows)."}
    )
    share_prefill: bool = field(
        default=True,
        metadata={"help": "Run each prompt's prefill once and copy its KV cache to the N samples (transformers)."},
    )
    seed: int = field(default=42, metadata={"help": "Sampling seed (per batch, derived from the prompt ids)."})
    sample_base_urls: list[str] | None = field(
        default=None,
        metadata={
            "help": "Sample at OpenAI-compatible servers instead of in this process: one or several base URLs "
            "(`vllm serve` replicas, prompts spread over them). The prompt text is built here by the shared prompt "
            "builder and sent to /v1/completions with n, stop (the turn tags), max_tokens, temperature, top_p and "
            "seed. The v1 must be what they serve (a merged v1, or `--enable-lora --lora-modules NAME=V1`)."
        },
    )
    sample_model: str | None = field(
        default=None,
        metadata={"help": "The model name at sample_base_urls (the merged folder, or the LoRA module's NAME)."},
    )
    sample_api_key_env: str = field(
        default="OPENAI_API_KEY", metadata={"help": "Variable holding the sampling servers' key (vLLM: any)."}
    )
    sample_concurrency: int = field(default=16, metadata={"help": "Prompts in flight at once, over all servers."})
    # ------------------------------------------------------------------ judge (endpoint fields: JudgeArguments)
    judge_mode: str = field(
        default="pointwise",
        metadata={
            "help": "pointwise: a 1-100 score per candidate (paper); pairwise: challenger vs best, both orders.",
            "choices": ["pointwise", "pairwise"],
        },
    )
    # ------------------------------------------------------------------ select
    min_score: float = field(
        default=50.0, metadata={"help": "Drop prompts whose best candidate scores below this (1-100 scale)."}
    )
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
    merged_dir: str | None = field(
        default=None, metadata={"help": "Where v1 is merged into its base (unset: OUTPUT_DIR/v1-merged)."}
    )
    merge_dtype: str = field(default="auto", metadata={"help": "dtype of the merged v1 (auto keeps the base's)."})
    # ------------------------------------------------------------------ re-runs
    overwrite: bool = field(
        default=False,
        metadata={"help": "Start a step over when its settings changed (deletes its outputs and the later steps')."},
    )
    allow_partial: bool = field(
        default=False, metadata={"help": "Let select use a judged.jsonl that misses some sampled prompts."}
    )

    def __post_init__(self):
        if self.num_candidates < 2:
            raise ValueError("num_candidates must be >= 2 (SDF picks the best of several)")


def parse_args(argv: list[str] | None = None) -> tuple[SDFConfig, list[str]]:
    """`--config FILE [--key value ...] [-- SFT overrides]` -> (config, SFT override argv)."""
    from trl import TrlParser

    argv = list(sys.argv[1:] if argv is None else argv)
    train_argv: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, train_argv = argv[:cut], argv[cut + 1 :]
    parser = TrlParser(
        (SDFConfig,),
        prog="baize sdf",
        description="Baize v2 Self-Distillation with Feedback: sample N answers from the v1 model, score them "
        "with an LLM judge, keep the best, train a new LoRA on top of v1. "
        "baize sdf --config recipes/baize-smol/sdf.yaml [--step sample|judge|select|train|all] [-- SFT overrides]",
    )
    (config,) = parse_recipe(parser, argv)
    return config, train_argv


# --------------------------------------------------------------------------- prompts


def context_id(messages: list[dict]) -> str:
    from baize.seeds import normalize

    key = "\x1e".join(f"{m['role']}\x1f{normalize(m['content'])}" for m in messages)
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def load_prompts(config: SDFConfig) -> list[dict]:
    """Prompt rows {id, messages}: chat contexts from a `messages` column, else one user turn per question.

    Questions go through baize.seeds like collection seeds (Hub ids, local txt/jsonl, dedup, limit)."""
    from baize.seeds import load_table, select_seeds

    table = load_table(config.prompts_path, config.prompts_name, config.prompts_split, key="prompts_path")
    if config.messages_column in table.column_names:
        rows, seen = [], set()
        for messages in table[config.messages_column]:
            messages = [{"role": m["role"], "content": m["content"]} for m in messages]
            while messages and messages[-1]["role"] == "assistant":
                messages.pop()
            if not messages or messages[-1]["role"] != "user":
                continue
            key = context_id(messages)
            if key not in seen:
                seen.add(key)
                rows.append({"id": key, "messages": messages})
        return rows[: config.limit] if config.limit is not None else rows
    seeds, stats = select_seeds(table, config.prompts_column, limit=config.limit)
    logger.info("Prompts: %s", stats.as_dict())
    return [{"id": s.id, "messages": [{"role": "user", "content": s.text}]} for s in seeds]


# --------------------------------------------------------------------------- step 1: sample


def load_v1(config: SDFConfig, without_weights: bool = False):
    """The v1 model for sampling (adapter on its base, or a full model), as `baize chat` loads it; only its
    tokenizer, format and system prompt when the sampling is done at endpoints."""
    from baize.models import load_chat_model

    return load_chat_model(
        config.model_name_or_path,
        load_in_8bit=config.load_in_8bit,
        base=config.base_model,
        gguf_file=config.gguf_file,
        dtype=config.dtype,
        without_weights=without_weights,
    )


def render_prompt(chat, messages: list[dict]) -> list[int]:
    """Prompt token ids exactly as `baize chat` builds them: the Baize template with the system prompt v1 was
    trained with, or for the original adapters the demo's system text, primer and BOS."""
    return chat.prompt_builder().encode_messages(messages)


def sample_settings(config: SDFConfig) -> dict:
    names = (
        "model_name_or_path base_model gguf_file dtype load_in_8bit prompts_path prompts_name prompts_split "
        "prompts_column messages_column limit num_candidates max_new_tokens max_prompt_tokens temperature top_p "
        "batch_size seed sample_model"
    ).split()
    # Not the URLs: another replica, or a restarted server, samples the same model.
    return {**{name: getattr(config, name) for name in names}, "at_endpoint": bool(config.sample_base_urls)}


def judge_settings(config: SDFConfig) -> dict:
    # The model and how it is asked; not its URL (a restarted server or another replica serves the same judge).
    names = "judge_model judge_gguf_file judge_temperature judge_max_tokens judge_parse_retries judge_mode"
    templates = hashlib.sha256((POINTWISE_TEMPLATE + PAIRWISE_TEMPLATE).encode()).hexdigest()[:16]
    return {**{name: getattr(config, name) for name in names.split()}, "templates": templates}


def sample_step(config: SDFConfig) -> dict:
    """Step 1: candidates.jsonl, one line per prompt with its N candidates; prompts already there are skipped."""
    import torch

    folder = Path(config.output_dir)
    out = folder / CANDIDATES_FILE
    later = [folder / name for name in (JUDGED_FILE, SELECTED_FILE, PREFERENCES_FILE, JUDGE_SIGNATURE)]
    claim_step(folder, SAMPLE_SIGNATURE, sample_settings(config), [out, *later], overwrite=config.overwrite,
               what="SDF candidates")  # fmt: skip
    prompts = load_prompts(config)
    done = {row["id"] for row in read_jsonl(out)}
    todo = [p for p in prompts if p["id"] not in done]
    stats = {"prompts": len(prompts), "already_done": len(prompts) - len(todo), "sampled": 0, "too_long": 0}
    if not todo:
        logger.info("sample: all %d prompts already sampled", len(prompts))
        return stats

    chat = load_v1(config, without_weights=bool(config.sample_base_urls))
    builder = chat.prompt_builder()
    start = time.perf_counter()
    encoded = []
    for prompt in todo:
        if builder.system is not None and prompt["messages"][0]["role"] != "system":
            # the v2 rows then carry the system text the answers were sampled under (train/infer parity)
            prompt = {**prompt, "messages": [{"role": "system", "content": builder.system}, *prompt["messages"]]}
        ids = builder.encode_messages(prompt["messages"])
        if len(ids) > config.max_prompt_tokens:
            stats["too_long"] += 1
        else:
            encoded.append((prompt, ids))
    from tqdm.auto import tqdm

    sampler = {
        "model": str(config.model_name_or_path),
        "prompt_format": chat.prompt_format,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "max_new_tokens": config.max_new_tokens,
    }
    if config.sample_base_urls:
        with JSONLAppender(out, writer="`baize sdf`") as appender:
            stats.update(asyncio.run(sample_at_endpoints(config, chat, builder, encoded, sampler, appender)))
        elapsed = time.perf_counter() - start
        stats["candidates_per_second"] = round(stats["sampled"] * config.num_candidates / elapsed, 2)
        if stats.get("request_errors"):  # what came is kept; the re-run asks only for the rest
            raise EndpointError(
                f"sampling failed for {stats['request_errors']} of {len(encoded)} prompts ({stats['last_error']}): "
                "check sample_base_urls / sample_model and that the servers are up, then re-run the same command"
            )
        return stats
    bar = tqdm(total=len(encoded), desc="sample", unit="prompt")
    with bar, JSONLAppender(out, writer="`baize sdf`") as appender:
        for first in range(0, len(encoded), config.batch_size):
            batch = encoded[first : first + config.batch_size]
            torch.manual_seed(batch_seed(config.seed, [p["id"] for p, _ in batch]))
            results = generate_candidates(
                chat.model,
                chat.tokenizer,
                [ids for _, ids in batch],
                config.num_candidates,
                max_new_tokens=config.max_new_tokens,
                temperature=config.temperature,
                top_p=config.top_p,
                share_prefill=config.share_prefill,
                stop_strings=builder.stop_strings,
            )
            for (prompt, ids), candidates in zip(batch, results, strict=True):
                appender.append(
                    {
                        **prompt,
                        "prompt_tokens": len(ids),
                        "candidates": candidates,
                        "sampler": sampler,
                    }
                )
                stats["sampled"] += 1
            bar.update(len(batch))
    elapsed = time.perf_counter() - start
    stats["candidates_per_second"] = round(stats["sampled"] * config.num_candidates / elapsed, 2)
    return stats


async def sample_at_endpoints(config: SDFConfig, chat, builder, encoded: list, sampler: dict, appender) -> dict:
    """N candidates per prompt from /v1/completions at one or several servers (round robin), `sample_concurrency`
    prompts in flight, one shared rate limiter. Each prompt has its own seed (from the run's seed and its id), so
    a resumed run asks the same. A candidate's token count is its text re-tokenised, plus the stop or EOS token
    that ended it."""
    from tqdm.auto import tqdm

    from baize.endpoint import Endpoint, RateLimiter
    from baize.judge import new_usage
    from baize.prompts import reply_text

    limiter = RateLimiter()
    endpoints = [Endpoint(url, config.sample_api_key_env, limiter=limiter, max_retries=config.max_retries,
                          timeout=config.timeout) for url in config.sample_base_urls]  # fmt: skip
    model = config.sample_model or str(config.model_name_or_path)
    stats = {"sampled": 0, "request_errors": 0, "usage": new_usage(), "per_server": [0] * len(endpoints)}
    bar = tqdm(total=len(encoded), desc="sample", unit="prompt")

    # The prompt text already holds its BOS where the template writes one; a tokenizer that adds BOS by default
    # (LLaMA's) would add a second at the server, so tell vLLM not to (`add_special_tokens`, a vLLM extension
    # that `transformers serve` refuses; SmolLM2's tokenizer adds nothing, so nothing is sent for it).
    probe = builder.render_messages([{"role": "user", "content": "hi"}])
    adds_tokens = len(chat.tokenizer(probe)["input_ids"]) != len(builder.encode(probe))
    extra_body = {"add_special_tokens": builder.prompt_format == "original"} if adds_tokens else None

    async def sample(index: int, prompt: dict, ids: list[int]) -> None:
        server = index % len(endpoints)
        seed = batch_seed(config.seed, [prompt["id"]])
        completions = []
        try:
            while len(completions) < config.num_candidates:  # one call, or one per candidate where `n` is ignored
                more, _ = await endpoints[server].complete_text(
                    model,
                    builder.render_messages(prompt["messages"]),
                    n=config.num_candidates - len(completions),
                    usage=stats["usage"],
                    max_tokens=config.max_new_tokens,
                    stop=builder.stop_strings or None,
                    temperature=config.temperature,
                    top_p=config.top_p,
                    seed=seed + len(completions),
                    extra_body=extra_body,
                )
                completions += more
        except Exception as error:  # openai.APIError after the client's retries: the next run asks again
            stats["request_errors"] += 1
            stats["last_error"] = describe_error(error)
            logger.warning("sample: prompt %s failed at %s: %s", prompt["id"], config.sample_base_urls[server], error)
            return
        candidates = []
        for completion in completions:
            text = reply_text(completion.content, builder.stop_strings)
            ended = completion.finish_reason == "stop"
            tokens = len(chat.tokenizer(completion.content, add_special_tokens=False)["input_ids"]) + ended
            candidates.append({"text": text, "finish_reason": "stop" if ended else "length", "new_tokens": tokens})
        appender.append({**prompt, "prompt_tokens": len(ids), "candidates": candidates,
                         "sampler": {**sampler, "endpoint_model": model}})  # fmt: skip
        stats["sampled"] += 1
        stats["per_server"][server] += 1
        bar.update(1)

    try:
        await gather_bounded(
            (sample(i, prompt, ids) for i, (prompt, ids) in enumerate(encoded)), config.sample_concurrency
        )
    finally:
        bar.close()
        for endpoint in endpoints:
            await endpoint.close()
    stats["usage"] = stats["usage"].as_dict()
    return stats


# --------------------------------------------------------------------------- step 2: judge

POINTWISE_TEMPLATE = """[Conversation]
{context}

[The Start of Assistant's Answer]
{answer}
[The End of Assistant's Answer]

[System]
We would like to request your feedback on the performance of an AI assistant in response to the user's last \
message in the conversation displayed above.
Please rate the helpfulness, relevance, accuracy, and level of detail of the response. The assistant receives an \
overall score on a scale of 1 to 100, where a higher score indicates better overall performance.
Please first output a single line containing only the score. In the subsequent line, please provide a \
comprehensive explanation of your evaluation."""
PAIRWISE_TEMPLATE = pair_template(scale=100)
POINTWISE_REMINDER = "Please answer again: the first line must contain only the score, an integer from 1 to 100."
PAIRWISE_REMINDER = pair_reminder(scale=100)


def parse_pointwise(text: str | None) -> tuple[float | None, str | None]:
    return parse_score(text, scale=100)


def parse_pairwise(text: str | None) -> tuple[tuple[float, float] | None, str | None]:
    return parse_score_pair(text, scale=100)


class Judge(JudgeClient):
    """The SDF judge: pointwise 1-100 scores or king-of-the-hill pairwise comparisons of the candidates."""

    async def pointwise(self, row: dict, usage: dict) -> dict:
        context = render_context(row["messages"])
        verdicts = await self.endpoint.together(
            *[
                self.verdict(
                    POINTWISE_TEMPLATE.format(context=context, answer=c["text"]),
                    parse_pointwise,
                    POINTWISE_REMINDER,
                    usage,
                )
                for c in row["candidates"]
            ]
        )
        return {"scores": [v["value"] for v in verdicts], "verdicts": verdicts}

    async def compare(self, context: str, a: str, b: str, usage: dict) -> dict:
        """a vs b asked in both orders; each side's score is its mean over the orders that parsed."""
        ab, ba = await self.endpoint.together(
            self.verdict(
                PAIRWISE_TEMPLATE.format(context=context, answer_1=a, answer_2=b),
                parse_pairwise,
                PAIRWISE_REMINDER,
                usage,
            ),
            self.verdict(
                PAIRWISE_TEMPLATE.format(context=context, answer_1=b, answer_2=a),
                parse_pairwise,
                PAIRWISE_REMINDER,
                usage,
            ),
        )
        ab_scores, ba_scores = ab["value"] or (None, None), ba["value"] or (None, None)
        a_scores = [s for s in (ab_scores[0], ba_scores[1]) if s is not None]  # a is Assistant 1, then 2
        b_scores = [s for s in (ab_scores[1], ba_scores[0]) if s is not None]
        return {
            "order_ab": ab,
            "order_ba": ba,
            "a_score": statistics.mean(a_scores) if a_scores else None,
            "b_score": statistics.mean(b_scores) if b_scores else None,
        }

    async def pairwise(self, row: dict, usage: dict) -> dict:
        """King of the hill: candidate 0 starts as best; each challenger replaces it only by scoring strictly
        higher (mean over both orders). 2(N-1) calls. A candidate's score is its mean over its comparisons."""
        context = render_context(row["messages"])
        texts = [c["text"] for c in row["candidates"]]
        best, comparisons = 0, []
        seen: dict[int, list[float]] = {i: [] for i in range(len(texts))}
        for challenger in range(1, len(texts)):
            result = await self.compare(context, texts[best], texts[challenger], usage)
            result.update(a=best, b=challenger)
            for index, key in ((best, "a_score"), (challenger, "b_score")):
                if result[key] is not None:
                    seen[index].append(result[key])
            if None not in (result["a_score"], result["b_score"]) and result["b_score"] > result["a_score"]:
                best = challenger
            result["winner"] = best
            comparisons.append(result)
        scores = [statistics.mean(v) if v else None for v in seen.values()]
        return {"scores": scores, "winner": best, "comparisons": comparisons}


async def judge_rows(config: SDFConfig, rows: list[dict], appender: JSONLAppender | None, judge: Judge) -> dict:
    """Judge rows with `judge_concurrency` prompts in flight; each judged row is appended as soon as it is done.
    A prompt whose requests fail (after the client's retries) is not written: the next run retries it."""
    stats = {
        "judged": 0,
        "request_errors": 0,
        "unscored_candidates": 0,
        "parse_errors": {},
        "usage": new_usage(),
    }
    from tqdm.auto import tqdm

    judged: list[dict] = []
    bar = tqdm(total=len(rows), desc="judge", unit="prompt")

    async def judge_one(row: dict) -> None:
        batch_label.set(str(row["id"]))  # with judge_batch: its requests' custom_ids start with the prompt id
        usage = new_usage()
        try:
            if config.judge_mode == "pointwise":
                result = await judge.pointwise(row, usage)
            else:
                result = await judge.pairwise(row, usage)
        except Exception as error:  # openai.APIError after retries, timeouts: retried on the next run
            stats["request_errors"] += 1
            stats["last_error"] = describe_error(error)
            logger.warning("judge: prompt %s failed: %s", row["id"], error)
            return
        finally:
            stats["usage"].add(usage)
            bar.update(1)
        out = {
            **row,
            "scores": result.pop("scores"),
            "judge": {"model": config.judge_model, "mode": config.judge_mode, "usage": usage.as_dict(), **result},
        }
        for verdict in _verdicts(out["judge"]):
            for error in verdict["errors"]:
                stats["parse_errors"][error] = stats["parse_errors"].get(error, 0) + 1
        stats["unscored_candidates"] += sum(s is None for s in out["scores"])
        if appender is not None:
            appender.append(out)
        judged.append(out)
        stats["judged"] += 1

    try:
        await judge.endpoint.gather((judge_one(row) for row in rows), config.judge_concurrency)
    finally:
        bar.close()
    stats["rows"] = judged
    stats["usage"] = stats["usage"].as_dict()
    return stats


def _verdicts(judge_record: dict) -> list[dict]:
    if judge_record["mode"] == "pointwise":
        return judge_record["verdicts"]
    return [c[key] for c in judge_record["comparisons"] for key in ("order_ab", "order_ba")]


def judge_step(config: SDFConfig) -> dict:
    """Step 2: judged.jsonl = candidates + `scores` + the full judge record (rationales, retries, usage)."""
    folder = Path(config.output_dir)
    later = [folder / name for name in (SELECTED_FILE, PREFERENCES_FILE)]
    claim_step(folder, JUDGE_SIGNATURE, judge_settings(config), [folder / JUDGED_FILE, *later],
               overwrite=config.overwrite, what="SDF verdicts")  # fmt: skip
    candidates = read_jsonl(folder / CANDIDATES_FILE)
    done = {row["id"] for row in read_jsonl(folder / JUDGED_FILE)}
    todo = [row for row in candidates if row["id"] not in done]
    if not todo:
        logger.info("judge: all %d sampled prompts already judged", len(candidates))
        return {"judged": 0, "already_done": len(done)}

    async def run():
        judge = Judge(config)
        judge.use_batches(folder / JUDGE_BATCH_FOLDER)
        try:
            with JSONLAppender(folder / JUDGED_FILE, writer="`baize sdf`") as appender:
                return await judge_rows(config, todo, appender, judge)
        finally:
            await judge.close()

    stats = asyncio.run(run())
    stats.pop("rows")
    stats["already_done"] = len(done)
    logger.info("judge: %s", stats)
    if stats["request_errors"]:  # what was judged is kept; a re-run asks only for the rest
        raise EndpointError(
            f"the judge at {describe_url(config.judge_base_url)} failed {stats['request_errors']} of {len(todo)} "
            f"prompts ({stats['last_error']}): check judge_base_url / judge_model and that the server is up, "
            "then re-run the same command"
        )
    return stats


# --------------------------------------------------------------------------- step 3: select


def best_and_worst(row: dict) -> tuple[int | None, int | None]:
    """Best: the pairwise winner, else the argmax score (ties -> lowest index). Worst: argmin (ties -> highest
    index). None when no candidate was scored."""
    scored = [(s, i) for i, s in enumerate(row["scores"]) if s is not None]
    if not scored:
        return None, None
    winner = row.get("judge", {}).get("winner")
    best = (
        winner
        if winner is not None and row["scores"][winner] is not None
        else min(scored, key=lambda x: (-x[0], x[1]))[1]
    )
    worst = min(scored, key=lambda x: (x[0], -x[1]))[1]
    return best, worst


def _describe(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "mean": round(statistics.mean(values), 2),
        "median": round(statistics.median(values), 2),
        "min": min(values),
        "max": max(values),
    }


def select_step(config: SDFConfig) -> dict:
    """Step 3: selected.jsonl (chat rows: context + best answer) and preferences.jsonl (best vs worst).

    Deterministic and cheap, so both files are rewritten (atomically) from judged.jsonl on every run."""
    folder = Path(config.output_dir)
    judged = read_jsonl(folder / JUDGED_FILE)
    sampled = {row["id"] for row in read_jsonl(folder / CANDIDATES_FILE)}
    missing = len(sampled - {row["id"] for row in judged})
    if missing and not config.allow_partial:
        raise BaizeError(
            f"{missing} of {len(sampled)} sampled prompts have no verdict in {folder / JUDGED_FILE}: run the judge "
            f"step (judge at {describe_url(config.judge_base_url)}), or pass --allow_partial true to select from "
            "the judged ones"
        )
    selected, preferences = [], []
    stats = {"judged_prompts": len(judged), "selected": 0, "below_min_score": 0, "unscored": 0, "preferences": 0}
    best_scores, all_scores = [], []
    for row in judged:
        all_scores += [s for s in row["scores"] if s is not None]
        best, worst = best_and_worst(row)
        if best is None:
            stats["unscored"] += 1
            continue
        best_score = row["scores"][best]
        best_scores.append(best_score)
        answer = row["candidates"][best]["text"]
        if best_score < config.min_score or not answer:
            stats["below_min_score"] += 1
        else:
            selected.append(
                {
                    "messages": [*row["messages"], {"role": "assistant", "content": answer}],
                    "seed": row["messages"][-1]["content"],
                    "source": "sdf",
                    "teacher": row["judge"]["model"],
                    "mode": "sdf",
                    "prompt_id": row["id"],
                    "candidate": best,
                    "score": best_score,
                }
            )
        worst_answer = row["candidates"][worst]["text"]
        if best != worst and best_score - row["scores"][worst] >= config.min_margin and answer != worst_answer:
            preferences.append(
                {
                    "prompt": row["messages"],
                    "chosen": [{"role": "assistant", "content": answer}],
                    "rejected": [{"role": "assistant", "content": worst_answer}],
                    "prompt_id": row["id"],
                    "score_chosen": best_score,
                    "score_rejected": row["scores"][worst],
                }
            )
    write_jsonl_atomically(folder / SELECTED_FILE, selected)
    write_jsonl_atomically(folder / PREFERENCES_FILE, preferences)
    stats.update(
        selected=len(selected),
        preferences=len(preferences),
        best_score=_describe(best_scores),
        all_scores=_describe(all_scores),
        min_score=config.min_score,
    )
    (folder / "select_summary.json").write_text(json.dumps(stats, indent=2) + "\n")
    logger.info("select: %s", stats)
    return stats


# --------------------------------------------------------------------------- step 4: train


def is_adapter(name_or_path: str) -> bool:
    from baize.hub import pull

    return (Path(pull(name_or_path)) / "adapter_config.json").exists()


def merged_v1(config: SDFConfig) -> Path:
    """v1 folded into its base (once, cached in `merged_dir`): the frozen starting point of the v2 LoRA.

    A full v1 model (no adapter) is used as it is."""
    from baize.merge import merge_adapter

    if not is_adapter(config.model_name_or_path):
        from baize.hub import pull

        return Path(pull(config.model_name_or_path))
    target = Path(config.merged_dir or Path(config.output_dir) / "v1-merged")
    if not (target / "config.json").exists():
        logger.info("Merging v1 %s into its base -> %s", config.model_name_or_path, target)
        merge_adapter(
            config.model_name_or_path,
            target,
            base=config.base_model,
            gguf_file=config.gguf_file,
            dtype=config.merge_dtype,
            overwrite=True,
        )
    return target


def train_step(config: SDFConfig, train_argv: list[str] | None = None) -> dict:
    """Step 4: a NEW LoRA (v2) trained with `baize.train` on selected.jsonl, on top of the merged, frozen v1."""
    from trl.scripts.utils import DatasetConfig

    from baize.train import main as train_main
    from baize.train import parse_args as parse_train

    if not config.train_config:
        raise BaizeError(
            "train_config is not set: name the SFT recipe for the v2 LoRA (e.g. recipes/X/sdf-train.yaml)"
        )
    folder = Path(config.output_dir)
    selected = folder / SELECTED_FILE
    if not selected.exists():
        raise BaizeError(f"{selected} is missing: run the select step first")
    if not selected.read_text().strip():
        summary = folder / "select_summary.json"
        stats = json.loads(summary.read_text()) if summary.exists() else {}
        raise BaizeError(
            f"the select step chose no answer to train on: of {stats.get('judged_prompts', '?')} judged prompts, "
            f"{stats.get('unscored', '?')} have no parsable score and {stats.get('below_min_score', '?')} are below "
            f"min_score {config.min_score} ({summary}); point judge_model / judge_base_url at a capable judge, or "
            "lower min_score"
        )
    script_args, training_args, model_args, dataset_args = parse_train(
        ["--config", config.train_config, *(train_argv or [])]
    )
    v1_id = hub_model_id(config.model_name_or_path)
    if training_args.push_to_hub and not v1_id:  # before the training, not after it
        raise UsageError(
            f"push_to_hub: the v2 adapter is loaded on top of its v1, which others must be able to download: push "
            f"v1 first (baize push {config.model_name_or_path} --repo-id YOU/NAME) and set model_name_or_path to "
            "that repo id"
        )
    base = merged_v1(config)
    model_args.model_name_or_path, model_args.gguf_file = str(base), None
    dataset_args.datasets = [DatasetConfig(path="json", data_files=str(selected))]
    # Pushed below, once the lineage and the v2 card section are written, not by the SFT run.
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    summary = train_main(script_args, training_args, model_args, dataset_args, recipe=config.train_config)
    select = (
        json.loads((folder / "select_summary.json").read_text()) if (folder / "select_summary.json").exists() else {}
    )
    lineage = {
        # What loads the v2 adapter: its v1 (a Hub id when it has one) merged into v1's base, then v2 on top.
        "v1_parent": v1_id or config.model_name_or_path,
        "v1_base": card_base_model(str(base)),
        "merged_v1": base.name,
        "judge_model": hub_model_id(config.judge_model) or config.judge_model,
        "judge_mode": config.judge_mode,
        "num_candidates": config.num_candidates,
        "min_score": config.min_score,
        "selection": select,
    }
    out = Path(training_args.output_dir)
    (out / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2) + "\n")
    card = out / "README.md"
    if card.exists() and SDF_CARD_HEADING not in card.read_text():  # a re-run of a finished step adds nothing
        text = card.read_text()
        how_to = text.find("## How to use")  # the SFT card's how-to loads base + adapter: wrong for a v2
        text = text[:how_to] if how_to >= 0 else text
        card.write_text(text.rstrip() + "\n" + sdf_card_section(lineage, how_to_path(out)))
    result = {"train": summary, "lineage": lineage}
    if push_to_hub and training_args.process_index == 0:
        from baize.hub import push_adapter

        pushed = push_adapter(
            out,
            training_args.hub_model_id,
            private=training_args.hub_private_repo,
            revision=getattr(training_args, "hub_revision", None),
            base_model=lineage["v1_base"],
        )
        result["pushed"] = pushed.url
        logger.info("Pushed v2 to %s", pushed.url)
    return result


SDF_CARD_HEADING = "## Baize v2: Self-Distillation with Feedback"


def sdf_card_section(lineage: dict, v2_ref: str) -> str:
    select = lineage["selection"]
    best, every = select.get("best_score", {}), select.get("all_scores", {})
    v1_id = hub_model_id(lineage["v1_parent"]) or model_title(lineage["v1_parent"])
    v1 = model_reference(lineage["v1_parent"])
    v1_base = model_reference(lineage["v1_base"]) if lineage["v1_base"] else "its base"
    base_id = lineage["v1_base"] or "BASE_MODEL"
    judge_id = hub_model_id(lineage["judge_model"]) or lineage["judge_model"]
    judge = f"[{judge_id}](https://huggingface.co/{judge_id})" if hub_model_id(judge_id) else f"`{judge_id}`"
    return f"""
## Baize v2: Self-Distillation with Feedback

This adapter is the **v2 LoRA** of [Baize](https://arxiv.org/abs/2304.01196) section 3.3. The v1 parent
{v1} (base {v1_base}) sampled {lineage["num_candidates"]} answers per prompt;
the judge {judge} ({lineage["judge_mode"]}) scored each one 1-100 for helpfulness, relevance,
accuracy and level of detail; the best answer per prompt (score >= {lineage["min_score"]}) was used for SFT.

The v1 LoRA is frozen: it was merged into its base (PEFT `merge_and_unload`) and this NEW LoRA was trained on
top, so h = W0 x + B1 A1 x + B2 A2 x as in the paper.

## How to use

`baize chat {v2_ref}` (and `baize eval`, `baize web`) load it that way by themselves, from `{LINEAGE_FILE}`. By hand:

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base = AutoModelForCausalLM.from_pretrained("{base_id}")
v1 = PeftModel.from_pretrained(base, "{v1_id}").merge_and_unload()  # the frozen v1
model = PeftModel.from_pretrained(v1, "{v2_ref}")  # this v2 LoRA on top
tokenizer = AutoTokenizer.from_pretrained("{v2_ref}")  # the Baize chat template
inputs = tokenizer.apply_chat_template(
    [{{"role": "user", "content": "How do I undo the last git commit?"}}],
    add_generation_prompt=True, return_tensors="pt", return_dict=True,
)
output = model.generate(**inputs, max_new_tokens=256, do_sample=True, top_p=0.95, temperature=1.0)
print(tokenizer.decode(output[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```

| | value |
|---|---|
| prompts judged | {select.get("judged_prompts")} |
| prompts selected (best >= min score) | {select.get("selected")} |
| below min score / unscored | {select.get("below_min_score")} / {select.get("unscored")} |
| best-candidate score mean / median / min / max | {best.get("mean")} / {best.get("median")} / {best.get("min")} / {best.get("max")} |
| all-candidate score mean (n) | {every.get("mean")} ({every.get("count")}) |
| preference pairs exported (best vs worst) | {select.get("preferences")} |
"""


# --------------------------------------------------------------------------- entry point


def main(config: SDFConfig, train_argv: list[str] | None = None) -> dict:
    configure_logging()
    Path(config.output_dir).mkdir(parents=True, exist_ok=True)
    steps = STEPS[:-1] if config.step == "all" else (config.step,)
    results = {}
    for step in steps:
        if step == "sample":
            results[step] = sample_step(config)
        elif step == "judge":
            results[step] = judge_step(config)
        elif step == "select":
            results[step] = select_step(config)
        elif step == "train":
            results[step] = train_step(config, train_argv)
    return results


def cli(argv: list[str] | None = None) -> None:
    with one_line_errors("baize sdf"):
        config, train_argv = parse_args(argv)
        results = main(config, train_argv)
    print(json.dumps({k: v for k, v in results.items() if k != "train"}, indent=2, default=str), flush=True)


if __name__ == "__main__":
    cli(sys.argv[1:])
