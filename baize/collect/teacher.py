"""The teacher: chat calls by role through the shared endpoint client (baize.llm.endpoint), with cost accounting."""

from __future__ import annotations

import logging

from baize.collect.config import CollectConfig
from baize.io.errors import BudgetReached, MalformedReply
from baize.llm.endpoint import Completion, prompt_tokens_at_most
from baize.llm.prices import RoleUsage, Usage, cost_usd
from baize.llm.ratelimit import RateLimiter
from baize.llm.roles import EndpointRole
from baize.modeling.loading import resolve_model_name

logger = logging.getLogger(__name__)


class Teacher:
    """Chat calls by role, each through the limiter, with usage and cost charged to the dialogue and to the run."""

    def __init__(self, config: CollectConfig, limiter: RateLimiter, spent: Usage, ledger=None):
        self.config = config
        self.spent = spent  # everything this output dir may have been billed: the ledgers + this run's calls
        self.ledger = ledger  # baize.collect.journal.Ledger: every call reserved before it is sent
        self.retries: int | None = None  # HTTP retries per call (None: the client's max_retries)
        self.unpriced: set[str] = set()
        role = EndpointRole.of(config, "teacher")
        model = resolve_model_name(role.model, role.gguf_file)
        self.models = {"assistant": model, "transcript": model, "user": config.user_model or model}
        self.endpoint = role.endpoint(config, limiter, offline=config.batch_offline)

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
        params = {**self.sampling(role), "stop": stop or None}
        model = self.models[role]
        call_id = self.endpoint.call_id(model, messages, **params)
        # What the call can be billed at most (the prompt's upper bound + max_tokens): the ledger's reservation.
        reserved = RoleUsage(1, prompt_tokens_at_most(messages), params.get("max_tokens") or 0)
        self.price(role, reserved)
        # A batch sends every dialogue's call at once: the budget holds their reservations until they settle, so
        # that the dialogues started after them see what the batch may cost; a call that does not fit is not sent.
        held = self.endpoint.batch is not None
        if held:  # before any await: the seeds that start next see it
            if call_id not in self.endpoint.batch.results:  # an answer already stored was paid for: it is read
                self.check_budget(reserved)
            self.spent.add(role, reserved)
        call: RoleUsage | None = None  # None: not sent (or cancelled in flight): it stays at its reservation
        reply: Completion | None = None
        unusable = 0
        try:
            if self.ledger is not None:  # on disk before the request leaves: a kill cannot hide what it may cost
                entry = {"call": call_id, "role": role, "reserved_tokens": reserved.prompt_tokens
                         + reserved.completion_tokens, "reserved_cost_usd": reserved.cost_usd}  # fmt: skip
                if held:  # settled from the provider's answer when a killed run's batch is re-attached
                    entry["batch"] = True
                await self.ledger.append_durably(entry)  # the writer thread syncs it; the event loop goes on
            call = RoleUsage(calls=1)  # a request that failed (an HTTP error after the retries) was not billed
            reply, call = await self.endpoint.chat(model, messages, retries=self.retries, **params)
            unusable = reply.unusable
        except MalformedReply as error:  # 200s the client could not use: the provider billed them
            call, unusable = error.billed or call, error.unusable
            raise
        except Exception:  # an HTTP error: settled below at what it was billed (nothing)
            raise
        except BaseException:  # cancelled (Ctrl-C) in flight: it may have been billed; it stays at its reservation
            call = None
            raise
        finally:
            if held:
                self.spent.add(role, RoleUsage(-1, -reserved.prompt_tokens, -reserved.completion_tokens,
                                               -reserved.cost_usd))  # fmt: skip
            if call is not None:
                self.settle(role, call_id, call, usage, reply, unusable)
        return reply

    def check_budget(self, reserved: RoleUsage) -> None:
        """Refuse a call whose reservation would take the spend (every settled and reserved call) past a budget."""
        total = self.spent.total
        tokens = total.prompt_tokens + total.completion_tokens + reserved.prompt_tokens + reserved.completion_tokens
        if reason := self.config.budget_reached(total.cost_usd + reserved.cost_usd, tokens, exceeded=True):
            raise BudgetReached(reason)

    def settle(self, role: str, call_id: str, call: RoleUsage, usage: Usage, reply: Completion | None, unusable: int):
        self.price(role, call)
        billed = call.prompt_tokens + call.completion_tokens > 0
        if reply is not None or billed:
            usage.add(role, call)
        if (reply is not None and not reply.replayed) or (reply is None and billed):
            self.spent.add(role, call)  # (a stored batch answer was counted before)
        if self.ledger is not None:
            settlement = {"call": call_id, "role": role, **call.as_dict()}
            if unusable:  # answers that were no completion, counted at their usage or (cut bodies) reservation
                settlement["unusable"] = unusable
            self.ledger.append_soon(settlement)

    def price(self, role: str, call: RoleUsage) -> None:
        name = self.config.user_model if role == "user" and self.config.user_model else self.config.teacher_model
        price = self.config.price(name)
        if price is None:
            self.unpriced.add(name)
        else:
            call.cost_usd = cost_usd(call.prompt_tokens, call.completion_tokens, price)

    async def close(self) -> None:
        await self.endpoint.close()
