"""Preflight: before any long or paid work, the endpoints a run will call have their keys and answer. One cheap
request each; a failure is one line naming the endpoint, its URL and what to do."""

from __future__ import annotations

import asyncio

from baize.io.errors import EndpointError
from baize.llm.endpoint import describe_error, describe_url, resolve_api_key


def check_endpoints(endpoints: list[tuple[str, str | None, str]], timeout: float = 10.0) -> None:
    """Preflight, before any long or paid work: every (what, base_url, api_key_env) has its key and answers one
    cheap request (`GET /models`) within `timeout`; else one line naming it, its URL and what to do. Any HTTP
    answer but 401/403 (a server without /models, or one that fails listing them) means it is up."""
    import openai

    async def check(what: str, base_url: str | None, api_key_env: str) -> None:
        key = resolve_api_key(api_key_env, base_url)
        client = openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=timeout)
        try:
            await client.models.list()
        except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
            raise EndpointError(
                f"the {what} at {describe_url(base_url)} refused the key in {api_key_env} ({error.status_code}): "
                "set the right key"
            ) from None
        except openai.APIStatusError:  # it answered (some servers have no /models, or fail listing it): it is up
            pass
        except (openai.APIConnectionError, openai.APITimeoutError) as error:
            raise EndpointError(
                f"the {what} at {describe_url(base_url)} does not answer ({describe_error(error)}): start it, or fix "
                "its base URL; nothing was done yet (--skip_preflight true skips this check)"
            ) from None
        finally:
            await client.close()

    async def run() -> None:
        for what, base_url, api_key_env in dict.fromkeys(endpoints):  # each endpoint once
            await check(what, base_url, api_key_env)

    asyncio.run(run())
