"""LLM-layer settings: the `LLM_*` tunables that agent_platform/settings.py reads from the environment.

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
| LLM_MOCK_STORE | memory | the mock provider's scripts and call logs: `memory` (this process) or `cache` (shared) |
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

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


def get() -> LLMSettings:
    """The LLM layer's tunables, as settings.py reads them from the environment (read per call: a test or an
    operator changing a setting is seen at once)."""
    return LLMSettings(
        default_timeout=settings.LLM_DEFAULT_TIMEOUT,
        default_max_retries=settings.LLM_DEFAULT_MAX_RETRIES,
        retry_base_delay=settings.LLM_RETRY_BASE_DELAY,
        retry_max_delay=settings.LLM_RETRY_MAX_DELAY,
        max_retry_after=settings.LLM_MAX_RETRY_AFTER,
        cache_ttl=settings.LLM_CACHE_TTL,
        max_input_chars=settings.LLM_MAX_INPUT_CHARS,
        endpoint_cache_seconds=settings.LLM_ENDPOINT_CACHE_SECONDS,
    )
