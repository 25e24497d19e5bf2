"""Resolve an endpoint name to everything needed to call it, cached in-process.

The hot path must not query the database: resolved endpoints are kept in a per-process dict. Saving or deleting
an endpoint or credential clears it at once in this process and bumps a version key in the Django cache; other
processes notice the new version within `LLM_ENDPOINT_CACHE_SECONDS` (one cache read per interval, not per call).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import cache

from agent_platform.cache_safe import cache_guard
from agent_platform.llm import conf
from agent_platform.llm.errors import ModelDisabled, ModelNotFound
from agent_platform.llm.types import ModelInfo

logger = logging.getLogger("agent_platform.llm")

MOCK_PREFIX = "mock/"
VERSION_KEY = "llm:endpoints:version"

# Model-name prefixes for strings without a provider prefix (litellm's map is consulted first).
_HEURISTICS = (
    (("gpt-", "o1", "o3", "o4", "chatgpt", "text-embedding", "davinci"), "openai"),
    (("claude",), "anthropic"),
    (("gemini",), "gemini"),
    (("mistral", "mixtral", "codestral", "open-mistral", "ministral"), "mistral"),
    (("command",), "cohere_chat"),
)


@functools.lru_cache(maxsize=1)
def _model_map() -> dict[str, dict[str, Any]]:
    """litellm's bundled price and context-window map, read from its JSON file without importing litellm."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / "model_prices_and_context_window_backup.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        logger.warning("litellm model map not readable at %s", path)
        return {}
    data.pop("sample_spec", None)
    return data


def known_model(model: str) -> dict[str, Any] | None:
    table = _model_map()
    if model in table:
        return table[model]
    if "/" in model:
        bare = model.split("/", 1)[1]
        entry = table.get(bare)
        if entry is not None:
            return entry
    return None


def provider_for_model(model: str) -> str:
    model = (model or "").strip()
    if "/" in model:
        return model.split("/", 1)[0]
    entry = known_model(model)
    if entry and entry.get("litellm_provider"):
        provider = str(entry["litellm_provider"])
        return "openai" if provider.startswith("text-completion-openai") else provider
    lowered = model.lower()
    for prefixes, provider in _HEURISTICS:
        if lowered.startswith(prefixes):
            return provider
    return "unknown"


def _per_million(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    return (Decimal(str(value)) * 1_000_000).normalize()


@dataclass(frozen=True, slots=True)
class ResolvedEndpoint:
    name: str
    model: str
    provider: str
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)  # from an admin credential; env is read at call time
    credential_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # non-secret credential settings (api_version, ...)
    default_params: dict[str, Any] = field(default_factory=dict)
    timeout: float = 60.0
    max_retries: int = 2
    fallbacks: tuple[str, ...] = ()
    cache_enabled: bool = False
    context_window: int | None = None
    max_output_tokens: int | None = None
    supports_tools: bool = True
    enabled: bool = True
    implicit: bool = False  # an implicit mock endpoint (no database row)
    description: str = ""
    input_price_per_million: Decimal | None = None
    output_price_per_million: Decimal | None = None

    @property
    def is_mock(self) -> bool:
        return self.provider == "mock"

    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            model=self.model,
            provider=self.provider,
            context_window=self.context_window,
            max_output_tokens=self.max_output_tokens,
            input_price_per_million=self.input_price_per_million,
            output_price_per_million=self.output_price_per_million,
            supports_tools=self.supports_tools,
            enabled=self.enabled,
            description=self.description,
        )


def _known_limits(model: str) -> tuple[int | None, int | None, Decimal | None, Decimal | None, bool | None]:
    entry = known_model(model) or {}
    window = entry.get("max_input_tokens") or entry.get("max_tokens")
    return (
        int(window) if window else None,
        int(entry["max_output_tokens"]) if entry.get("max_output_tokens") else None,
        _per_million(entry.get("input_cost_per_token")),
        _per_million(entry.get("output_cost_per_token")),
        entry.get("supports_function_calling"),
    )


def implicit_mock_endpoint(name: str) -> ResolvedEndpoint:
    return ResolvedEndpoint(
        name=name,
        model=name,
        provider="mock",
        timeout=conf.get().default_timeout,
        max_retries=conf.get().default_max_retries,
        context_window=128_000,
        max_output_tokens=4_096,
        implicit=True,
        description="Implicit mock endpoint (offline, deterministic)",
    )


def _from_row(row) -> ResolvedEndpoint:
    window, max_out, in_price, out_price, _tools = _known_limits(row.model)
    credential = row.credential if row.credential_id else None
    api_key = None
    extra: dict[str, Any] = {}
    if credential is not None and credential.enabled:
        api_key = credential.get_api_key() or None
        extra = dict(credential.extra or {})
    provider = row.provider or provider_for_model(row.model)
    if provider == "mock":
        window = window or 128_000
        max_out = max_out or 4_096
    return ResolvedEndpoint(
        name=row.name,
        model=row.model,
        provider=provider,
        api_base=row.api_base or None,
        api_key=api_key,
        credential_name=credential.name if credential is not None else None,
        extra=extra,
        default_params=dict(row.default_params or {}),
        timeout=float(row.timeout_seconds or conf.get().default_timeout),
        max_retries=int(row.max_retries),
        fallbacks=tuple(row.fallbacks or ()),
        cache_enabled=row.cache_enabled,
        context_window=row.context_window or window,
        max_output_tokens=row.max_output_tokens or max_out,
        supports_tools=row.supports_tools,
        enabled=row.enabled,
        description=row.description,
        input_price_per_million=in_price,
        output_price_per_million=out_price,
    )


class EndpointRegistry:
    def __init__(self) -> None:
        self._entries: dict[str, ResolvedEndpoint | None] = {}
        self._version: Any = None
        self._checked_at = 0.0
        self._lock = threading.Lock()

    @property
    def version(self):
        """Changes whenever any endpoint or credential changes (in any process, once noticed)."""
        return self._version

    # -- cache validity ------------------------------------------------------------------------------------
    def _fresh(self) -> bool:
        now = time.monotonic()
        if now - self._checked_at < conf.get().endpoint_cache_seconds:
            return True
        # A cache outage must not stop LLM calls: the version then reads as unchanged.
        version = cache_guard(lambda: cache.get(VERSION_KEY), default=self._version, what="checking endpoints")
        self._checked_at = now
        if version != self._version:
            self._entries = {}
            self._version = version
            return False
        return True

    def invalidate(self, *, broadcast: bool = True) -> None:
        self._entries = {}
        self._checked_at = 0.0
        if broadcast:
            token = secrets.token_hex(8)

            def publish() -> bool:
                cache.set(VERSION_KEY, token, None)
                return True

            if cache_guard(publish, default=False, what="endpoint change"):
                self._version = token

    # -- lookups -------------------------------------------------------------------------------------------
    def cached(self, name: str) -> ResolvedEndpoint | None:
        """The endpoint if this process knows it and nothing changed since (None: unknown here, or known missing)."""
        return self._entries.get(name) if self._fresh() else None

    def _known(self, name: str) -> bool:
        """Whether `name` was looked up since the last change (found or not): then the database need not be asked."""
        return self._fresh() and name in self._entries

    def _load(self, name: str) -> ResolvedEndpoint | None:
        from agent_platform.llm.models import ModelEndpoint

        row = ModelEndpoint.objects.select_related("credential").filter(name=name).first()
        if row is not None:
            return _from_row(row)
        if name.startswith(MOCK_PREFIX) and len(name) > len(MOCK_PREFIX):
            return implicit_mock_endpoint(name)
        return None

    def lookup(self, name: str) -> ResolvedEndpoint | None:
        if self._known(name):
            return self._entries[name]
        entry = self._load(name)
        with self._lock:
            self._entries = {**self._entries, name: entry}
        return entry

    async def alookup(self, name: str) -> ResolvedEndpoint | None:
        if self._known(name):
            return self._entries[name]
        return await sync_to_async(self.lookup, thread_sensitive=True)(name)

    def resolve(self, name: str, *, allow_disabled: bool = False) -> ResolvedEndpoint:
        return _check(name, self.lookup(name), allow_disabled)

    async def aresolve(self, name: str, *, allow_disabled: bool = False) -> ResolvedEndpoint:
        return _check(name, await self.alookup(name), allow_disabled)

    def list_models(self, *, include_disabled: bool = True) -> list[ModelInfo]:
        from agent_platform.llm.models import ModelEndpoint

        rows = ModelEndpoint.objects.select_related("credential").order_by("name")
        if not include_disabled:
            rows = rows.filter(enabled=True)
        return [_from_row(row).info() for row in rows]


def _check(name: str, entry: ResolvedEndpoint | None, allow_disabled: bool) -> ResolvedEndpoint:
    if entry is None:
        raise ModelNotFound(
            f"No model endpoint named '{name}'. Add it in the admin (LLM endpoints and credentials → Model "
            "endpoints), or use 'mock/<name>' for the offline mock.",
            field="endpoint",
            details={"endpoint": name},
        )
    if not entry.enabled and not allow_disabled:
        raise ModelDisabled(f"Model endpoint '{name}' is disabled.", field="endpoint", details={"endpoint": name})
    return entry


registry = EndpointRegistry()
