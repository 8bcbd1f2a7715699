"""The v2 card's section: the lineage v1 -> v2, the judge, the selection figures, and how the stack loads."""

from __future__ import annotations

from baize.cards import GENERATE_SNIPPET, model_reference, model_title
from baize.models import LINEAGE_FILE, hub_model_id

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
{GENERATE_SNIPPET}```

| | value |
|---|---|
| prompts judged | {select.get("judged_prompts")} |
| prompts selected (best >= min score) | {select.get("selected")} |
| below min score / unscored | {select.get("below_min_score")} / {select.get("unscored")} |
| best-candidate score mean / median / min / max | {best.get("mean")} / {best.get("median")} / {best.get("min")} / {best.get("max")} |
| all-candidate score mean (n) | {every.get("mean")} ({every.get("count")}) |
| preference pairs exported (best vs worst) | {select.get("preferences")} |
"""
