"""LLM-layer settings: Django settings `LLM_*` (if defined) else environment variables, read once and cached.

| setting / env var | default | meaning |
|---|---|---|
| LLM_DEFAULT_TIMEOUT | 60 | per-attempt timeout (s) for implicit endpoints and calls without an endpoint value |
| LLM_DEFAULT_MAX_RETRIES | 2 | retries for implicit (mock) endpoints |
| LLM_RETRY_BASE_DELAY | 0.5 | first backoff delay (s); doubles per retry, with jitter |
| LLM_RETRY_MAX_DELAY | 8 | cap of one backoff delay (s) |
| LLM_MAX_RETRY_AFTER | 30 | longest Retry-After (s) honoured; longer waits go to the fallback instead |
| LLM_CACHE_TTL | 3600 | response cache lifetime (s) |
| LLM_MAX_INPUT_CHARS | 2000000 | refuse requests whose messages exceed this many characters |
| LLM_ENDPOINT_CACHE_SECONDS | 5 | how often a process checks whether endpoints changed elsewhere |
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

# Parameters the call path owns: refused in `params` and in an endpoint's `default_params`.
RESERVED_PARAMS = frozenset({"model", "messages", "stream", "api_key", "api_base", "tools", "base_url", "num_retries"})


@dataclass(frozen=True)
class LLMSettings:
    default_timeout: float
    default_max_retries: int
    retry_base_delay: float
    retry_max_delay: float
    max_retry_after: float
    cache_ttl: int
    max_input_chars: int
    endpoint_cache_seconds: float


def _value(name: str, default, cast):
    if hasattr(settings, name):
        return cast(getattr(settings, name))
    raw = os.environ.get(name)
    return cast(raw) if raw not in (None, "") else default


def _load() -> LLMSettings:
    return LLMSettings(
        default_timeout=_value("LLM_DEFAULT_TIMEOUT", 60.0, float),
        default_max_retries=_value("LLM_DEFAULT_MAX_RETRIES", 2, int),
        retry_base_delay=_value("LLM_RETRY_BASE_DELAY", 0.5, float),
        retry_max_delay=_value("LLM_RETRY_MAX_DELAY", 8.0, float),
        max_retry_after=_value("LLM_MAX_RETRY_AFTER", 30.0, float),
        cache_ttl=_value("LLM_CACHE_TTL", 3600, int),
        max_input_chars=_value("LLM_MAX_INPUT_CHARS", 2_000_000, int),
        endpoint_cache_seconds=_value("LLM_ENDPOINT_CACHE_SECONDS", 5.0, float),
    )


_current: LLMSettings | None = None


def get() -> LLMSettings:
    global _current
    current = _current
    if current is None:
        current = _current = _load()
    return current


@receiver(setting_changed)
def _reset(setting: str, **kwargs) -> None:
    global _current
    if setting.startswith("LLM_"):
        _current = None
