"""An endpoint role of a recipe, one spec whatever its keys are called: collect's teacher (`base_url`,
`api_key_env`, `teacher_model`), the judge of SDF and eval (`judge_*`), SDF's sampling servers (`sample_*`), eval's
answering endpoint (`answer_*`, the judge's where unset). Recipes keep their flat keys; a config marks each key
with its role and part on the field (`role`, `part`: baize.io.arguments), and `EndpointRole.of` reads them. The
limits, retries and time-out are the recipe's shared EndpointArguments."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from baize.llm.endpoint import Endpoint, EndpointArguments
from baize.llm.ratelimit import RateLimiter


@dataclass(frozen=True)
class EndpointRole:
    name: str
    base_urls: tuple[str | None, ...]  # one URL (None: the OpenAI API), or a stage's replicas; () for none
    api_key_env: str
    model: str | None = None
    gguf_file: str | None = None

    @classmethod
    def of(cls, config, name: str, fallback: str | None = None) -> EndpointRole:
        """The role `name` of `config`, from the fields marked with it; a part it leaves unset (None) is the
        `fallback` role's (eval's answering endpoint is the judge's unless set)."""
        parts: dict = {}
        for role in (name, fallback) if fallback else (name,):
            for f in dataclasses.fields(config):
                if f.metadata.get("role") == role and parts.get(f.metadata["part"]) is None:
                    parts[f.metadata["part"]] = getattr(config, f.name)
        urls = tuple(parts.get("base_urls") or ()) if "base_urls" in parts else (parts.get("base_url"),)
        return cls(name, urls, parts["api_key_env"], parts.get("model"), parts.get("gguf_file"))

    @property
    def base_url(self) -> str | None:
        return self.base_urls[0] if self.base_urls else None

    def endpoints(self, args: EndpointArguments, limiter: RateLimiter | None = None, **options) -> list[Endpoint]:
        """A client per URL, all under one limiter (default: the recipe's RPM/TPM limits)."""
        limiter = limiter or args.rate_limiter()
        return [Endpoint(url, self.api_key_env, limiter=limiter, max_retries=args.max_retries, timeout=args.timeout,
                         **options) for url in self.base_urls]  # fmt: skip

    def endpoint(self, args: EndpointArguments, limiter: RateLimiter | None = None, **options) -> Endpoint:
        return self.endpoints(args, limiter, **options)[0]

    def preflight(self, what: str) -> list[tuple[str, str | None, str]]:
        """The (what, URL, key variable) entries baize.llm.preflight checks for this role."""
        return [(what, url, self.api_key_env) for url in self.base_urls]
