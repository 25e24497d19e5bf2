"""Typed errors of the LLM layer. Every one is a `PlatformError`, so the API renders it as the error envelope."""

from __future__ import annotations

import math
from decimal import Decimal

from agent_platform.api.errors import PlatformError
from agent_platform.llm.types import LLMUsage


class LLMError(PlatformError):
    """Base of every LLM-layer error. `retryable` tells the retry middleware whether another attempt may help."""

    code = "LLM_API_ERROR"
    retryable = False  # another attempt on the same endpoint may succeed
    fallback = False  # the next endpoint may succeed (retryable errors fall back too)
    reached_vendor = True  # False when the request never reached the provider (nothing billable)

    def __init__(
        self, message: str = "", *, retry_after: float | None = None, usage: LLMUsage | None = None, **kwargs
    ) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        self.usage = usage  # tokens the vendor reported for the failed attempt (it bills them), when it did
        self.cost: Decimal | None = None  # what every attempt of the failed call cost, set by the engine


class LLMAPIError(LLMError):
    """The provider returned an error (5xx, malformed reply, dropped connection...)."""

    code = "LLM_API_ERROR"

    def __init__(self, message: str = "", *, retryable: bool = True, reached_vendor: bool = True, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retryable = retryable
        self.reached_vendor = reached_vendor


class LLMTimeout(LLMError):
    code = "LLM_API_TIMEOUT"
    retryable = True


class LLMRateLimited(LLMError):
    code = "LLM_RATE_LIMITED"
    retryable = True

    def __init__(self, message: str = "", *, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(message, retry_after=retry_after, **kwargs)
        if retry_after is not None:
            self.details.setdefault("retry_after_seconds", retry_after)
            self.headers.setdefault("Retry-After", str(max(1, math.ceil(retry_after))))


class ProviderNotConfigured(LLMError):
    code = "PROVIDER_NOT_CONFIGURED"


class ModelNotFound(LLMError):
    code = "MODEL_NOT_FOUND"


class ModelDisabled(LLMError):
    code = "MODEL_DISABLED"


class InputTooLarge(LLMError):
    code = "LLM_INPUT_TOO_LARGE"


__all__ = [
    "InputTooLarge",
    "LLMAPIError",
    "LLMError",
    "LLMRateLimited",
    "LLMTimeout",
    "ModelDisabled",
    "ModelNotFound",
    "ProviderNotConfigured",
]
