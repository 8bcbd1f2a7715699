"""The teacher: chat calls by role through the shared endpoint client (baize.endpoint), with cost accounting."""

from __future__ import annotations

import logging

from baize.collect.config import CollectConfig
from baize.endpoint import Completion, Endpoint, RateLimiter, RoleUsage, Usage, resolve_model_name

logger = logging.getLogger(__name__)


class Teacher:
    """Chat calls by role, each through the limiter, with usage and cost charged to the dialogue and to the run."""

    def __init__(self, config: CollectConfig, limiter: RateLimiter, spent: Usage):
        self.config = config
        self.spent = spent  # everything this output dir has spent: journal totals + this run's calls
        self.unpriced: set[str] = set()
        model = resolve_model_name(config.teacher_model, config.teacher_gguf_file)
        self.models = {"assistant": model, "transcript": model, "user": config.user_model or model}
        self.endpoint = Endpoint(
            config.base_url,
            config.api_key_env,
            limiter=limiter,
            max_retries=config.max_retries,
            timeout=config.timeout,
        )

    @property
    def rate_limited(self) -> int:
        return self.endpoint.rate_limited

    @property
    def calls_without_usage(self) -> int:
        return self.endpoint.calls_without_usage

    def sampling(self, role: str) -> dict:
        prefix = "user" if role == "user" else "assistant"
        return {
            "temperature": getattr(self.config, f"{prefix}_temperature"),
            "top_p": getattr(self.config, f"{prefix}_top_p"),
            "max_tokens": getattr(self.config, f"{prefix}_max_tokens"),
        }

    async def chat(self, role: str, messages: list[dict], usage: Usage, stop: list[str] | None = None) -> Completion:
        completion, call = await self.endpoint.chat(
            self.models[role], messages, **self.sampling(role), stop=stop or None
        )
        self.charge(role, call, usage)
        return completion

    def charge(self, role: str, call: RoleUsage, usage: Usage) -> None:
        name = self.config.user_model if role == "user" and self.config.user_model else self.config.teacher_model
        price = self.config.price(name)
        if price is None:
            self.unpriced.add(name)
        else:
            call.cost_usd = (
                call.prompt_tokens * price.get("prompt", 0.0) + call.completion_tokens * price.get("completion", 0.0)
            ) / 1e6
        usage.add(role, call)
        self.spent.add(role, call)

    async def close(self) -> None:
        await self.endpoint.close()
