"""What a model's tokens cost, the one place a cost is computed: collect's `prices` and the judges' `judge_prices`
are the same table, {MODEL: {prompt, completion, batch_prompt, batch_completion}} in USD per 1M tokens (batch
prices default to the OpenAI Batch API's discount), looked up by exact model name, else its longest configured
prefix (dated model names)."""

from __future__ import annotations

import yaml

BATCH_DISCOUNT = 0.5  # the OpenAI Batch API's price, relative to live calls, where no batch price is given
SIDES = ("prompt", "completion")


def price_table(table: dict | str | None) -> dict:
    """The table as a dict; the command line gives it as JSON or YAML text."""
    if isinstance(table, str):
        return yaml.safe_load(table) or {}
    return table or {}


def model_prices(table: dict | str | None, model: str) -> tuple[dict | None, dict | None]:
    """(live, batch) {prompt, completion} USD per 1M tokens of `model`, or (None, None) when it has no entry."""
    table = price_table(table)
    matches = [name for name in table if model.startswith(name)]
    if model not in table and not matches:
        return None, None
    entry = table[model] if model in table else table[max(matches, key=len)]
    live = {side: entry.get(side, 0.0) for side in SIDES}
    batch = {side: entry.get(f"batch_{side}", entry.get(side, 0.0) * BATCH_DISCOUNT) for side in SIDES}
    return live, batch


def cost_usd(prompt_tokens: float, completion_tokens: float, price: dict | None) -> float | None:
    """USD for these tokens at `price` (None: unpriced)."""
    if price is None:
        return None
    return (prompt_tokens * price.get("prompt", 0.0) + completion_tokens * price.get("completion", 0.0)) / 1e6


def wall_minutes(requests: float, tokens: float, rpm: int | None, tpm: int | None) -> float | None:
    """The minutes the RPM/TPM limits allow for this much work (None: no limit set)."""
    minutes = [m for m in (requests / rpm if rpm else None, tokens / tpm if tpm else None) if m is not None]
    return max(minutes) if minutes else None
