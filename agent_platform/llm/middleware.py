"""Custom middleware around every call (seed 000 `LLMMiddleware`): rewrite a request, inspect or rewrite a response.

The built-in chain (input limits, PII masking, cache, retry with backoff, fallback, timeout, records) is part of the
call path itself; these hooks run outside it, once per logical call (not per attempt):

    class AddHouseRules(LLMMiddleware):
        async def pre_process(self, request):
            request.messages = [{"role": "system", "content": "Be brief."}, *request.messages]
            return request

    register_middleware(AddHouseRules())

`pre_process` may change any field of the request (including the endpoint); `post_process` sees the final response
(for streams: the response of the last chunk) and returns it, possibly changed. With none registered the call path
pays nothing. A middleware that raises stops the call (raise a `PlatformError` to give the caller a code).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from agent_platform.llm.types import LLMResponse


@dataclass
class LLMRequest:
    endpoint: str
    messages: list[dict]
    tools: list[dict] | None = None
    params: dict | None = None
    pii_mask: bool = False
    use_cache: bool | None = None
    timeout: float | None = None
    stream: bool = False


class LLMMiddleware:
    name = "middleware"

    async def pre_process(self, request: LLMRequest) -> LLMRequest:
        return request

    async def post_process(self, request: LLMRequest, response: LLMResponse) -> LLMResponse:
        return response


_lock = threading.Lock()
_middlewares: tuple[LLMMiddleware, ...] = ()


def middlewares() -> tuple[LLMMiddleware, ...]:
    return _middlewares


def register_middleware(middleware: LLMMiddleware) -> None:
    global _middlewares
    with _lock:
        if middleware not in _middlewares:
            _middlewares = (*_middlewares, middleware)


def unregister_middleware(middleware: LLMMiddleware) -> None:
    global _middlewares
    with _lock:
        _middlewares = tuple(m for m in _middlewares if m is not middleware)


async def pre_process(request: LLMRequest) -> LLMRequest:
    for middleware in _middlewares:
        request = await middleware.pre_process(request)
    return request


async def post_process(request: LLMRequest, response: LLMResponse) -> LLMResponse:
    for middleware in reversed(_middlewares):
        response = await middleware.post_process(request, response)
    return response
