"""Reads for endpoints and credentials."""

from __future__ import annotations

from django.db.models import QuerySet

from agent_platform.llm.models import ModelEndpoint, ProviderCredential
from agent_platform.llm.registry import registry
from agent_platform.llm.types import ModelInfo


def endpoint_list(*, enabled: bool | None = None, provider: str | None = None) -> QuerySet[ModelEndpoint]:
    rows = ModelEndpoint.objects.select_related("credential").order_by("name")
    if enabled is not None:
        rows = rows.filter(enabled=enabled)
    if provider:
        rows = rows.filter(provider=provider)
    return rows


def credential_list() -> QuerySet[ProviderCredential]:
    return ProviderCredential.objects.order_by("name")


def model_list(*, include_disabled: bool = True) -> list[ModelInfo]:
    return registry.list_models(include_disabled=include_disabled)


def model_get(*, name: str) -> ModelInfo:
    """A configured endpoint or an implicit `mock/...` one; raises MODEL_NOT_FOUND."""
    return registry.resolve(name, allow_disabled=True).info()
