"""Providers turn one attempt on one resolved endpoint into a `ProviderResult` (or a stream of deltas ending in one).

`LiteLLMProvider` serves every real vendor; `agent_platform.llm.mock.MockLLMProvider` serves `mock/...` models.
Providers raise only `LLMError` subclasses; retries, fallbacks, timeouts and records are the engine's job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from agent_platform.llm.errors import (
    InputTooLarge,
    LLMAPIError,
    LLMError,
    LLMRateLimited,
    LLMTimeout,
    ProviderNotConfigured,
)
from agent_platform.llm.types import LLMUsage, ToolCall

logger = logging.getLogger("agent_platform.llm")


@dataclass
class ProviderResult:
    content: str
    tool_calls: list[ToolCall]
    finish_reason: str | None
    usage: LLMUsage
    model: str | None = None
    response_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class Provider:
    name = "base"

    async def prepare(self) -> None:
        """Load what the provider needs before its first call, so that a slow import never counts against a
        call's timeout nor blocks the event loop."""
        return None

    async def complete(self, *, endpoint, api_key, messages, tools, params, timeout) -> ProviderResult:
        raise NotImplementedError

    def stream(self, *, endpoint, api_key, messages, tools, params, timeout) -> AsyncIterator[str | ProviderResult]:
        """Yields text deltas (str) and, last, the full ProviderResult."""
        raise NotImplementedError

    def count_tokens(self, *, endpoint, messages) -> int:
        return estimate_message_tokens(messages)


def text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


def estimate_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def estimate_message_tokens(messages: list[dict]) -> int:
    total = 3
    for message in messages:
        total += 4 + estimate_tokens(text_of(message.get("content")))
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            total += estimate_tokens(str(function.get("name", ""))) + estimate_tokens(
                str(function.get("arguments", ""))
            )
    return total


# --- litellm ---------------------------------------------------------------------------------------------------

_litellm = None


def litellm_module():
    """litellm, imported on first use (~3 s) and configured quietly, with its own retries off."""
    global _litellm
    if _litellm is None:
        import litellm

        litellm.suppress_debug_info = True
        litellm.drop_params = True
        litellm.telemetry = False
        litellm.num_retries = 0
        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
            logging.getLogger(name).setLevel(logging.WARNING)
        _litellm = litellm
    return _litellm


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _retry_after(exc: BaseException) -> float | None:
    for headers in (
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
    ):
        if not headers:
            continue
        try:
            value = headers.get("retry-after") or headers.get("Retry-After")
        except Exception:  # noqa: S112 - headers of unknown shape: no Retry-After
            continue
        if value:
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


def _never_reached(exc: BaseException) -> bool:
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        name = type(current).__name__
        if isinstance(current, ConnectionRefusedError) or name in {"ClientConnectorError", "ConnectError"}:
            return True
        if "Connection refused" in str(current) or "Cannot connect to host" in str(current):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def _clean(message: str, api_key: str | None) -> str:
    if api_key and len(api_key) >= 6:
        message = message.replace(api_key, "[redacted]")
    message = message.replace("litellm.", "").strip()
    return message[:500]


def map_litellm_error(exc: BaseException, *, endpoint, api_key: str | None) -> LLMError:
    """A litellm/openai exception as one of our typed errors (never carrying the key)."""
    lib = litellm_module()
    name = endpoint.name
    details = {"endpoint": name, "model": endpoint.model, "provider": endpoint.provider}
    text = _clean(str(exc), api_key)
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, (lib.Timeout, TimeoutError)):
        return LLMTimeout(f"Model endpoint '{name}' timed out.", details=details)
    if isinstance(exc, lib.RateLimitError):
        retry_after = _retry_after(exc)
        return LLMRateLimited(
            f"Model endpoint '{name}' is rate limited by the provider.", retry_after=retry_after, details=details
        )
    if isinstance(exc, lib.ContextWindowExceededError):
        return InputTooLarge(f"The request exceeds the context window of '{name}'.", details=details)
    if isinstance(exc, lib.AuthenticationError):
        error = LLMAPIError(
            f"The provider rejected the API key of model endpoint '{name}' (401). Check the credential.",
            retryable=False,
            details={**details, "status": 401},
        )
        error.fallback = True
        return error
    if isinstance(exc, lib.BadRequestError) and not isinstance(exc, lib.NotFoundError):
        if "LLM Provider NOT provided" in str(exc) or ("api_key" in str(exc).lower() and "must be set" in str(exc)):
            return ProviderNotConfigured(text, details=details)
        return LLMAPIError(
            f"Model endpoint '{name}' rejected the request: {text}",
            retryable=False,
            details={**details, "status": _status(exc) or 400},
        )
    if isinstance(exc, lib.NotFoundError):
        error = LLMAPIError(
            f"The provider does not know the model of endpoint '{name}': {text}",
            retryable=False,
            details={**details, "status": 404},
        )
        error.fallback = True
        return error
    status = _status(exc)
    if status is not None and 400 <= status < 500 and status not in (408, 409, 429):
        return LLMAPIError(
            f"Model endpoint '{name}' failed: {text}", retryable=False, details={**details, "status": status}
        )
    reached = not _never_reached(exc)
    return LLMAPIError(
        f"Model endpoint '{name}' failed: {text}",
        retryable=True,
        reached_vendor=reached,
        details={**details, **({"status": status} if status else {})},
    )


def _usage(raw: Any) -> LLMUsage:
    if raw is None:
        return LLMUsage()
    get = raw.get if isinstance(raw, dict) else lambda key, default=None: getattr(raw, key, default)
    prompt_details = get("prompt_tokens_details", None)
    completion_details = get("completion_tokens_details", None)

    def detail(obj: Any, key: str) -> int:
        if obj is None:
            return 0
        value = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
        return int(value or 0)

    return LLMUsage(
        input_tokens=int(get("prompt_tokens", 0) or 0),
        output_tokens=int(get("completion_tokens", 0) or 0),
        cached_tokens=detail(prompt_details, "cached_tokens") or int(get("cache_read_input_tokens", 0) or 0),
        reasoning_tokens=detail(completion_details, "reasoning_tokens"),
        # litellm counts Anthropic's cache writes in prompt_tokens too: they are priced apart from plain input
        cache_write_tokens=detail(prompt_details, "cache_creation_tokens")
        or int(get("cache_creation_input_tokens", 0) or 0),
    )


class LiteLLMProvider(Provider):
    name = "litellm"

    async def prepare(self) -> None:
        if _litellm is None:
            await asyncio.to_thread(litellm_module)

    @staticmethod
    def _kwargs(endpoint, api_key, messages, tools, params, timeout) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            **params,
            "model": endpoint.model,
            "messages": messages,
            "timeout": timeout,
            "num_retries": 0,
            "max_retries": 0,
        }
        if api_key:
            provider = endpoint.provider
            if provider == "bedrock":  # the secret key; aws_access_key_id and aws_region_name come from `extra`
                kwargs["aws_secret_access_key"] = api_key
            elif provider.startswith("vertex_ai"):  # a service-account JSON
                kwargs["vertex_credentials"] = api_key
            else:
                kwargs["api_key"] = api_key
        if endpoint.api_base:
            kwargs["api_base"] = endpoint.api_base
        if endpoint.extra:
            for key, value in endpoint.extra.items():
                kwargs.setdefault(key, value)
        if tools:
            kwargs["tools"] = tools
        return kwargs

    async def complete(self, *, endpoint, api_key, messages, tools, params, timeout) -> ProviderResult:
        lib = litellm_module()
        try:
            response = await lib.acompletion(**self._kwargs(endpoint, api_key, messages, tools, params, timeout))
        except Exception as exc:
            raise map_litellm_error(exc, endpoint=endpoint, api_key=api_key) from None
        try:
            choice = response.choices[0]
            message = choice.message
            calls = [
                ToolCall(id=tc.id or f"call_{i}", name=tc.function.name or "", arguments=tc.function.arguments or "")
                for i, tc in enumerate(message.tool_calls or ())
            ]
            return ProviderResult(
                content=message.content or "",
                tool_calls=calls,
                finish_reason=choice.finish_reason,
                usage=_usage(getattr(response, "usage", None)),
                model=getattr(response, "model", None),
                response_id=getattr(response, "id", None),
            )
        except (AttributeError, IndexError, TypeError) as exc:
            raise LLMAPIError(
                f"Model endpoint '{endpoint.name}' returned a malformed response.",
                details={"endpoint": endpoint.name},
            ) from exc

    async def stream(self, *, endpoint, api_key, messages, tools, params, timeout):
        lib = litellm_module()
        kwargs = self._kwargs(endpoint, api_key, messages, tools, params, timeout)
        kwargs["stream"] = True
        kwargs["stream_options"] = {"include_usage": True}
        try:
            response = await lib.acompletion(**kwargs)
        except Exception as exc:
            raise map_litellm_error(exc, endpoint=endpoint, api_key=api_key) from None
        parts: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        finish_reason = None
        usage = LLMUsage()
        response_id = model = None
        try:
            async for chunk in response:
                response_id = response_id or getattr(chunk, "id", None)
                model = model or getattr(chunk, "model", None)
                raw_usage = getattr(chunk, "usage", None)
                if raw_usage is not None:
                    usage = _usage(raw_usage)
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.finish_reason:
                    finish_reason = choice.finish_reason
                delta = choice.delta
                if delta is None:
                    continue
                text = delta.content
                if text:
                    parts.append(text)
                    yield text
                for tc in getattr(delta, "tool_calls", None) or ():
                    index = getattr(tc, "index", None) or 0
                    slot = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
                    if tc.id:
                        slot["id"] = tc.id
                    function = tc.function
                    if function is not None:
                        if function.name:
                            slot["name"] += function.name
                        if function.arguments:
                            slot["arguments"] += function.arguments
        except LLMError as exc:
            exc.usage = exc.usage or (usage if usage.total_tokens else None)
            raise
        except Exception as exc:
            error = map_litellm_error(exc, endpoint=endpoint, api_key=api_key)
            # the vendor bills what it reported before the stream broke
            error.usage = error.usage or (usage if usage.total_tokens else None)
            raise error from None
        yield ProviderResult(
            content="".join(parts),
            tool_calls=[
                ToolCall(id=slot["id"] or f"call_{index}", name=slot["name"], arguments=slot["arguments"])
                for index, slot in sorted(calls.items())
            ],
            finish_reason=finish_reason,
            usage=usage,
            model=model,
            response_id=response_id,
        )

    def count_tokens(self, *, endpoint, messages) -> int:
        try:
            return int(litellm_module().token_counter(model=endpoint.model, messages=messages))
        except Exception:
            return estimate_message_tokens(messages)


litellm_provider = LiteLLMProvider()


# --- custom providers (seed 000 `LLMRegistry.register_provider`) ------------------------------------------------

_custom: dict[str, Provider] = {}


def register_provider(name: str, provider: Provider) -> None:
    """Serve models `<name>/...` with `provider` instead of litellm (e.g. an in-house gateway)."""
    if name == "mock":
        raise ValueError("the 'mock' provider is built in")
    _custom[name] = provider


def unregister_provider(name: str) -> None:
    _custom.pop(name, None)
