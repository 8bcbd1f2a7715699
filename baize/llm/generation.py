"""The one generation path for local models: a streamed single reply (chat, the web demo) and N sampled
continuations for each of several prompts in one batch (SDF sampling, eval answering). Both honour the prompt
format's stop strings and report what really ended each sequence and how many tokens it generated."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

from baize.prompts import TURN_TAGS, Prompt, cut_at_stop, printable_prefix, reply_text

DEFAULT_MAX_NEW_TOKENS = 512
DEFAULT_TOP_P = 0.95
DEFAULT_TEMPERATURE = 1.0
DEFAULT_SEED = 42


@dataclass
class SamplingSettings:
    """How to sample: the one settings type, from a stage's config, the chat's flags or the web demo's sliders down
    to the backend (`generate` here, or an endpoint's request). Temperature 0 is greedy decoding."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float = DEFAULT_TOP_P
    seed: int = DEFAULT_SEED
    repetition_penalty: float = 1.0

    def generate_kwargs(self) -> dict:
        kwargs = {"max_new_tokens": int(self.max_new_tokens), "do_sample": self.temperature > 0}
        if self.temperature > 0:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if self.repetition_penalty != 1.0:
            kwargs["repetition_penalty"] = self.repetition_penalty
        return kwargs


@dataclass
class Reply:
    text: str  # the answer, cut before any turn tag, stripped
    token_ids: list[int]  # generated tokens (stop string / EOS included)
    finish: str  # "eos", "stop_string", "length" or "interrupted"
    raw_text: str = field(default="", repr=False)


def _event_stop(event: threading.Event):
    """A StoppingCriteria that stops generation once `event` is set (Ctrl-C in the chat)."""
    import torch
    from transformers import StoppingCriteria

    class EventStop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device)

    return EventStop()


def generate_reply(
    chat,  # a baize.modeling.loading.ChatModel (llm/ stands below modeling/: duck-typed, no import)
    prompt: Prompt,
    settings: SamplingSettings | None = None,
    *,
    stop_strings: list[str] | None = None,
    on_text=None,
    interrupt: threading.Event | None = None,
    **generate_kwargs,
) -> Reply:
    """Generate the AI turn for `prompt`. With `on_text`, text is streamed to it as it comes (never a turn tag).

    Stops at EOS, at a stop string (the turn tags, except in the native format) or after max_new_tokens;
    `generate_kwargs` go to `model.generate` (e.g. `no_repeat_ngram_size=4`, a `logits_processor`)."""
    import torch
    from transformers import StoppingCriteriaList, TextIteratorStreamer

    settings = settings or SamplingSettings()
    tokenizer, model = chat.tokenizer, chat.model
    stops = TURN_TAGS if stop_strings is None and chat.prompt_format != "native" else (stop_strings or [])
    device = next(model.parameters()).device
    input_ids = torch.tensor([prompt.input_ids], device=device)
    eos = [tokenizer.eos_token_id]
    config_eos = getattr(model.generation_config, "eos_token_id", None)
    eos += [
        e for e in (config_eos if isinstance(config_eos, list) else [config_eos]) if e is not None and e not in eos
    ]
    interrupt = interrupt or threading.Event()
    kwargs = dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
        stopping_criteria=StoppingCriteriaList([_event_stop(interrupt)]),
        **settings.generate_kwargs(),
    )
    kwargs.update(generate_kwargs)
    if stops:
        kwargs.update(stop_strings=stops, tokenizer=tokenizer)

    if on_text is None:
        with torch.no_grad():
            output = model.generate(**kwargs)
    else:
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict = {}

        def run():
            try:
                with torch.no_grad():
                    result["output"] = model.generate(**kwargs, streamer=streamer)
            except BaseException as error:  # surfaced in the caller's thread
                result["error"] = error
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        text, shown = "", 0
        try:
            for chunk in streamer:
                text += chunk
                upto = printable_prefix(text, stops)
                if upto > shown:
                    on_text(text[shown:upto])
                    shown = upto
        except KeyboardInterrupt:
            interrupt.set()
            for _ in streamer:  # drain until generate() ends
                pass
        thread.join()
        if "error" in result:
            raise result["error"]
        output = result["output"]
        final, _ = cut_at_stop(text, stops)
        if len(final) > shown:
            on_text(final[shown:])

    new_ids = output[0, input_ids.shape[1] :].tolist()
    raw = tokenizer.decode(new_ids, skip_special_tokens=True)
    answer, hit_stop = cut_at_stop(raw, stops)
    if interrupt.is_set():
        finish = "interrupted"
    elif new_ids and new_ids[-1] in eos:
        finish = "eos"
    elif hit_stop:
        finish = "stop_string"
    else:
        finish = "length"
    return Reply(text=answer.strip(), token_ids=new_ids, finish=finish, raw_text=raw)


def batch_seed(seed: int, ids: list[str]) -> int:
    """A sampling seed for one batch, from the run's seed and the ids in it: a resumed run samples the same."""
    return (seed + int(hashlib.sha256("".join(ids).encode()).hexdigest()[:8], 16)) % 2**31


def generate_candidates(
    model,
    tokenizer,
    prompts: list[list[int]],
    n: int,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 0.95,
    share_prefill: bool = True,
    stop_strings: list[str] | None = None,
    ignore_eos: bool = False,
) -> list[list[dict]]:
    """N sampled continuations for each of several prompts, in one `generate` call.

    Prompts are left-padded into one batch. With `share_prefill`, the prompt (all but its last token) is
    run once per prompt and its KV cache repeated N times, so the N samples share the prefill; `generate`
    then continues from the cache. A sequence ends at EOS, at a stop string (transformers stops that row) or
    at `max_new_tokens`. Returns, per prompt, N dicts {text, finish_reason, new_tokens}: the text cut before
    any stop string (and before a trailing piece that could start one), finish_reason "stop" or "length",
    new_tokens the tokens generated up to and including whatever ended the sequence.
    """
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id
    stops = list(stop_strings or [])
    device = next(model.parameters()).device
    width = max(map(len, prompts))
    input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        mask[row, width - len(ids) :] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    settings = SamplingSettings(max_new_tokens, temperature, top_p)
    kwargs = {**settings.generate_kwargs(), "pad_token_id": pad, "eos_token_id": None if ignore_eos else eos}
    if ignore_eos:
        kwargs["min_new_tokens"] = max_new_tokens
    elif stops:
        kwargs.update(stop_strings=stops, tokenizer=tokenizer)
    with torch.no_grad():
        if share_prefill and width > 1:
            position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
            out = model(
                input_ids=input_ids[:, :-1],
                attention_mask=mask[:, :-1],
                position_ids=position_ids[:, :-1],
                use_cache=True,
            )
            cache = out.past_key_values
            cache.batch_repeat_interleave(n)
            output = model.generate(
                input_ids=input_ids.repeat_interleave(n, 0),
                attention_mask=mask.repeat_interleave(n, 0),
                past_key_values=cache,
                **kwargs,
            )
        else:
            output = model.generate(  # what num_return_sequences does, also valid for greedy decoding
                input_ids=input_ids.repeat_interleave(n, 0), attention_mask=mask.repeat_interleave(n, 0), **kwargs
            )
    results: list[list[dict]] = [[] for _ in prompts]
    for row, tokens in enumerate(output[:, width:].tolist()):
        results[row // n].append(
            finished_sequence(tokenizer, tokens, eos=None if ignore_eos else eos, pad=pad, stops=stops)
        )
    return results


def finished_sequence(tokenizer, tokens: list[int], *, eos: int | None, pad: int, stops: list[str]) -> dict:
    """{text, finish_reason, new_tokens} of one generated row (what follows its end is padding)."""
    end = tokens.index(eos) + 1 if eos is not None and eos in tokens else None
    generated = tokens[:end]
    if stops and cut_at_stop(tokenizer.decode(generated, skip_special_tokens=True), stops)[1]:
        low, high = 1, len(generated)  # the shortest prefix whose text holds a stop string
        while low < high:
            middle = (low + high) // 2
            if cut_at_stop(tokenizer.decode(generated[:middle], skip_special_tokens=True), stops)[1]:
                high = middle
            else:
                low = middle + 1
        return _ended(tokenizer, generated[:low], stops, ended=True)
    if end is not None:
        return _ended(tokenizer, generated, stops, ended=True)
    while generated and generated[-1] == pad:
        generated = generated[:-1]
    return _ended(tokenizer, generated, stops, ended=False)


def _ended(tokenizer, tokens: list[int], stops: list[str], ended: bool) -> dict:
    text = reply_text(tokenizer.decode(tokens, skip_special_tokens=True), stops)  # never a turn tag, nor its start
    return {"text": text, "finish_reason": "stop" if ended else "length", "new_tokens": len(tokens)}
