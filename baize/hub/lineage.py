"""The lineage of a self-distilled adapter (Baize v2, v3, ...): what it loads on top of, and how its card says so.

A v(k+1) LoRA is trained on v(k) merged into its base, so it loads as base -> v1 merged -> ... -> v(k) merged ->
v(k+1). LINEAGE_FILE beside the adapter names its parent (a local folder, or a Hub id once pushed) and the parent's
base; the parent's own LINEAGE_FILE names the next one up, down to a plain SFT adapter (v1) that has none.
"""

from __future__ import annotations

import json
from pathlib import Path

from baize.hub.cards import GENERATE_SNIPPET, model_reference, model_title
from baize.hub.ids import hub_model_id

LINEAGE_FILE = "sdf.json"
SDF_CARD_MARK = ": Self-Distillation with Feedback"  # in the heading of the section below, whatever the version
ROUNDS_CARD_HEADING = "## SDF rounds"
ROUNDS_FILE = "rounds.json"  # in an SDF output folder that ran rounds: every round, the best model, why it stopped


def read_lineage(folder: str | Path) -> dict | None:
    path = Path(folder) / LINEAGE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def version(lineage: dict) -> int:
    """2 for the paper's v2 (lineage files written before rounds existed say nothing), k+1 for a round-k model."""
    return int(lineage.get("version", 2))


def local_ancestors(folder: str | Path) -> list[Path]:
    """The adapter's parents that are local folders, the oldest first (a parent named by Hub id ends the walk)."""
    chain: list[Path] = []
    lineage = read_lineage(folder)
    while lineage is not None:
        parent = Path(lineage["v1_parent"])
        if not parent.is_dir() or parent in chain:  # a Hub id (or a folder not on this machine) ends it
            break
        chain.insert(0, parent)
        lineage = read_lineage(parent)
    return chain


def sdf_card_section(lineage: dict, ref: str, parents: list[str] | None = None) -> str:
    """The card section of a v(k+1) adapter: what it was trained on, by which judge, and how the stack loads.

    `parents`: the ids (or names) of every adapter below this one, the oldest first; default: the one parent."""
    select = lineage["selection"]
    number = version(lineage)
    parents = parents or [hub_model_id(lineage["v1_parent"]) or model_title(lineage["v1_parent"])]
    parent = model_reference(lineage["v1_parent"])
    root_base = model_reference(lineage["v1_base"]) if lineage["v1_base"] else "its base"
    base_id = lineage["v1_base"] or "BASE_MODEL"
    judge_id = hub_model_id(lineage["judge_model"]) or lineage["judge_model"]
    judge = f"[{judge_id}](https://huggingface.co/{judge_id})" if hub_model_id(judge_id) else f"`{judge_id}`"
    if select.get("judge_note"):
        judge += f" ({select['judge_note']})"
    method = lineage.get("method", "sft")
    trained = {
        "sft": f"the best answer per prompt (score >= {lineage['min_score']}) was used for SFT",
        "dpo": "the best and the worst answer per prompt made the preference pairs of a DPO step (reference: the "
        "parent itself)",
        "grpo": "the scores were the reward of online GRPO (TRL's GRPOTrainer): the answers were sampled from this "
        "LoRA as it trained, a group per prompt at every step",
    }[method]
    table = selection_table(select, method)
    merges = "\n".join(
        f'model = PeftModel.from_pretrained(model, "{p}").merge_and_unload()  # v{i}, frozen'
        for i, p in enumerate(parents, start=number - len(parents))
    )
    return f"""
## Baize v{number}{SDF_CARD_MARK}

This adapter is the **v{number} LoRA** of [Baize](https://arxiv.org/abs/2304.01196) section 3.3. Its parent
{parent} (base {root_base}) sampled {lineage["num_candidates"]} answers per prompt;
the judge {judge} ({lineage["judge_mode"]}) scored each one for helpfulness, relevance,
accuracy and level of detail; {trained}.

The parent is frozen: it was merged into its base (PEFT `merge_and_unload`) and this NEW LoRA was trained on
top, so h = W0 x + B1 A1 x + ... + B{number} A{number} x as in the paper.

## How to use

`baize chat {ref}` (and `baize eval`, `baize web`) load it that way by themselves, from `{LINEAGE_FILE}`. By hand:

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("{base_id}")
{merges}
model = PeftModel.from_pretrained(model, "{ref}")  # this v{number} LoRA on top
tokenizer = AutoTokenizer.from_pretrained("{ref}")  # the Baize chat template
{GENERATE_SNIPPET}```

| | value |
|---|---|
{table}"""


def selection_table(select: dict, method: str) -> str:
    """The card's table of what the judge did: the selection (sft, dpo), or the online reward (grpo)."""
    if method == "grpo":
        return f"""| prompts | {select.get("prompts")} |
| completions scored (from the verdict cache) | {select.get("completions")} ({select.get("cache_hits")}) |
| completions without a parsable score (reward None) | {select.get("unscored")} |
| judge requests / cost (USD) | {select.get("spent", {}).get("calls")} / {select.get("spent", {}).get("cost_usd")} |
| mean reward, first steps -> last steps | {select.get("reward_first_steps")} -> {select.get("reward_last_steps")} |
"""
    best, every = select.get("best_score", {}), select.get("all_scores", {})
    return f"""| prompts judged | {select.get("judged_prompts")} |
| prompts selected (best >= min score) | {select.get("selected")} |
| below min score / unscored | {select.get("below_min_score")} / {select.get("unscored")} |
| best-candidate score mean / median / min / max | {best.get("mean")} / {best.get("median")} / {best.get("min")} / {best.get("max")} |
| all-candidate score mean (n) | {every.get("mean")} ({every.get("count")}) |
| preference pairs exported (best vs worst) | {select.get("preferences")} |
"""


def with_sdf_section(card_text: str, section: str) -> str:
    """The card with its SDF section (and everything after it) replaced; the SFT how-to, which loads base +
    adapter and is wrong for a stacked adapter, goes too."""
    cut = card_text.find("## Baize v")
    cut = cut if cut >= 0 and SDF_CARD_MARK in card_text[cut:] else card_text.find("## How to use")
    head = card_text[:cut] if cut >= 0 else card_text
    return head.rstrip() + "\n" + section


def rounds_card_section(rounds: list[dict], chart: str | None) -> str:
    """The lineage v1 -> v2 -> ... with each round's selection scores and gate result, and the win-rate chart."""
    rows = []
    for entry in rounds:
        gate, score, reward = entry["gate"], entry.get("selected_score") or {}, entry.get("reward")
        ci = gate.get("adjusted_win_rate_ci")
        flips = "–" if gate.get("flip_rate") is None else gate["flip_rate"]
        # what the round learned from: the answers selected and their mean score, or GRPO's reward as it trained
        learned = (f"online (GRPO) | reward {reward['reward_first_steps']} → {reward['reward_last_steps']}" if reward
                   else f"{entry['selected']} | {score.get('mean')}")  # fmt: skip
        rows.append(
            f"| {entry['round']} | v{entry['round']} → v{entry['round'] + 1} | {learned} | "
            f"{gate['win']}/{gate['tie']}/{gate['loss']} | {gate['adjusted_win_rate']} "
            f"[{ci[0] if ci else '–'}, {ci[1] if ci else '–'}] | {flips} | "
            f"{'passed' if gate['passed'] else 'no gain'} | {where(entry.get('served'))} |"
        )
    commands = {entry["served"]["sampled"]["command"] for entry in rounds if isinstance(entry.get("served"), dict)}
    served = "".join(
        f"\nThe servers were started by baize on each model merged into its base: `{c}`.\n" for c in commands
    )
    picture = f"\n![Adjusted win rate of each round's model against its parent]({chart})\n" if chart else ""
    how = {
        "pairwise": "both orders, one judge: a question is won only when both orders agree",
        "pointwise": "one judge scoring each answer on its own, 1-100: the higher score wins the question",
    }[rounds[-1]["gate"].get("mode", "pairwise") if rounds else "pairwise"]
    return f"""
{ROUNDS_CARD_HEADING}

Each round sampled from the newest model, judged, selected and trained the next one; a gate then compared the new
model with its parent on held-out questions
({how}).
A round passes when the lower bound of its adjusted win rate is above 0.5.

| round | models | answers selected | selected mean score | gate win/tie/loss | adjusted win rate [95% CI] | flip rate | gate | sampled and gated |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}
{served}{picture}"""


def where(served: dict | str | None) -> str:
    """Where a round's models answered: in the training process, or at the servers baize started on them."""
    if not isinstance(served, dict):
        return "in-process"
    return f"served at {len(served['sampled']['at'])} server(s)"
