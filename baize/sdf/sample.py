"""Step 1, sample: the v1 model answers every prompt N times through the one sampler (baize.llm.sampling), in this
process or at `vllm serve` replicas -> candidates.jsonl, one line per prompt, appended as it is done."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from baize.data.seeds import load_table, normalize, select_seeds
from baize.io.jsonl import JSONLAppender, read_jsonl
from baize.io.runs import claim_step
from baize.llm.generation import SamplingSettings
from baize.llm.preflight import check_endpoints
from baize.llm.ratelimit import RateLimiter
from baize.llm.roles import EndpointRole
from baize.llm.sampling import EndpointSampler, LocalSampler, Sampled, SampleRequest, sample_all
from baize.modeling.loading import load_chat_model
from baize.sdf.config import CANDIDATES_FILE, SAMPLE_SIGNATURE, SDFConfig, outputs_after, sample_settings

logger = logging.getLogger("baize.sdf")
# Never pushed: the judge's Batch API state, the rounds' gate answers and verdicts, a plan, each round's folder.
RESUME_STATE = [
    "judge-batches/**",
    "judge_cache.jsonl",
    "gate_answers.jsonl",
    "gate_cache.jsonl",
    "plan.json",
    "round-*/**",
    "serving.json",
    "serve-logs/**",
]


def context_id(messages: list[dict]) -> str:
    key = "\x1e".join(f"{m['role']}\x1f{normalize(m['content'])}" for m in messages)
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def load_prompts(config: SDFConfig) -> list[dict]:
    """Prompt rows {id, messages}: chat contexts from a `messages` column, else one user turn per question.

    Questions go through baize.data.seeds like collection seeds (Hub ids, local txt/jsonl, dedup, limit)."""
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
        rows = rows[config.prompts_offset :]
        return rows[: config.limit] if config.limit is not None else rows
    seeds, stats = select_seeds(table, config.prompts_column)
    logger.info("Prompts: %s", stats.as_dict())
    seeds = seeds[config.prompts_offset :]  # SDF rounds: each round its own slice of the prompts
    seeds = seeds[: config.limit] if config.limit is not None else seeds
    return [{"id": s.id, "messages": [{"role": "user", "content": s.text}]} for s in seeds]


def load_v1(config: SDFConfig, without_weights: bool = False):
    """The v1 model for sampling (adapter on its base, or a full model), as `baize chat` loads it; only its
    tokenizer, format and system prompt when the sampling is done at endpoints."""
    return load_chat_model(
        config.model_name_or_path, load_in_8bit=config.load_in_8bit, base=config.base_model,
        gguf_file=config.gguf_file, dtype=config.dtype, without_weights=without_weights
    )  # fmt: skip


def with_system(messages: list[dict], system: str | None) -> list[dict]:
    """The context with the system text the model was trained under first, unless it has a system turn already."""
    if system is None or messages[0]["role"] == "system":
        return messages
    return [{"role": "system", "content": system}, *messages]


def endpoint_sampler(config: SDFConfig, chat, builder) -> EndpointSampler:
    """The sampling servers, round robin under one limiter, prompted with v1's builder at /v1/completions."""
    # vLLM replicas: no provider limits (rpm/tpm are the judge's)
    endpoints = EndpointRole.of(config, "sample").endpoints(config, RateLimiter())
    # The prompt text already holds its BOS where the template writes one; a tokenizer that adds BOS by default
    # (LLaMA's) would add a second at the server, so tell vLLM not to (`add_special_tokens`, a vLLM extension
    # that `transformers serve` refuses; SmolLM2's tokenizer adds nothing, so nothing is sent for it).
    probe = builder.render_messages([{"role": "user", "content": "hi"}])
    adds_tokens = len(chat.tokenizer(probe)["input_ids"]) != len(builder.encode(probe))
    extra_body = {"add_special_tokens": builder.prompt_format == "original"} if adds_tokens else None
    model = config.sample_model or str(config.model_name_or_path)
    return EndpointSampler(endpoints, model, builder=builder, extra_body=extra_body)


def sample_step(config: SDFConfig, preflight_judge: bool = False, serve: Callable[[], object] | None = None) -> dict:
    """Step 1: candidates.jsonl, one line per prompt with its N candidates; prompts already there are skipped.
    Before sampling, `serve` starts the sampling servers (SDF rounds with serve_command), and they (and with
    `preflight_judge`, the judge the run goes on to) must answer."""
    from tqdm.auto import tqdm

    folder = Path(config.output_dir)
    out = folder / CANDIDATES_FILE
    later = outputs_after(folder, "sample")
    claim_step(folder, SAMPLE_SIGNATURE, sample_settings(config), [out, *later], overwrite=config.overwrite,
               what="SDF candidates", resume_state=RESUME_STATE)  # fmt: skip
    prompts = load_prompts(config)
    done = {row["id"] for row in read_jsonl(out)}
    todo = [p for p in prompts if p["id"] not in done]
    stats = {"prompts": len(prompts), "already_done": len(prompts) - len(todo), "sampled": 0, "too_long": 0}
    if not todo:
        logger.info("sample: all %d prompts already sampled", len(prompts))
        return stats
    if serve is not None:  # only when there is something to sample: a finished step starts no server
        serve()
    if not config.skip_preflight:  # before minutes of sampling: the servers this run will call answer
        endpoints = EndpointRole.of(config, "sample").preflight("sampling server")
        if preflight_judge:
            endpoints += EndpointRole.of(config, "judge").preflight("judge")
        if endpoints:
            check_endpoints(endpoints)

    chat = load_v1(config, without_weights=bool(config.sample_base_urls))
    builder = chat.prompt_builder()
    start = time.perf_counter()
    requests: list[SampleRequest] = []
    rows: dict[str, dict] = {}
    for prompt in todo:
        # the v2 rows then carry the system text the answers were sampled under (train/infer parity)
        prompt = {**prompt, "messages": with_system(prompt["messages"], builder.system)}
        if len(builder.encode_messages(prompt["messages"])) > config.max_prompt_tokens:
            stats["too_long"] += 1
        else:
            requests.append(SampleRequest(prompt["id"], prompt["messages"], config.num_candidates))
            rows[prompt["id"]] = prompt
    sampler_record = {
        "model": str(config.model_name_or_path),
        "prompt_format": chat.prompt_format,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "max_new_tokens": config.max_new_tokens,
    }
    settings = SamplingSettings(config.max_new_tokens, config.temperature, config.top_p, config.seed)
    if config.sample_base_urls:
        sampler = endpoint_sampler(config, chat, builder)
        sampler_record["endpoint_model"] = sampler.model
    else:
        sampler = LocalSampler(chat, builder, batch_size=config.batch_size, share_prefill=config.share_prefill)
    bar = tqdm(total=len(requests), desc="sample", unit="prompt")
    with bar, JSONLAppender(out, writer="`baize sdf`") as appender:

        def write(sampled: Sampled) -> None:
            appender.append({**rows[sampled.request.id], "prompt_tokens": sampled.prompt_tokens,
                             "candidates": [s.as_dict() for s in sampled.samples], "sampler": sampler_record})  # fmt: skip
            stats["sampled"] += 1
            bar.update(1)

        failing = ("sampling", "prompts", "sample_base_urls / sample_model")
        result = sample_all(sampler, requests, settings, write, concurrency=config.sample_concurrency, failing=failing)
    result.pop("failed")
    stats.update(result)
    elapsed = time.perf_counter() - start
    stats["candidates_per_second"] = round(stats["sampled"] * config.num_candidates / elapsed, 2)
    return stats
