"""`CollectConfig`: every key of a `recipes/<name>/collect.yaml`, each overridable on the command line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from baize.data.decontaminate import DecontaminationArguments
from baize.data.text_quality import known_language
from baize.io.arguments import parse_recipe, signed_settings
from baize.llm.endpoint import EndpointArguments
from baize.llm.prices import model_prices

MODES = ("transcript", "turns", "alpaca")
PRICE_KEYS = ("prompt", "completion", "batch_prompt", "batch_completion")

# Refusal boilerplate: a dialogue whose AI turns contain one of these is dropped (counted as `refusal`).
DEFAULT_REFUSAL_PATTERNS = [
    r"\bas an ai(?: language)? model\b",
    r"\bI'?m sorry,? but I (?:can(?:'|no)?t|am unable to|won'?t)\b",
    r"\bI (?:cannot|can'?t|am unable to|am not able to) (?:help|assist|provide|comply|fulfil)",
    r"\bI apologi[sz]e,? but I\b",
]


@dataclass
class CollectConfig(EndpointArguments, DecontaminationArguments):
    """Self-chat collection: seeds -> teacher LLM -> parsed, cleaned dialogues -> a local dataset (-> the Hub)."""

    # ------------------------------------------------------------------ what to collect
    mode: str = field(
        default="turns",
        metadata={
            "signs": "collect",
            "help": "transcript: one teacher call per seed writes the whole [Human]/[AI] transcript (Baize v1). "
            "turns: per round a user-simulator call writes the next question, then a normal chat call answers "
            "it (Baize v2), until max_rounds or the simulator says it has no more questions. "
            "alpaca: no teacher; instruction/input/output rows become single-turn dialogues.",
            "choices": list(MODES),
        },
    )
    output_dir: str = field(
        default="data/collected/selfchat",
        metadata={
            "help": "Where the journal (journal*.jsonl: every finished seed, appended as it finishes), train.jsonl, "
            "README.md (dataset card) and report.json go. Re-running the same command resumes from the journal."
        },
    )

    # ------------------------------------------------------------------ seeds
    seeds_path: str | None = field(
        default=None,
        metadata={
            "signs": "collect",
            "help": "Hub dataset id (e.g. pacovaldez/stackoverflow-questions) or a local file: .txt (one seed per "
            "line), .jsonl/.json, .parquet or .csv (or a local dataset folder).",
        },
    )
    seeds_name: str | None = field(
        default=None, metadata={"signs": "collect", "help": "Dataset configuration (subset) name, if any."}
    )
    seeds_split: str = field(
        default="train", metadata={"signs": "collect", "help": "Split to read seeds from (Hub datasets)."}
    )
    seeds_column: str = field(
        default="text",
        metadata={
            "signs": "collect",
            "help": "Column holding the seed; a dotted path reaches into nested columns and lists, e.g. "
            "questions.text.0 (first question of a Quora pair). .txt files always use `text`. "
            "Alpaca mode reads the instruction/input/output columns instead.",
        },
    )
    on_bad_row: str = field(
        default="skip",
        metadata={
            "help": "A seeds row without the seed column (a JSONL object missing the key, a null): `skip` counts it "
            "(report.json seeds.missing_column, and the summary line names the first one) and goes on; `error` "
            "stops before anything is collected, naming the file and row."
        },
    )
    seeds_license: str | None = field(
        default=None, metadata={"help": "Licence of the seed dataset, copied into the dataset card (e.g. cc-by-4.0)."}
    )
    source: str | None = field(
        default=None, metadata={"help": "Value of the `source` column and the card's source (unset: seeds_path)."}
    )
    limit: int | None = field(
        default=None, metadata={"help": "Use at most this many seeds (of this shard, after de-duplication)."}
    )
    num_shards: int = field(
        default=1,
        metadata={"help": "Split the seeds into this many shards by index, one per machine (see shard_index)."},
    )
    shard_index: int = field(
        default=0,
        metadata={"help": "Which shard this machine collects: seeds with index %% num_shards == shard_index."},
    )

    # ------------------------------------------------------------------ teacher endpoint
    base_url: str | None = field(
        default=None,
        metadata={
            "role": "teacher",
            "part": "base_url",
            "help": "OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 for `transformers serve` or vLLM "
            "(unset: the OpenAI API).",
        },
    )
    teacher_model: str = field(
        default="gpt-4o-mini",
        metadata={
            "signs": "collect",
            "role": "teacher",
            "part": "model",
            "help": "Model name sent to the endpoint. `pkg:NAME` (with teacher_gguf_file) names a model shipped in a "
            "Python package: it is converted once to a local folder whose path is sent, for `transformers serve`.",
        },
    )
    teacher_gguf_file: str | None = field(
        default=None,
        metadata={
            "signs": "collect",
            "role": "teacher",
            "part": "gguf_file",
            "gguf_of": "teacher_model",
            "help": "GGUF file inside teacher_model (`pkg:` or a local folder), as in training.",
        },
    )
    teacher_label: str | None = field(
        default=None, metadata={"help": "Name recorded in the `teacher` column and the card (unset: teacher_model)."}
    )
    user_model: str | None = field(
        default=None,
        metadata={"signs": "collect", "help": "turns mode: model of the user simulator (unset: the teacher model)."},
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={
            "role": "teacher",
            "part": "api_key_env",
            "help": "Name of the environment variable holding the API key. The key itself is never read from a "
            "recipe or the command line, and never written anywhere. Local endpoints need none.",
        },
    )

    # ------------------------------------------------------------------ sampling, per role
    assistant_temperature: float | None = field(
        default=None,
        metadata={
            "signs": "collect",
            "help": "Temperature of the AI turns (transcript mode: of the transcript call).",
        },
    )
    assistant_top_p: float | None = field(
        default=None, metadata={"signs": "collect", "help": "top_p of the AI turns / transcript call."}
    )
    assistant_max_tokens: int = field(
        default=1024,
        metadata={"signs": "collect", "help": "max_tokens of one AI turn (transcript mode: of the whole transcript)."},
    )
    user_temperature: float | None = field(
        default=None, metadata={"signs": "collect", "help": "Temperature of the user simulator."}
    )
    user_top_p: float | None = field(
        default=None, metadata={"signs": "collect", "help": "top_p of the user simulator."}
    )
    user_max_tokens: int = field(
        default=256, metadata={"signs": "collect", "help": "max_tokens of one user-simulator question."}
    )
    user_stop: list[str] = field(
        default_factory=lambda: ["[AI]"],
        metadata={
            "signs": "collect",
            "help": "Stop strings of the user-simulator call (it must write one human line only).",
        },
    )
    assistant_system_prompt: str | None = field(
        default=None,
        metadata={
            "signs": "collect",
            "help": "turns mode: system message of the AI calls (not stored in the dialogues).",
        },
    )
    transcript_prompt: str | None = field(
        default=None,
        metadata={
            "signs": "collect",
            "help": "Override of the v1 self-chat prompt; `{seed}` is replaced by the seed (default built in).",
        },
    )
    user_prompt: str | None = field(
        default=None,
        metadata={
            "signs": "collect",
            "help": "Override of the user-simulator prompt; `{seed}` and `{end_marker}` are replaced, and the "
            "transcript so far goes at `{transcript}` (without it: after the prompt, then an open `[Human] ` line).",
        },
    )
    seed_as_first_question: bool = field(
        default=False,
        metadata={
            "signs": "collect",
            "help": "turns mode: the seed itself is the first question (Quora, MedQuAD and StackOverflow seeds are "
            "questions), so the simulator writes only the follow-ups; one call fewer per dialogue.",
        },
    )
    max_rounds: int = field(
        default=5, metadata={"signs": "collect", "help": "turns mode: at most this many question/answer exchanges."}
    )
    end_marker: str = field(
        default="[END]",
        metadata={
            "signs": "collect",
            "help": "turns mode: what the user simulator writes when it has no more questions.",
        },
    )

    # ------------------------------------------------------------------ throughput
    concurrency: int = field(default=8, metadata={"help": "Dialogues collected at the same time."})
    max_failures: int = field(
        default=100,
        metadata={
            "help": "Stop after this many failed dialogues (API errors left after all retries). Failed seeds are "
            "not journaled, so the next run retries them."
        },
    )

    # ------------------------------------------------------------------ the Batch API
    batch: bool = field(
        default=False,
        metadata={
            "help": "Send the teacher calls as OpenAI Batch API batches instead of live calls: about half the price, "
            "answers within batch_completion_window. transcript mode is one batch; turns mode one batch per step "
            "of a round. Request files, batch ids and answers are kept in <output_dir>/batches/: a re-run "
            "re-attaches to a batch still running instead of paying twice."
        },
    )
    batch_offline: bool = field(
        default=False,
        metadata={
            "help": "Batches for an engine without the API (implies batch): each step's request file is written to "
            "<output_dir>/batches/requests-NNNNN.jsonl and the run stops; run it with `vllm run-batch -i ... -o "
            "<output_dir>/batches/results-NNNNN.jsonl`, then the same command again, until it says done."
        },
    )
    batch_size: int = field(
        default=50_000,
        metadata={"help": "Seeds per batch run (the OpenAI Batch API takes at most 50,000 requests a batch)."},
    )
    batch_completion_window: str = field(default="24h", metadata={"help": "The batch's completion window."})
    batch_poll_interval: float = field(
        default=30.0,
        metadata={"help": "Seconds before the first status poll of a batch; each wait is 1.5x longer, up to 10 min."},
    )
    batch_retries: int = field(
        default=2,
        metadata={
            "help": "Requests that failed inside a batch (or that it did not reach before it expired) go into a "
            "new batch this many times; after that their seeds fail, and the next run retries them."
        },
    )

    # ------------------------------------------------------------------ budget
    max_cost: float | None = field(
        default=None,
        metadata={
            "help": "Budget in USD for the output dir (all runs): no new dialogue or round starts once it is spent. "
            "Needs a price for the teacher in `prices`."
        },
    )
    max_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Token budget for the output dir (prompt + completion, both roles, all runs), like max_cost."
        },
    )
    prices: dict | str | None = field(
        default=None,
        metadata={
            "help": 'USD per million tokens by model, e.g. {"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6}} '
            "(JSON on the command line). A model missing here costs 0 (reported as untracked). With batch: "
            "batch_prompt / batch_completion, or half the live prices (the OpenAI Batch API's discount)."
        },
    )

    # ------------------------------------------------------------------ cleaning
    min_exchanges: int = field(
        default=1,
        metadata={"signs": "collect", "help": "Drop dialogues with fewer question/answer exchanges (`too_short`)."},
    )
    min_reply_chars: int = field(
        default=10,
        metadata={"signs": "collect", "help": "Drop dialogues with an AI turn shorter than this (`too_short`)."},
    )
    on_truncated: str = field(
        default="drop",
        metadata={
            "signs": "collect",
            "help": "A reply cut by max_tokens (finish_reason=length): `drop` the dialogue (`truncated`), or `trim` "
            "it to the exchanges before the cut one.",
            "choices": ["drop", "trim"],
        },
    )
    refusal_patterns: list[str] = field(
        default_factory=lambda: list(DEFAULT_REFUSAL_PATTERNS),
        metadata={
            "signs": "collect",
            "help": "Regexes (case-insensitive) of refusal boilerplate in AI turns (`refusal`); [] disables.",
        },
    )
    language: str | None = field(
        default="seed",
        metadata={
            "signs": "collect",
            "help": "The language every turn must be in, or the dialogue is dropped (`language`): `seed` (the seed "
            "question's, told per turn by py3langid), a code such as en or zh, or none. Turns too short to tell do "
            "not count (baize/data/text_quality.py).",
        },
    )
    drop_repetition: bool = field(
        default=True,
        metadata={'signs': 'collect', "help": "Drop dialogues with a turn that loops (`repetition`: a span repeated back to back, a "
                  "sentence 3 times, or under half of its word 4-grams distinct)."},
    )  # fmt: skip

    near_duplicate_threshold: float | None = field(
        default=None,
        metadata={
            "signs": "collect",
            "help": "Also drop near-duplicates of a kept dialogue (`near_duplicate`): MinHash LSH, Jaccard similarity "
            "of 3-word shingles at least this (0.5 is baize data dedup's measured default; baize.data.dedup says why). "
            "Unset: exact duplicates only.",
        },
    )
    near_duplicate_over: str = field(
        default="dialogue",
        metadata={'signs': 'collect', "help": "What near-duplicates compare: every turn, or the human turns only.",
                  "choices": ["dialogue", "human_turns"]},
    )  # fmt: skip

    # ------------------------------------------------------------------ output
    baize_json: bool = field(
        default=False,
        metadata={
            "help": "Also write baize.json in the original Baize format ([{topic, input}] with [|Human|]/[|AI|])."
        },
    )
    push_to_hub: str | None = field(
        default=None, metadata={"help": "Hub dataset repo (user/name) to push the dataset and its card to."}
    )
    hub_private: bool = field(
        default=True,
        metadata={"help": "Create the Hub repo private (make it public once you have checked the licences)."},
    )
    plan: bool = field(
        default=False,
        metadata={
            "help": "Only plan: print and write plan.json with the requests, tokens, cost (live and batch), wall "
            "time at the RPM/TPM limits and the seeds max_cost fits, from the dialogues already collected here or "
            "the recipe's limits; nothing is sent."
        },
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Start over when a setting that shapes the dialogues changed (deletes the journal and outputs). "
            "Without it such a re-run is refused: old and new dialogues are never mixed."
        },
    )

    # Settings that shape the dialogues: a re-run must use the same ones (collect_signature.json). Throughput,
    # limits, sharding and the endpoint URL may change between runs.
    def budget_reached(self, cost: float, tokens: int, *, exceeded: bool = False) -> str | None:
        """The budget (`max_cost`, `max_tokens`) a spend of `cost` and `tokens` has reached, or with `exceeded`,
        gone past (a reservation may take the spend up to a budget, not beyond it); None while within both."""
        for reason, value, limit in (("max_cost", cost, self.max_cost), ("max_tokens", tokens, self.max_tokens)):
            if limit is not None and (value > limit if exceeded else value >= limit):
                return reason
        return None

    def shaping_settings(self) -> dict:
        """What shapes the dialogues (the fields marked `signs: collect`): a re-run with others is refused."""
        return signed_settings(self, "collect")

    def __post_init__(self):
        if isinstance(self.language, str) and self.language.lower() in ("none", "null", "any", ""):
            self.language = None
        if self.language not in (None, "seed") and not known_language(self.language):
            # an unknown code would drop every dialogue as `language`
            raise ValueError(
                f"language {self.language!r} is not a language code py3langid tells (e.g. en, zh, ru, de); use seed, "
                "a code, or none"
            )
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.near_duplicate_threshold is not None and not 0 < self.near_duplicate_threshold <= 1:
            raise ValueError(f"near_duplicate_threshold must be in (0, 1], got {self.near_duplicate_threshold}")
        if isinstance(self.decontaminate, str):
            self.decontaminate = [self.decontaminate] if self.decontaminate else []
        if self.on_bad_row not in ("skip", "error"):
            raise ValueError(f"on_bad_row must be 'skip' or 'error', got {self.on_bad_row!r}")
        if isinstance(self.prices, str):
            self.prices = json.loads(self.prices)
        for model, price in (self.prices or {}).items():
            if not isinstance(price, dict) or set(price) - set(PRICE_KEYS):
                raise ValueError(
                    f"prices[{model!r}] must be {{prompt: USD per 1M tokens, completion: ...}} "
                    "(and optionally batch_prompt, batch_completion)"
                )
        if not 0 <= self.shard_index < self.num_shards:
            raise ValueError(f"shard_index must be in [0, num_shards={self.num_shards}), got {self.shard_index}")
        self.batch = self.batch or self.batch_offline
        if self.batch and self.mode == "alpaca":
            raise ValueError("batch: alpaca mode makes no teacher calls")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        for name in ("transcript_prompt", "user_prompt"):
            template = getattr(self, name)
            if template is not None and "{seed}" not in template:
                raise ValueError(f"{name} must contain {{seed}}")
        if self.user_prompt is not None and "{end_marker}" not in self.user_prompt:
            raise ValueError("user_prompt must contain {end_marker}: the simulator must know how to stop")

    @property
    def teacher(self) -> str:
        """What the `teacher` column and the card say."""
        if self.teacher_label:
            return self.teacher_label
        return self.teacher_model if self.mode != "alpaca" else ""

    @property
    def source_label(self) -> str:
        return self.source or self.seeds_path or ""

    def price(self, model: str) -> dict | None:
        """{prompt, completion} USD per 1M tokens of `model` (baize.llm.prices) as this run pays them: with `batch`,
        the batch prices."""
        live, batch = model_prices(self.prices, model)
        return batch if self.batch else live


def parse_args(argv: list[str] | None = None) -> CollectConfig:
    (config,) = parse_recipe(
        (CollectConfig,),
        argv,
        prog="baize collect",
        description="Collect Baize self-chat dialogues from a teacher LLM (any OpenAI-compatible endpoint) into a "
        "dataset: baize collect --config recipes/selfchat-quora/collect.yaml [--key value ...]. "
        "The API key comes from the environment variable named by --api_key_env only.",
    )
    return config
