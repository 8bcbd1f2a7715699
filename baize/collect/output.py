"""From the journal to the outputs: train.jsonl, the report, the dataset card, baize.json, and the Hub."""

from __future__ import annotations

import json
import logging
import statistics
from collections import Counter
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

from baize.collect.config import CollectConfig
from baize.collect.selfchat import REASONS
from baize.io.jsonl import open_atomically, write_text_atomically
from baize.llm.prices import Usage

logger = logging.getLogger(__name__)

TRAIN_FILE = "train.jsonl"
MODE_DESCRIPTIONS = {
    "transcript": "Baize v1 self-chat: one call per seed writes the whole `[Human]`/`[AI]` transcript, parsed into turns",
    "turns": "Baize v2 self-chat: per round a user-simulator call writes the question and a normal chat call answers "
    "it, until the simulator has no more questions or the round limit",
    "alpaca": "Alpaca instructions converted to single-turn dialogues (no teacher call)",
}


def dataset_row(entry: dict) -> dict:
    """A kept journal entry as a row of train.jsonl."""
    return {
        "messages": entry["messages"],
        **{name: entry.get(name) or "" for name in ("seed", "source", "teacher", "mode")},
        "usage": entry["usage"],
    }


# --------------------------------------------------------------------------- report


def build_report(entries: Iterable[dict], config: CollectConfig, seed_stats: dict, run: dict) -> dict:
    """Counts, exchanges per dialogue, tokens and cost over the whole output dir, plus this run's numbers; the
    entries are read once, one at a time."""
    dropped, endings, exchanges, spent = Counter(), Counter(), [], Usage()
    for entry in entries:
        if entry["status"] == "kept":
            exchanges.append(len(entry["messages"]) // 2)
            endings[entry.get("stop", "")] += 1
        else:
            dropped[entry["reason"]] += 1
        spent.merge(Usage.from_by_role(entry.get("usage_by_role")))
    total = spent.total
    return {
        "mode": config.mode,
        "teacher": config.teacher,
        "source": config.source_label,
        "seeds": seed_stats,
        "kept": len(exchanges),
        "dropped": {reason: dropped.get(reason, 0) for reason in REASONS},
        "dropped_total": sum(dropped.values()),
        "failed_this_run": run.get("failed", 0),
        "stopped": run.get("stopped", "done"),
        "exchanges_per_dialogue": {
            "mean": round(statistics.fmean(exchanges), 3) if exchanges else 0.0,
            "min": min(exchanges, default=0),
            "max": max(exchanges, default=0),
            "histogram": {str(n): c for n, c in sorted(Counter(exchanges).items())},
        },
        "dialogue_endings": dict(endings),
        "tokens": {
            "calls": total.calls,
            "prompt": total.prompt_tokens,
            "completion": total.completion_tokens,
            "total": total.prompt_tokens + total.completion_tokens,
            "by_role": spent.by_role(),
        },
        "cost_usd": round(total.cost_usd, 6),
        "cost_untracked_models": sorted(run.get("unpriced", [])),
        "this_run": {
            key: run[key]
            for key in (
                "dialogues",
                "elapsed_s",  # the collection itself; importing the client library is import_s
                "import_s",
                "dialogues_per_minute",
                "rate_limited_responses",
                "calls_without_usage",
                "unusable_replies",  # 200 answers that were no completion: billed, counted at usage or reservation
                "batch",  # batch: true: batches sent and re-attached, requests, answers replayed and failed
            )
            if key in run
        },
    }


# --------------------------------------------------------------------------- card

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ pretty_name }}

Multi-turn chat data in the style of [Baize](https://arxiv.org/abs/2304.01196) (self-chat), collected with
`baize collect`.

| | |
|---|---|
| Seeds | {{ source }}{% if column %} (column `{{ column }}`){% endif %} |
| Teacher | `{{ teacher }}` |
| Mode | `{{ mode }}`: {{ mode_description }} |
| Dialogues | {{ kept }} kept, {{ dropped_total }} dropped |
| Exchanges per dialogue | {{ mean_exchanges }} on average (min {{ min_exchanges }}, max {{ max_exchanges }}) |
| Tokens | {{ tokens }} ({{ calls }} calls) |
| Cost | {{ cost }} |

Dropped dialogues, by reason: {{ dropped }}.

Decontamination: {{ decontamination }}.

## Format

One row per dialogue: `messages` (alternating `user` / `assistant` turns, ending with the assistant), the
`seed` it was generated from, its `source`, the `teacher` model, the collection `mode`, and the `usage`
(API calls, prompt and completion tokens, cost in USD) of the calls that produced it.
`baize convert train.jsonl baize.json --to baize` writes the original Baize format
(`[{"topic", "input"}]` with `[|Human|]` / `[|AI|]` tags).

## Licence

This dataset is derived from its seeds: the licence and terms of {{ source }}{% if seeds_license %}
({{ seeds_license }}){% endif %} apply to it; check the seed dataset's card. The dialogues were written by
`{{ teacher }}`; the terms of use of that model's provider may restrict how its outputs can be used (for
example, to train competing models). Check both before using or redistributing this dataset.

## Collection settings

```yaml
{{ settings }}
```
"""


def size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def card_settings(config: CollectConfig) -> str:
    """The settings that shaped the data; the endpoint is reduced to its host (never credentials or a key)."""
    import yaml

    names = ["mode", "seeds_path", "seeds_name", "seeds_split", "seeds_column"]
    if config.mode != "alpaca":
        names += ["teacher_model", "assistant_temperature", "assistant_top_p", "assistant_max_tokens"]
    if config.mode == "turns":
        names += ["user_model", "user_temperature", "user_top_p", "user_max_tokens", "max_rounds"]
        names += ["seed_as_first_question"]
    names += ["min_exchanges", "min_reply_chars", "on_truncated"]
    settings = {name: getattr(config, name) for name in names if getattr(config, name) is not None}
    if config.base_url:
        settings["endpoint_host"] = urlsplit(config.base_url).hostname
    return yaml.safe_dump(settings, sort_keys=False).strip()


def build_card(config: CollectConfig, report: dict):
    """The dataset card. It names no data files: `load_dataset(output_dir)` finds train.jsonl by its split name
    (a `configs:` entry with a relative path would make two output dirs of the same name share a datasets cache
    entry), and on the Hub `Dataset.push_to_hub` adds the data files' metadata itself."""
    from huggingface_hub import DatasetCard, DatasetCardData

    is_hub_id = config.seeds_path and not Path(config.seeds_path).exists() and "/" in config.seeds_path
    card_data = DatasetCardData(
        language=["en"],
        license="other",
        license_name="seed-dataset-and-teacher-terms",
        pretty_name=f"Baize self-chat: {config.source_label}",
        size_categories=[size_category(report["kept"])],
        source_datasets=[config.seeds_path] if is_hub_id else None,
        task_categories=["text-generation"],
        tags=["baize", "self-chat", "synthetic", "conversational"],
    )
    tokens = report["tokens"]
    cost = f"${report['cost_usd']:.2f}"
    if report["cost_untracked_models"]:
        cost += f" (no price configured for {', '.join(report['cost_untracked_models'])})"
    exchanges = report["exchanges_per_dialogue"]
    return DatasetCard.from_template(
        card_data,
        template_str=CARD_TEMPLATE,
        pretty_name=card_data.pretty_name,
        source=config.source_label,
        column=config.seeds_column if config.mode != "alpaca" else "instruction/input/output",
        teacher=config.teacher or "none",
        mode=config.mode,
        mode_description=MODE_DESCRIPTIONS[config.mode],
        kept=report["kept"],
        dropped_total=report["dropped_total"],
        dropped=", ".join(f"{reason} {n}" for reason, n in report["dropped"].items()),
        mean_exchanges=exchanges["mean"],
        min_exchanges=exchanges["min"],
        max_exchanges=exchanges["max"],
        tokens=f"{tokens['total']:,} ({tokens['prompt']:,} prompt, {tokens['completion']:,} completion)",
        calls=f"{tokens['calls']:,}",
        cost=cost,
        seeds_license=config.seeds_license,
        settings=card_settings(config),
        decontamination=decontamination_line(config, report["seeds"]),
    )


def decontamination_line(config: CollectConfig, seeds: dict) -> str:
    """Which eval sets the seeds were checked against (8-word n-grams, baize.data.decontaminate), and what matched."""
    if not config.decontaminate:
        return "none (the seeds were not checked against evaluation sets)"
    by_set = seeds.get("contaminated_by") or {}
    found = ", ".join(f"{name} {by_set.get(name, 0)}" for name in config.decontaminate)
    return (
        f"the seeds were checked against {', '.join(config.decontaminate)} (8-word n-gram overlap); "
        f"{seeds.get('contaminated', 0)} matching seeds were left out before collection ({found})"
    )


# --------------------------------------------------------------------------- writing and pushing


def write_outputs(entries: Iterable[dict], config: CollectConfig, report: dict) -> dict[str, Path]:
    """train.jsonl (and baize.json) written row by row from the entries, then report.json and the card; each file
    appears whole or not at all."""
    out = Path(config.output_dir)
    paths = {"train": out / TRAIN_FILE, "report": out / "report.json", "card": out / "README.md"}
    if config.baize_json:
        paths["baize"] = out / "baize.json"
    with ExitStack() as stack:
        train = stack.enter_context(open_atomically(paths["train"]))
        baize = stack.enter_context(open_atomically(paths["baize"])) if config.baize_json else None
        if baize is not None:
            from baize.data.formats import messages_to_baize

            baize.write("[")
        first = True
        for entry in entries:
            if entry["status"] != "kept":
                continue
            row = dataset_row(entry)
            train.write(json.dumps(row, ensure_ascii=False) + "\n")
            if baize is not None:
                record = {"topic": row["seed"], "input": messages_to_baize(row["messages"])}
                baize.write(("\n" if first else ",\n") + json.dumps(record, ensure_ascii=False, indent=1))
            first = False
        if baize is not None:
            baize.write("\n]")
    write_text_atomically(paths["report"], json.dumps(report, indent=2) + "\n")
    write_text_atomically(paths["card"], str(build_card(config, report)))
    return paths


def push(config: CollectConfig, report: dict) -> str:
    """Upload the output folder with its card: data files and report, never the journals (resume state)."""
    from baize.hub import push_dataset

    result = push_dataset(
        config.output_dir,
        config.push_to_hub,
        card=build_card(config, report),
        private=config.hub_private,
        commit_message=f"baize collect: {report['kept']} dialogues ({config.mode})",
    )
    logger.info("Pushed %d dialogues to %s", report["kept"], result.url)
    return result.repo_id
