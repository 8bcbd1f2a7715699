"""Token usage by role (`RoleUsage`, `Usage`) and what a model's tokens cost, the one place a cost is computed: collect's `prices` and the judges' `judge_prices`
are the same table, {MODEL: {prompt, completion, batch_prompt, batch_completion}} in USD per 1M tokens (batch
prices default to the OpenAI Batch API's discount), looked up by exact model name, else its longest configured
prefix (dated model names)."""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass
class RoleUsage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, other: RoleUsage) -> None:
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost_usd += other.cost_usd

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Usage:
    """Token usage and cost by role (`user` simulator, `assistant` turns / `transcript` calls)."""

    roles: dict[str, RoleUsage] = field(default_factory=dict)

    def add(self, role: str, usage: RoleUsage) -> None:
        self.roles.setdefault(role, RoleUsage()).add(usage)

    def merge(self, other: Usage) -> None:
        for role, usage in other.roles.items():
            self.add(role, usage)

    @property
    def total(self) -> RoleUsage:
        total = RoleUsage()
        for usage in self.roles.values():
            total.add(usage)
        return total

    def summary(self) -> dict:
        """The `usage` column: totals over both roles."""
        total = self.total
        return {
            "calls": total.calls,
            "prompt_tokens": total.prompt_tokens,
            "completion_tokens": total.completion_tokens,
            "total_tokens": total.prompt_tokens + total.completion_tokens,
            "cost_usd": round(total.cost_usd, 8),
        }

    def by_role(self) -> dict:
        return {role: dict(usage.__dict__) for role, usage in self.roles.items()}

    @classmethod
    def from_by_role(cls, data: dict) -> Usage:
        return cls({role: RoleUsage(**values) for role, values in (data or {}).items()})
