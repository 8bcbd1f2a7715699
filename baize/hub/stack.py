"""Push a self-distilled adapter as the stack it is: every local parent (v1, v2, ...) goes up first, each as its
own adapter repo, and every uploaded `sdf.json` names its parent by the repo id it got, so that `baize chat REPO`
(and `load_chat_model`) on another machine pulls and merges the parents in order."""

from __future__ import annotations

import json
import re
from pathlib import Path

from baize.hub.ids import hub_model_id
from baize.hub.lineage import (
    LINEAGE_FILE,
    ROUNDS_CARD_HEADING,
    ROUNDS_FILE,
    local_ancestors,
    read_lineage,
    sdf_card_section,
    version,
    with_sdf_section,
)
from baize.hub.push import PushPlan, plan_adapter_push
from baize.io.errors import HubError, UsageError


def adapter_of_round(folder: str | Path, round_name: str = "best") -> Path:
    """The adapter an SDF output folder's rounds.json names: the best round's model, or round N's."""
    path = Path(folder)
    summary = json.loads((path / ROUNDS_FILE).read_text())
    if round_name == "best":
        return Path(summary["best"])
    finished = {str(entry["round"]): entry["trained"] for entry in summary["rounds"]}
    if round_name not in finished:
        raise UsageError(
            f"--round {round_name}: {path / ROUNDS_FILE} has rounds {', '.join(finished) or 'none'}; pass one of "
            "them or best"
        )
    return Path(finished[round_name])


def stack_repo_ids(chain: list[Path], repo_id: str) -> list[str]:
    """The top adapter gets `repo_id`; each parent `<repo_id without a -vN ending>-v<its version>`."""
    stem = re.sub(r"-v\d+$", "", repo_id)
    ids = [f"{stem}-v{version(read_lineage(p)) if read_lineage(p) else 1}" for p in chain[:-1]]
    if repo_id in ids:
        raise UsageError(f"--repo_id {repo_id} is also the name a parent of the stack gets: choose another name")
    return [*ids, repo_id]


def plan_stack_push(
    folder: str | Path, repo_id: str, *, base_model: str | None = None, license: str | None = None,
    datasets: list[str] | None = None, include_checkpoints: bool = False, exclude: list[str] | None = None
) -> list[PushPlan]:  # fmt: skip
    """One plan per adapter of the stack, the oldest first; a single plan for an adapter whose parents are all on
    the Hub already (or that has none)."""
    top = Path(folder)
    chain = [*local_ancestors(top), top]
    ids = stack_repo_ids(chain, repo_id)
    plans = []
    for adapter, adapter_id in zip(chain, ids, strict=True):
        lineage = read_lineage(adapter)
        root_base = (lineage or {}).get("v1_base") or base_model
        plan = plan_adapter_push(adapter, adapter_id, base_model=root_base, license=license, datasets=datasets,
                                 include_checkpoints=include_checkpoints, exclude=exclude)  # fmt: skip
        if lineage is not None:
            below = ids[: ids.index(adapter_id)]
            parent = below[-1] if below else lineage["v1_parent"]
            if not below and not hub_model_id(parent):
                raise HubError(
                    f"{adapter}: its parent {parent} ({LINEAGE_FILE}) is neither a folder here nor a Hub id"
                )
            lineage = {**lineage, "v1_parent": parent}
            plan.rewritten[LINEAGE_FILE] = json.dumps(lineage, indent=2) + "\n"
            text = plan.card.text
            cut = text.find(ROUNDS_CARD_HEADING)
            rounds = text[cut:] if cut >= 0 else ""
            text = with_sdf_section(
                text[:cut] if cut >= 0 else text, sdf_card_section(lineage, adapter_id, below or None)
            )
            plan.card.text = text.rstrip() + ("\n\n" + rounds if rounds else "\n")
            plan.notes.append(f"{LINEAGE_FILE}: the parent is {parent}")
        plans.append(plan)
    return plans
