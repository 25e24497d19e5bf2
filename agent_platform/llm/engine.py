"""The call path: input checks → PII masking → cache → (per endpoint, per attempt: budget check → provider under a
timeout → record) with retry (exponential backoff, jitter, Retry-After) and fallback to the next endpoint.

Every attempt — success, error, refusal, cancellation — emits exactly one `LLMCallRecord` to the hub; a cache hit
emits one record too (cache_hit, not billable). Nothing here blocks the event loop or queries the database on the
hot path once an endpoint is resolved (see `registry`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from agent_platform.api.errors import PlatformError, ValidationFailed
from agent_platform.llm import conf
from agent_platform.llm.conf import RESERVED_PARAMS
from agent_platform.llm.errors import (
    InputTooLarge,
    LLMAPIError,
    LLMError,
    LLMTimeout,
    ModelNotFound,
    ProviderNotConfigured,
)
from agent_platform.llm.providers import ProviderResult, estimate_message_tokens, litellm_provider, text_of
from agent_platform.llm.providers import _custom as _custom_providers
from agent_platform.llm.registry import ResolvedEndpoint, registry
from agent_platform.llm.types import LLMResponse, LLMUsage, StreamChunk, ToolCall
from agent_platform.observability.context import current_caller, current_trace, new_call_id, new_span_id, new_trace_id
from agent_platform.observability.hooks import LLMCallEstimate, LLMCallRecord, hub
from agent_platform.security.credentials import (
    AMBIENT_PROVIDERS,
    KEYLESS_PROVIDERS,
    env_api_key,
    not_configured_message,
)

logger = logging.getLogger("agent_platform.llm")

VALID_ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function"})
CACHE_PREFIX = "llm:resp:"


# Identifiers (not secrets) from a fast PRNG seeded from the OS: `secrets` reads /dev/urandom on every call, which
# costs tens of microseconds per id on a busy host. Reseeded in forked children so workers never share a sequence.
def provider_for(endpoint: ResolvedEndpoint):
    if endpoint.provider == "mock":
        from agent_platform.llm.mock import mock_provider_for

        return mock_provider_for(endpoint.model)
    if _custom_providers:
        custom = _custom_providers.get(endpoint.provider)
        if custom is not None:
            return custom
    return litellm_provider


# --- request preparation ---------------------------------------------------------------------------------------


def validate_request(messages: Any, tools: Any, params: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise ValidationFailed("messages: a non-empty list of message objects is required.", field="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in VALID_ROLES:
            raise ValidationFailed(
                f"messages[{index}]: each message needs a role (system, user, assistant or tool).",
                field=f"messages[{index}].role",
            )
    if tools is not None and (
        not isinstance(tools, list) or not all(isinstance(t, dict) and t.get("function") for t in tools)
    ):
        raise ValidationFailed("tools: a list of OpenAI-format function tool specs is required.", field="tools")
    if params is not None:
        if not isinstance(params, dict):
            raise ValidationFailed("params: must be an object.", field="params")
        reserved = RESERVED_PARAMS.intersection(params)
        if reserved:
            raise ValidationFailed(
                f"params: {', '.join(sorted(reserved))} cannot be set through params.", field="params"
            )


def input_chars(messages: list[dict]) -> int:
    total = 0
    for message in messages:
        content = message.get("content")
        total += len(content) if isinstance(content, str) else len(text_of(content))
        for call in message.get("tool_calls") or ():
            total += len(str((call.get("function") or {}).get("arguments", "")))
    return total


def check_size(endpoint: ResolvedEndpoint, messages: list[dict], estimated_tokens: int) -> None:
    limit = conf.get().max_input_chars
    chars = input_chars(messages)
    if chars > limit:
        raise InputTooLarge(
            f"messages: {chars} characters exceed the input limit of {limit} (LLM_MAX_INPUT_CHARS).",
            field="messages",
            details={"characters": chars, "limit": limit},
        )
    window = endpoint.context_window
    if window and estimated_tokens > window:
        raise InputTooLarge(
            f"messages: about {estimated_tokens} tokens exceed the context window of '{endpoint.name}' ({window}).",
            field="messages",
            details={"estimated_tokens": estimated_tokens, "context_window": window, "endpoint": endpoint.name},
        )


def api_key_for(endpoint: ResolvedEndpoint) -> str | None:
    if endpoint.api_key:
        return endpoint.api_key
    if endpoint.provider in KEYLESS_PROVIDERS:
        return None
    key = env_api_key(endpoint.provider)
    if key or endpoint.provider in AMBIENT_PROVIDERS:
        return key
    raise ProviderNotConfigured(
        not_configured_message(endpoint=endpoint.name, model=endpoint.model, provider=endpoint.provider),
        field="endpoint",
        details={"endpoint": endpoint.name, "provider": endpoint.provider},
    )


def backoff_delay(attempt: int, retry_after: float | None) -> float | None:
    """Seconds before retry number `attempt` (1-based); None when Retry-After asks for longer than we wait."""
    settings = conf.get()
    if retry_after is not None and retry_after > settings.max_retry_after:
        return None
    delay = min(settings.retry_max_delay, settings.retry_base_delay * (2 ** (attempt - 1)))
    delay = delay / 2 + random.uniform(0, delay / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def _cache_key(endpoint: ResolvedEndpoint, messages, tools, params) -> str:
    # The endpoint version is part of the key: editing any endpoint in the admin retires cached replies.
    payload = json.dumps(
        [registry.version, endpoint.name, endpoint.model, endpoint.api_base, messages, tools, params],
        sort_keys=True,
        default=str,
    )
    return CACHE_PREFIX + hashlib.sha256(payload.encode()).hexdigest()


def _cacheable(endpoint: ResolvedEndpoint, params: dict, use_cache: bool | None) -> bool:
    if use_cache is False:
        return False
    if use_cache is True:
        return True
    return endpoint.cache_enabled and params.get("temperature") in (0, 0.0)


@dataclass
class _Call:
    """State shared by every attempt of one logical call."""

    endpoint_name: str
    messages: list[dict]  # as sent (masked when PII masking is on)
    tools: list[dict] | None
    params: dict
    timeout: float | None
    stream: bool
    call_id: str = field(default_factory=new_call_id)
    trace_id: str = ""
    parent_span_id: str | None = None
    caller: Any = None
    anonymizer: Any = None
    attempt: int = 0
    tried: list[str] = field(default_factory=list)
    cost: Decimal | None = None  # what the attempts so far cost (observers' annotations), None when none was priced

    def __post_init__(self) -> None:
        trace = current_trace()
        if trace is None:
            self.trace_id = new_trace_id()
        else:
            self.trace_id, self.parent_span_id = trace.trace_id, trace.span_id
        self.caller = current_caller()


def _prepare(endpoint_name, messages, tools, params, pii_mask, timeout, stream) -> _Call:
    validate_request(messages, tools, params)
    anonymizer = None
    if pii_mask:
        from agent_platform.security.pii import Anonymizer

        anonymizer = Anonymizer()
        messages = anonymizer.anonymize_messages(messages)
    else:
        messages = list(messages)
    return _Call(endpoint_name, messages, tools, dict(params or {}), timeout, stream, anonymizer=anonymizer)


def _record(
    call: _Call,
    endpoint: ResolvedEndpoint,
    *,
    span_id: str,
    started_at: datetime,
    started: float,
    params: dict,
    result: ProviderResult | None = None,
    error: PlatformError | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
    output: str | None = None,
    ttft_ms: float | None = None,
    cache_hit: bool = False,
    billable: bool = True,
    latency_ms: float | None = None,
) -> LLMCallRecord:
    usage = result.usage if result is not None else getattr(error, "usage", None)
    if error is not None:
        error_code, error_message = error.code, error.message
        billable = billable and getattr(error, "reached_vendor", True)
    messages = call.messages
    output = result.content if result is not None else output
    tool_calls = [tc.as_dict() for tc in result.tool_calls] if result is not None else []
    if getattr(call.caller, "pii_mask", None):  # for an agent whose policy masks PII: the record is stored masked
        from agent_platform.security.pii import mask_for_storage

        messages, output, tool_calls = (
            mask_for_storage(messages),
            mask_for_storage(output),
            mask_for_storage(tool_calls),
        )
        error_message = mask_for_storage(error_message)
    return LLMCallRecord(
        attempt_id=f"{call.call_id}:{call.attempt}",
        call_id=call.call_id,
        trace_id=call.trace_id,
        span_id=span_id,
        parent_span_id=call.parent_span_id,
        endpoint=endpoint.name,
        model=endpoint.model,
        provider=endpoint.provider,
        started_at=started_at,
        ended_at=datetime.now(UTC),
        messages=messages,
        parameters=params,
        output=output,
        tool_calls=tool_calls,
        finish_reason=result.finish_reason if result is not None else None,
        input_tokens=usage.input_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        cached_tokens=usage.cached_tokens if usage else 0,
        reasoning_tokens=usage.reasoning_tokens if usage else 0,
        cache_write_tokens=usage.cache_write_tokens if usage else 0,
        latency_ms=latency_ms if latency_ms is not None else (time.perf_counter() - started) * 1000,
        time_to_first_token_ms=ttft_ms,
        stream=call.stream,
        status="ok" if error_code is None else "error",
        error_code=error_code,
        error_message=error_message,
        attempt=call.attempt,
        is_fallback=endpoint.name != call.endpoint_name,
        cache_hit=cache_hit,
        billable=billable,
        caller=call.caller,
    )


def _emit(call: _Call, record: LLMCallRecord) -> dict[str, Any]:
    """Report one attempt to the observers and add its cost to the call's: a call costs what all of its attempts
    cost (a failed attempt the vendor billed too), so that a run's cost equals the sum of its cost records."""
    annotations = hub.emit_llm_call(record)
    cost = annotations.get("cost")
    if cost is not None:
        call.cost = (call.cost or Decimal(0)) + Decimal(cost)
    return annotations


def _response(
    call: _Call, endpoint: ResolvedEndpoint, result: ProviderResult, *, span_id, latency_ms, ttft_ms, annotations, extra
) -> LLMResponse:
    content, tool_calls = result.content, result.tool_calls
    if call.anonymizer is not None:
        content = call.anonymizer.deanonymize(content)
        tool_calls = [ToolCall(tc.id, tc.name, call.anonymizer.deanonymize(tc.arguments)) for tc in tool_calls]
    metadata = {
        "response_id": result.response_id,
        "provider_model": result.model,
        "attempts": call.attempt,
        "endpoints_tried": list(call.tried),
        "cache_hit": False,
        **result.metadata,
        **extra,
    }
    if call.anonymizer is not None:
        metadata["pii_masked"] = call.anonymizer.count
    return LLMResponse(
        content=content,
        tool_calls=tool_calls,
        model=endpoint.model,
        endpoint=endpoint.name,
        provider=endpoint.provider,
        finish_reason=result.finish_reason,
        usage=result.usage,
        latency_ms=latency_ms,
        time_to_first_token_ms=ttft_ms,
        cost=call.cost,
        call_id=call.call_id,
        trace_id=call.trace_id,
        span_id=span_id,
        metadata=metadata,
    )


def _chain(primary: ResolvedEndpoint) -> list[str]:
    """Names to try in order: the primary endpoint, then its fallbacks (each once)."""
    if not primary.fallbacks:
        return [primary.name]
    names = [primary.name]
    for name in primary.fallbacks:
        if name not in names:
            names.append(name)
    return names


async def _fallback(name: str, primary: ResolvedEndpoint) -> ResolvedEndpoint | None:
    """A fallback endpoint, resolved only when needed; None (logged) when it is missing or disabled."""
    try:
        return await registry.aresolve(name)
    except LLMError as exc:
        logger.warning("skipping fallback endpoint %s of %s: %s", name, primary.name, exc.code)
        return None


async def resolve(name: str) -> ResolvedEndpoint:
    if not isinstance(name, str) or not name:
        raise ModelNotFound("endpoint: a model endpoint name is required.", field="endpoint")
    entry = registry.cached(name)
    if entry and entry.enabled:
        return entry
    return await registry.aresolve(name)


async def _before(
    call: _Call, endpoint: ResolvedEndpoint, params: dict, estimated: int, span_id: str, started_at: datetime
) -> None:
    if not hub.observers:
        return
    await hub.abefore_llm_call(
        LLMCallEstimate(
            attempt_id=f"{call.call_id}:{call.attempt}",
            endpoint=endpoint.name,
            model=endpoint.model,
            provider=endpoint.provider,
            estimated_input_tokens=estimated,
            max_output_tokens=int(params.get("max_tokens") or params.get("max_completion_tokens") or 0)
            or (endpoint.max_output_tokens or 0),
            caller=call.caller,
            call_id=call.call_id,
            trace_id=call.trace_id,
            span_id=span_id,
            started_at=started_at,
        )
    )


async def _guarded_before(call, ep, params, estimated, span_id, started_at, started) -> None:
    """The budget hook; a refusal or a cancellation still leaves one (unbilled) record for the attempt."""
    try:
        await _before(call, ep, params, estimated, span_id, started_at)
    except PlatformError as exc:
        _emit(
            call,
            _record(
                call,
                ep,
                span_id=span_id,
                started_at=started_at,
                started=started,
                params=params,
                error=exc,
                billable=False,
            ),
        )
        raise
    except asyncio.CancelledError:
        _emit(
            call,
            _record(
                call,
                ep,
                span_id=span_id,
                started_at=started_at,
                started=started,
                params=params,
                error_code="RUN_CANCELLED",
                error_message="The call was cancelled.",
                billable=False,
            ),
        )
        raise


@dataclass
class _Target:
    """One endpoint of the chain, ready to be called."""

    ep: ResolvedEndpoint
    provider: Any
    api_key: str | None
    params: dict
    timeout: float
    attempts: int


async def _targets(call: _Call, primary: ResolvedEndpoint, estimated: int) -> AsyncIterator[_Target]:
    """The primary endpoint, then each usable fallback (resolved only when reached)."""
    for position, name in enumerate(_chain(primary)):
        ep = primary if position == 0 else await _fallback(name, primary)
        if ep is None:
            continue
        try:
            check_size(ep, call.messages, estimated)
            api_key = api_key_for(ep)
        except LLMError:
            if position == 0:
                raise  # the endpoint asked for cannot serve this request: say why
            logger.warning("skipping fallback endpoint %s: not usable for this request", ep.name)
            continue
        call.tried.append(ep.name)
        provider = provider_for(ep)
        await provider.prepare()
        yield _Target(
            ep=ep,
            provider=provider,
            api_key=api_key,
            params={**ep.default_params, **call.params},
            timeout=call.timeout or ep.timeout,
            attempts=1 + max(0, ep.max_retries),
        )


async def _begin_attempt(call: _Call, target: _Target, estimated: int) -> tuple[str, datetime, float]:
    """Number the attempt, give it a span, and ask the observers (budgets) first."""
    call.attempt += 1
    span_id = new_span_id()
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    await _guarded_before(call, target.ep, target.params, estimated, span_id, started_at, started)
    return span_id, started_at, started


async def _retry_same_endpoint(error: LLMError, call: _Call, attempt: int, attempts: int) -> bool:
    """After a failed attempt: True to try the same endpoint again (after its backoff), False to go on to the
    next endpoint; raises the final error when neither is allowed."""
    if error.retryable and attempt < attempts:
        delay = backoff_delay(attempt, error.retry_after)
        if delay is not None:
            await asyncio.sleep(delay)
            return True
    if error.retryable or error.fallback:
        return False
    raise _final(error, call)


# --- complete --------------------------------------------------------------------------------------------------


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
    primary = await resolve(endpoint)
    call = _prepare(endpoint, messages, tools, params, pii_mask, timeout, False)
    estimated = estimate_message_tokens(call.messages)
    cache_key = None
    first_params = {**primary.default_params, **call.params}
    if _cacheable(primary, first_params, use_cache):
        cache_key = _cache_key(primary, call.messages, tools, first_params)
        hit = await _cache_get(cache_key)
        if hit is not None:
            return _cache_hit(call, primary, hit, first_params)
    last_error: LLMError | None = None
    async for target in _targets(call, primary, estimated):
        ep, params_, attempt_timeout = target.ep, target.params, target.timeout
        for attempt in range(1, target.attempts + 1):
            span_id, started_at, started = await _begin_attempt(call, target, estimated)
            try:
                async with asyncio.timeout(attempt_timeout * 1.05 + 0.05):
                    result = await target.provider.complete(
                        endpoint=ep,
                        api_key=target.api_key,
                        messages=call.messages,
                        tools=tools,
                        params=params_,
                        timeout=attempt_timeout,
                    )
            except TimeoutError:
                error: LLMError = LLMTimeout(
                    f"Model endpoint '{ep.name}' did not answer within {attempt_timeout:g} s.",
                    details={"endpoint": ep.name, "timeout_seconds": attempt_timeout},
                )
            except LLMError as exc:
                error = exc
            except asyncio.CancelledError:
                _emit(
                    call,
                    _record(
                        call,
                        ep,
                        span_id=span_id,
                        started_at=started_at,
                        started=started,
                        params=params_,
                        error_code="RUN_CANCELLED",
                        error_message="The call was cancelled.",
                    ),
                )
                raise
            except Exception as exc:  # a provider bug must still produce a record and a typed error
                logger.exception("provider %s failed unexpectedly", ep.provider)
                error = LLMAPIError(f"Model endpoint '{ep.name}' failed: {type(exc).__name__}", retryable=False)
            else:
                latency_ms = (time.perf_counter() - started) * 1000
                annotations = _emit(
                    call,
                    _record(
                        call,
                        ep,
                        span_id=span_id,
                        started_at=started_at,
                        started=started,
                        params=params_,
                        result=result,
                        latency_ms=latency_ms,
                    ),
                )
                if cache_key is not None and ep is primary:
                    await _cache_set(cache_key, result)
                return _response(
                    call,
                    ep,
                    result,
                    span_id=span_id,
                    latency_ms=latency_ms,
                    ttft_ms=None,
                    annotations=annotations,
                    extra={},
                )
            _emit(
                call,
                _record(call, ep, span_id=span_id, started_at=started_at, started=started, params=params_, error=error),
            )
            last_error = error
            if not await _retry_same_endpoint(error, call, attempt, target.attempts):
                break
    assert last_error is not None
    raise _final(last_error, call)


def _final(error: LLMError, call: _Call) -> LLMError:
    error.details.setdefault("attempts", call.attempt)
    error.details.setdefault("endpoints_tried", list(call.tried))
    error.cost = call.cost  # the failed call's attempts may still have been billed: the run counts them
    return error


# --- cache -----------------------------------------------------------------------------------------------------


async def _cache_get(key: str) -> dict | None:
    from agent_platform.cache_safe import safe_cache

    try:
        return await safe_cache.aget(key)
    except Exception:
        logger.warning("LLM response cache unavailable (get)", exc_info=True)
        return None


async def _cache_set(key: str, result: ProviderResult) -> None:
    from agent_platform.cache_safe import safe_cache

    value = {
        "content": result.content,
        "tool_calls": [tc.as_dict() for tc in result.tool_calls],
        "finish_reason": result.finish_reason,
        "usage": [
            result.usage.input_tokens,
            result.usage.output_tokens,
            result.usage.cached_tokens,
            result.usage.reasoning_tokens,
            result.usage.cache_write_tokens,
        ],
        "model": result.model,
        "response_id": result.response_id,
    }
    try:
        await safe_cache.aset(key, value, conf.get().cache_ttl)
    except Exception:
        logger.warning("LLM response cache unavailable (set)", exc_info=True)


def _cache_hit(call: _Call, endpoint: ResolvedEndpoint, hit: dict, params: dict) -> LLMResponse:
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    call.attempt = 1
    call.tried.append(endpoint.name)
    usage = LLMUsage(*hit["usage"])
    result = ProviderResult(
        content=hit["content"],
        tool_calls=[ToolCall(**tc) for tc in hit["tool_calls"]],
        finish_reason=hit["finish_reason"],
        usage=usage,
        model=hit.get("model"),
        response_id=hit.get("response_id"),
    )
    span_id = new_span_id()
    latency_ms = (time.perf_counter() - started) * 1000
    annotations = _emit(
        call,
        _record(
            call,
            endpoint,
            span_id=span_id,
            started_at=started_at,
            started=started,
            params=params,
            result=result,
            cache_hit=True,
            billable=False,
            latency_ms=latency_ms,
        ),
    )
    response = _response(
        call,
        endpoint,
        result,
        span_id=span_id,
        latency_ms=latency_ms,
        ttft_ms=None,
        annotations=annotations,
        extra={"cache_hit": True},
    )
    return response


# --- stream ----------------------------------------------------------------------------------------------------


async def astream(
    *,
    endpoint: str,
    messages: list[dict],
    tools: list[dict] | None = None,
    params: dict | None = None,
    pii_mask: bool = False,
    timeout: float | None = None,
) -> AsyncGenerator[StreamChunk, None]:
    primary = await resolve(endpoint)
    call = _prepare(endpoint, messages, tools, params, pii_mask, timeout, True)
    estimated = estimate_message_tokens(call.messages)
    last_error: LLMError | None = None
    async for target in _targets(call, primary, estimated):
        ep, params_, attempt_timeout = target.ep, target.params, target.timeout
        for attempt in range(1, target.attempts + 1):
            span_id, started_at, started = await _begin_attempt(call, target, estimated)
            source = target.provider.stream(
                endpoint=ep,
                api_key=target.api_key,
                messages=call.messages,
                tools=tools,
                params=params_,
                timeout=attempt_timeout,
            )
            relay = call.anonymizer.stream() if call.anonymizer is not None else None
            parts: list[str] = []
            ttft_ms = None
            emitted = False
            error: LLMError | None = None
            result: ProviderResult | None = None
            try:
                while True:
                    try:
                        async with asyncio.timeout(attempt_timeout * 1.05 + 0.05):
                            item = await source.__anext__()
                    except StopAsyncIteration:
                        break
                    if isinstance(item, ProviderResult):
                        result = item
                        break
                    if ttft_ms is None:
                        ttft_ms = (time.perf_counter() - started) * 1000
                    parts.append(item)
                    text = relay.feed(item) if relay is not None else item
                    if text:
                        emitted = True
                        yield StreamChunk(delta=text)
            except TimeoutError:
                error = LLMTimeout(
                    f"Model endpoint '{ep.name}' stalled for more than {attempt_timeout:g} s.",
                    details={"endpoint": ep.name, "timeout_seconds": attempt_timeout},
                )
            except LLMError as exc:
                error = exc
            except (GeneratorExit, asyncio.CancelledError):
                _emit(
                    call,
                    _record(
                        call,
                        ep,
                        span_id=span_id,
                        started_at=started_at,
                        started=started,
                        params=params_,
                        error_code="RUN_CANCELLED",
                        error_message="The stream was closed by the caller.",
                        output="".join(parts),
                        ttft_ms=ttft_ms,
                    ),
                )
                raise
            except Exception as exc:
                logger.exception("provider %s failed unexpectedly while streaming", ep.provider)
                error = LLMAPIError(f"Model endpoint '{ep.name}' failed: {type(exc).__name__}", retryable=False)
            finally:
                await _aclose(source)
            if error is None and result is None:
                error = LLMAPIError(f"Model endpoint '{ep.name}' ended the stream without finishing.")
            if error is not None:
                _emit(
                    call,
                    _record(
                        call,
                        ep,
                        span_id=span_id,
                        started_at=started_at,
                        started=started,
                        params=params_,
                        error=error,
                        output="".join(parts),
                        ttft_ms=ttft_ms,
                    ),
                )
                last_error = error
                if emitted or (relay is not None and parts):
                    # Text already reached the caller: another attempt would repeat it.
                    raise _final(error, call)
                if await _retry_same_endpoint(error, call, attempt, target.attempts):
                    continue
                break
            latency_ms = (time.perf_counter() - started) * 1000
            if ttft_ms is None:
                ttft_ms = latency_ms
            annotations = _emit(
                call,
                _record(
                    call,
                    ep,
                    span_id=span_id,
                    started_at=started_at,
                    started=started,
                    params=params_,
                    result=result,
                    ttft_ms=ttft_ms,
                    latency_ms=latency_ms,
                ),
            )
            assert result is not None  # a stream that ended without its result is an error above
            if relay is not None:
                tail = relay.flush()
                if tail:
                    yield StreamChunk(delta=tail)
            response = _response(
                call,
                ep,
                result,
                span_id=span_id,
                latency_ms=latency_ms,
                ttft_ms=ttft_ms,
                annotations=annotations,
                extra={},
            )
            if response.tool_calls:
                yield StreamChunk(tool_calls=response.tool_calls)
            yield StreamChunk(response=response)
            return
    assert last_error is not None
    raise _final(last_error, call)


async def _aclose(source) -> None:
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            logger.debug("closing a provider stream failed", exc_info=True)
