"""Chat data: the original Baize formats <-> chat `messages`, and dataset mixtures for training.

Every training dataset is normalised to one schema: a `messages` column (system + alternating
user/assistant turns) plus provenance columns. Three input formats are recognised by their columns:

- `messages`:                         chat rows (our own collected data, most Hub chat datasets)
- `input` (+ `topic`):               the original Baize data files (`[|Human|]` / `[|AI|]` transcripts)
- `instruction`, `output` (+ `input`): Alpaca-style single-turn instructions
"""

from __future__ import annotations

import glob
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import datasets
from trl import DatasetMixtureConfig, get_dataset
from trl.scripts.utils import DatasetConfig

from baize.io.errors import DataFormatError, UsageError

logger = logging.getLogger(__name__)

BAIZE_HEADER = "The conversation between human and AI assistant."
HUMAN_TAG = "[|Human|]"
AI_TAG = "[|AI|]"
_TAG_RE = re.compile(r"(\[\|Human\|\]|\[\|AI\|\])")
PROVENANCE_COLUMNS = ("seed", "source", "teacher", "mode")


# --------------------------------------------------------------------------- converters


def baize_to_messages(text: str) -> list[dict[str, str]]:
    """Parse an original Baize `input` transcript into chat messages.

    `"<header>\\n[|Human|] q\\n[|AI|] a\\n...[|Human|] "` -> `[system, user, assistant, ...]`.
    The trailing empty `[|Human|]` prompt is dropped; every completed exchange is kept (the original
    collector dropped the last one).
    """
    if not isinstance(text, str):
        raise DataFormatError(f"expected a string transcript, got {type(text).__name__}")
    pieces = _TAG_RE.split(text)
    header, rest = pieces[0].strip(), pieces[1:]
    if not rest:
        raise DataFormatError("no [|Human|] / [|AI|] turn tags found")
    messages = [{"role": "system", "content": header}] if header else []
    for tag, content in zip(rest[0::2], rest[1::2], strict=True):
        role = "user" if tag == HUMAN_TAG else "assistant"
        messages.append({"role": role, "content": content.strip()})
    # The file format ends on an open human prompt, waiting for the next question.
    if messages[-1]["role"] == "user" and not messages[-1]["content"]:
        messages.pop()
    validate_messages(messages)
    return messages


def messages_to_baize(messages: list[dict[str, str]]) -> str:
    """Render chat messages in the original Baize data-file format (inverse of `baize_to_messages`)."""
    validate_messages(messages)
    header, turns = BAIZE_HEADER, messages
    if messages[0]["role"] == "system":
        header, turns = messages[0]["content"], messages[1:]
    lines = [header]
    for message in turns:
        tag = HUMAN_TAG if message["role"] == "user" else AI_TAG
        lines.append(f"{tag} {message['content']}")
    return "\n".join(lines) + f"\n{HUMAN_TAG} "


def alpaca_to_messages(instruction: str, input: str | None, output: str) -> list[dict[str, str]]:
    """Alpaca instruction/input/output -> a single-turn dialogue (the input, if any, follows the instruction)."""
    instruction, input, output = (instruction or "").strip(), (input or "").strip(), (output or "").strip()
    user = f"{instruction}\n\n{input}" if input else instruction
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    validate_messages(messages)
    return messages


def validate_messages(messages) -> None:
    """Check the chat shape the Baize template supports; raise `DataFormatError` saying what is wrong."""
    if not isinstance(messages, list) or not messages:
        raise DataFormatError("`messages` must be a non-empty list")
    turns = messages[1:] if messages[0].get("role") == "system" else messages
    if not turns:
        raise DataFormatError("no user/assistant turns")
    for i, message in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if message.get("role") != expected:
            raise DataFormatError(f"turn {i}: expected role {expected!r}, got {message.get('role')!r}")
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            raise DataFormatError(f"turn {i} ({expected}): empty content")
    if turns[-1]["role"] != "assistant":
        raise DataFormatError("the dialogue must end with an assistant turn")


def row_to_messages(row: dict) -> list[dict[str, str]]:
    """Pick the converter from the row's columns."""
    if "messages" in row:
        messages = row["messages"]
        if isinstance(messages, str):  # some Hub datasets store the chat as a JSON string
            messages = json.loads(messages)
        messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        validate_messages(messages)
        return messages
    if "instruction" in row and "output" in row:
        return alpaca_to_messages(row["instruction"], row.get("input"), row["output"])
    if "input" in row:
        return baize_to_messages(row["input"])
    raise DataFormatError(f"unknown format: columns {sorted(row)} (need messages, input, or instruction+output)")


# --------------------------------------------------------------------------- datasets


@dataclass
class ConversionReport:
    """Rows kept and skipped per dataset, by reason."""

    kept: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    checked_against: list = field(default_factory=list)  # eval sets the rows were decontaminated against
    contaminated: Counter = field(default_factory=Counter)  # rows dropped, by eval set they overlap

    def summary(self) -> str:
        parts = [f"{name}: kept {self.kept[name]}" for name in self.kept]
        parts += [f"skipped {n} ({reason})" for reason, n in self.skipped.items()]
        return "; ".join(parts)


def dataset_label(config: DatasetConfig) -> str:
    """Human-readable name of a mixture entry for messages and the `source` column."""
    if config.data_files:
        files = config.data_files
        return ", ".join(files) if isinstance(files, list) else str(files)
    return config.path if config.name is None else f"{config.path}:{config.name}"


def to_chat_dataset(
    dataset: datasets.Dataset, label: str, on_bad_row: str = "error", report: ConversionReport | None = None
) -> datasets.Dataset:
    """Normalise any supported format to `messages` + provenance columns.

    `on_bad_row="error"` raises one `DataFormatError` naming `label` and the row (1-based);
    `"skip"` drops such rows and counts them in `report`.
    """
    if on_bad_row not in ("error", "skip"):
        raise UsageError(f"on_bad_row must be 'error' or 'skip', got {on_bad_row!r}")
    report = report if report is not None else ConversionReport()
    rows = []
    for index, row in enumerate(dataset):
        try:
            messages = row_to_messages(row)
        except (DataFormatError, KeyError, TypeError, json.JSONDecodeError) as error:
            if on_bad_row == "error":
                raise DataFormatError(
                    f"{label}: row {index + 1}: {error} (set on_bad_row: skip in the recipe to drop such rows)"
                ) from None
            report.skipped[f"{label}: {error}"] += 1
            continue
        rows.append(
            {
                "messages": messages,
                "seed": str(row.get("seed") or row.get("topic") or row.get("instruction") or ""),
                "source": str(row.get("source") or label),
                "teacher": str(row.get("teacher") or ""),
                "mode": str(row.get("mode") or ""),
            }
        )
        report.kept[label] += 1
    if not rows:
        raise DataFormatError(f"{label}: no usable rows ({len(dataset)} read)")
    return datasets.Dataset.from_list(rows, features=CHAT_FEATURES)


CHAT_FEATURES = datasets.Features(
    {
        "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        **{name: datasets.Value("string") for name in PROVENANCE_COLUMNS},
    }
)


def load_chat_mixture(
    mixture: DatasetMixtureConfig, on_bad_row: str = "error", seed: int = 42, decontaminate: list[str] | None = None,
    max_contaminated_fraction: float = 0.5,
) -> tuple[datasets.DatasetDict, ConversionReport]:  # fmt: skip
    """Load TRL's `datasets:` mixture config as one chat dataset (train, and test if `test_split_size`).

    Each entry is loaded by TRL's `get_dataset` (so `path`/`data_files`/`split`/`columns` mean what
    they mean in TRL) and normalised with `to_chat_dataset` before the mixture is formed, because the
    original Baize files, Alpaca and chat data do not share columns. `fraction` keeps TRL's meaning.
    `test_split_size` < 1 is a fraction, >= 1 a number of rows (Baize held out 2,000 examples).
    """
    if not mixture.datasets:
        raise UsageError("the recipe has no `datasets:` entries")
    if mixture.streaming:
        raise UsageError("streaming mixtures are not supported: chat rows are validated and converted up front")
    report = ConversionReport()
    parts = []
    for config in mixture.datasets:
        config = file_as_builder(config)
        label = dataset_label(config)
        if config.data_files and config.path in ("json", "parquet", "csv", "text"):
            for file in [config.data_files] if isinstance(config.data_files, str) else config.data_files:
                if "://" not in str(file) and not glob.glob(str(file)):
                    raise UsageError(f"dataset file not found: {file} (relative to {Path.cwd()})")
        single = DatasetMixtureConfig(datasets=[replace(config, fraction=None)])
        try:
            raw = get_dataset(single)["train"]
        except datasets.exceptions.DatasetGenerationError as error:
            raw = json_lines_without_bad_ones(config, label, on_bad_row, report, error)
        parts.append(to_chat_dataset(raw, label, on_bad_row, report))

    fractions = [config.fraction for config in mixture.datasets]
    if any(f is not None for f in fractions):
        # Same rule as trl.get_dataset: normalised shares, capped so that no dataset is oversampled.
        if any(f is None for f in fractions):
            raise UsageError("`fraction` must be set for either all datasets in the mixture or none of them.")
        weights = [f / sum(fractions) for f in fractions]
        total = min(len(part) / w for part, w in zip(parts, weights, strict=True) if w > 0)
        parts = [part.select(range(round(w * total))) for part, w in zip(parts, weights, strict=True)]

    combined = datasets.concatenate_datasets(parts)
    if decontaminate:
        combined = without_contamination(combined, decontaminate, max_contaminated_fraction, report)
    if mixture.test_split_size is None:
        return datasets.DatasetDict({"train": combined}), report
    size = mixture.test_split_size
    test_size = int(size) if size >= 1 else float(size)
    held_out = test_size if isinstance(test_size, int) else round(test_size * len(combined))
    if not 0 < held_out < len(combined):
        raise UsageError(
            f"test_split_size {size} holds out {held_out} of the {len(combined)} rows of the data: give a number "
            f"between 1 and {len(combined) - 1} (e.g. --test_split_size {max(1, len(combined) // 10)}) or a fraction"
        )
    return combined.train_test_split(test_size=test_size, seed=seed), report


def without_contamination(
    rows: datasets.Dataset, sets: list[str], max_fraction: float, report: ConversionReport
) -> datasets.Dataset:
    """The rows that overlap none of the eval sets (baize.data.decontaminate), the dropped ones counted by set; more than
    `max_fraction` dropped stops the run (a wrong eval file must not silently empty a training set)."""
    from baize.data.decontaminate import Contamination
    from baize.data.dedup import dialogue_text

    contamination = Contamination(sets)
    keep = []
    for index, messages in enumerate(rows["messages"]):
        found = contamination.match(dialogue_text(messages))
        for name in found:
            report.contaminated[name] += 1
        if not found:
            keep.append(index)
    report.checked_against = list(sets)
    dropped = len(rows) - len(keep)
    if rows and dropped / len(rows) > max_fraction:
        raise UsageError(
            f"decontaminate {sets}: {dropped} of {len(rows)} training rows overlap the eval sets (over "
            f"max_contaminated_fraction {max_fraction}): check the eval sets named, or raise the fraction"
        )
    if dropped:
        logger.warning("decontaminate: %d rows overlap %s and are left out", dropped, dict(report.contaminated))
    return rows.select(keep) if dropped else rows


def json_lines_without_bad_ones(config, label: str, on_bad_row: str, report: ConversionReport, error: Exception):
    """A JSON Lines file that `datasets` could not parse: name its first bad line (1-based), or with
    on_bad_row: skip, load the good lines and count the bad ones."""
    files = [config.data_files] if isinstance(config.data_files, str) else list(config.data_files or [])
    if config.path != "json" or not files or not all(str(f).endswith(".jsonl") for f in files):
        raise UsageError(f"{label}: cannot be read: {error.__cause__ or error}") from error
    rows, bad = [], 0
    for file in files:
        for number, line in enumerate(Path(file).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("not a JSON object")
            except ValueError as bad_line:
                if on_bad_row == "error":
                    raise UsageError(
                        f"{file}: line {number}: not a JSON object ({bad_line}); fix it, or set on_bad_row: skip"
                    ) from None
                bad += 1
                continue
            rows.append(row)
    report.skipped["invalid JSON line"] += bad
    return datasets.Dataset.from_list(rows)


FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def file_as_builder(config: DatasetConfig) -> DatasetConfig:
    """`--datasets data/my.jsonl` on the command line: a local file as `path` means its builder + data_files."""
    path = Path(config.path)
    builder = FILE_BUILDERS.get(path.suffix.lower())
    if builder is None or config.data_files or not path.is_file():
        return config
    return replace(config, path=builder, data_files=str(path))


def convert_file(src: str | Path, dst: str | Path, to: str, on_bad_row: str = "error") -> ConversionReport:
    """Convert a data file between the original Baize JSON format and chat JSONL.

    `to="messages"`: any supported input file -> JSONL of `messages` + provenance.
    `to="baize"`:    chat file -> the original `[{"topic", "input"}]` JSON list.
    """
    src, dst = Path(src), Path(dst)
    suffix = src.suffix.lstrip(".")
    builder = {"jsonl": "json", "json": "json", "parquet": "parquet"}.get(suffix)
    if builder is None:
        raise UsageError(f"{src}: unsupported file type {src.suffix!r} (use .json, .jsonl or .parquet)")
    raw = datasets.load_dataset(builder, data_files=str(src), split="train")
    report = ConversionReport()
    chat = to_chat_dataset(raw, str(src), on_bad_row, report)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if to == "messages":
        with dst.open("w", encoding="utf-8") as f:
            for row in chat:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif to == "baize":
        records = [{"topic": row["seed"], "input": messages_to_baize(row["messages"])} for row in chat]
        dst.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    else:
        raise UsageError(f"to must be 'messages' or 'baize', got {to!r}")
    return report
