"""Prompt-store settings: a Django setting of the same name wins, else the environment variable, else the default.

| name | default | meaning |
|---|---|---|
| PROMPT_RENDER_MAX_CHARS | 100000 | cap on output (per text or chat message) and on any value a template builds |
| PROMPT_RENDER_TIMEOUT_MS | 1000 | wall-time cap of one render, and of compiling one template |
| PROMPT_RENDER_MAX_RANGE | 10000 | items one `range()` may produce |
| PROMPT_RENDER_MAX_ITERATIONS | 200000 | loop iterations + calls in one render |
| PROMPT_CACHE_STAMP_TTL_MS | 0 | >0: trust the in-process cache that long without checking the shared stamp |
| PROMPT_PROTECTED_LABELS | production | labels created protected (comma-separated) |
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings

_MISSING = object()


def _env(name: str, default: Any, cast) -> Any:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return cast(raw)
    except ValueError:
        return default


def _list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


_DEFAULTS: dict[str, Any] = {
    "PROMPT_RENDER_MAX_CHARS": _env("PROMPT_RENDER_MAX_CHARS", 100_000, int),
    "PROMPT_RENDER_TIMEOUT_MS": _env("PROMPT_RENDER_TIMEOUT_MS", 1000, float),
    "PROMPT_RENDER_MAX_RANGE": _env("PROMPT_RENDER_MAX_RANGE", 10_000, int),
    "PROMPT_RENDER_MAX_ITERATIONS": _env("PROMPT_RENDER_MAX_ITERATIONS", 200_000, int),
    "PROMPT_CACHE_STAMP_TTL_MS": _env("PROMPT_CACHE_STAMP_TTL_MS", 0, float),
    "PROMPT_PROTECTED_LABELS": _env("PROMPT_PROTECTED_LABELS", ["production"], _list),
}


def get(name: str) -> Any:
    value = getattr(settings, name, _MISSING)
    return _DEFAULTS[name] if value is _MISSING else value
