"""The one way the platform talks to a model. Import this module, never litellm.

    from agent_platform.llm.client import acomplete, complete, astream, count_tokens, model_info

`endpoint` is the name of a `ModelEndpoint` (admin-managed); `mock/<anything>` works without any row.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing

from agent_platform.api.errors import PlatformError
from agent_platform.llm import engine, middleware, providers
from agent_platform.llm.errors import (
    InputTooLarge,
    LLMAPIError,
    LLMError,
    LLMRateLimited,
    LLMTimeout,
    ModelDisabled,
    ModelNotFound,
    ProviderNotConfigured,
)
from agent_platform.llm.registry import registry
from agent_platform.llm.sync import run_sync
from agent_platform.llm.types import LLMResponse, LLMUsage, ModelInfo, StreamChunk, ToolCall


async def acomplete(
    *,
    endpoint: str,
    messages: list[dict],
    tools: list[dict] | None = None,
    params: dict | None = None,
    pii_mask: bool = False,
    use_cache: bool | None = None,
    timeout: float | None = None,
) -> LLMResponse:
    """One chat completion through the call path: input limits → PII masking → cache → per attempt (budget hook,
    provider under a timeout, one record) with retry (exponential backoff + jitter, Retry-After) and fallback.

    - `params`: model parameters (temperature, max_tokens, ...) over the endpoint's defaults.
    - `pii_mask`: replace personal data with typed placeholders before sending; the reply is de-anonymised.
    - `use_cache`: None = the endpoint's setting (identical temperature-0 requests); True = always; False = never.
    - `timeout`: seconds per attempt (default: the endpoint's); the whole call is bounded by attempts × timeout
      plus backoff.
    Raises `LLMError` subclasses (LLM_API_ERROR 502, LLM_API_TIMEOUT 504, LLM_RATE_LIMITED 429,
    PROVIDER_NOT_CONFIGURED, MODEL_NOT_FOUND, MODEL_DISABLED, LLM_INPUT_TOO_LARGE) or a hook's `PlatformError`.
    """
    request = None
    if middleware.middlewares():
        request = await middleware.pre_process(
            middleware.LLMRequest(endpoint, messages, tools, params, pii_mask, use_cache, timeout)
        )
        endpoint, messages, tools = request.endpoint, request.messages, request.tools
        params, pii_mask, use_cache, timeout = request.params, request.pii_mask, request.use_cache, request.timeout
    response = await engine.acomplete(
        endpoint=endpoint,
        messages=messages,
        tools=tools,
        params=params,
        pii_mask=pii_mask,
        use_cache=use_cache,
        timeout=timeout,
    )
    return response if request is None else await middleware.post_process(request, response)


def complete(
    *,
    endpoint: str,
    messages: list[dict],
    tools: list[dict] | None = None,
    params: dict | None = None,
    pii_mask: bool = False,
    use_cache: bool | None = None,
    timeout: float | None = None,
) -> LLMResponse:
    """Sync `acomplete` for plain Django code and Celery tasks (runs on the LLM layer's own event loop thread)."""
    _preresolve(endpoint)
    return run_sync(
        acomplete(
            endpoint=endpoint,
            messages=messages,
            tools=tools,
            params=params,
            pii_mask=pii_mask,
            use_cache=use_cache,
            timeout=timeout,
        )
    )


async def astream(
    *,
    endpoint: str,
    messages: list[dict],
    tools: list[dict] | None = None,
    params: dict | None = None,
    pii_mask: bool = False,
    timeout: float | None = None,
) -> AsyncIterator[StreamChunk]:
    """Stream a completion: text deltas, tool calls once complete, and the full response on the last chunk.

    Retries and fallbacks happen only before the first text reaches the caller; a stream that breaks later raises.
    `timeout` bounds the wait for each chunk. Streams are never cached.
    """
    request = None
    if middleware.middlewares():
        request = await middleware.pre_process(
            middleware.LLMRequest(endpoint, messages, tools, params, pii_mask, None, timeout, stream=True)
        )
        endpoint, messages, tools = request.endpoint, request.messages, request.tools
        params, pii_mask, timeout = request.params, request.pii_mask, request.timeout
    inner = engine.astream(
        endpoint=endpoint, messages=messages, tools=tools, params=params, pii_mask=pii_mask, timeout=timeout
    )
    async with aclosing(inner):  # closing this stream closes the provider's (and records the attempt)
        async for chunk in inner:
            if request is not None and chunk.response is not None:
                chunk = StreamChunk(response=await middleware.post_process(request, chunk.response))
            yield chunk


def count_tokens(*, endpoint: str, messages: list[dict]) -> int:
    """Input tokens of `messages` for the endpoint's model (litellm's tokenizer; an estimate for the mock)."""
    resolved = registry.resolve(endpoint, allow_disabled=True)
    return engine.provider_for(resolved).count_tokens(endpoint=resolved, messages=messages)


def model_info(*, endpoint: str) -> ModelInfo:
    return registry.resolve(endpoint, allow_disabled=True).info()


def list_models(*, include_disabled: bool = True) -> list[ModelInfo]:
    return registry.list_models(include_disabled=include_disabled)


def provider_libraries_load(*, endpoints: Iterable[str]) -> bool:
    """Import the provider library (litellm) that any of these endpoints (or their fallbacks) is served by, now,
    before a run's first call; True when it was needed.

    litellm is imported on first use, which takes seconds — more than an endpoint's whole attempt timeout on a busy
    machine (14 s measured on two loaded cores). In a fresh worker process that import ran inside the first call's
    `asyncio.timeout`, blocking the event loop: the call failed with LLM_API_TIMEOUT although the model answered in
    milliseconds (so a resumed run could finish with a row failed that never reached the model), and the heartbeat
    stalled meanwhile. Runs on mock endpoints only never import it."""
    pending, seen = sorted(endpoints), set()
    while pending:
        name = pending.pop()
        if not name or name in seen:
            continue
        seen.add(name)
        try:
            endpoint = registry.resolve(name, allow_disabled=True)
        except PlatformError:  # a missing endpoint fails its calls with a clear error when called
            continue
        if engine.provider_for(endpoint) is providers.litellm_provider:
            providers.litellm_module()
            return True
        pending.extend(endpoint.fallbacks)
    return False


def _preresolve(name: str) -> None:
    """Warm the endpoint cache from the caller's thread (and its database connection), fallbacks included."""
    if not isinstance(name, str) or not name:
        return
    entry = registry.lookup(name)
    for fallback in entry.fallbacks if entry else ():
        registry.lookup(fallback)


__all__ = [
    "InputTooLarge",
    "LLMAPIError",
    "LLMError",
    "LLMRateLimited",
    "LLMResponse",
    "LLMTimeout",
    "LLMUsage",
    "ModelDisabled",
    "ModelInfo",
    "ModelNotFound",
    "ProviderNotConfigured",
    "StreamChunk",
    "ToolCall",
    "acomplete",
    "astream",
    "complete",
    "count_tokens",
    "list_models",
    "model_info",
    "provider_libraries_load",
]
