"""Reads for endpoints and credentials."""

from __future__ import annotations

from agent_platform.llm.registry import registry
from agent_platform.llm.types import ModelInfo


def model_list(*, include_disabled: bool = True) -> list[ModelInfo]:
    return registry.list_models(include_disabled=include_disabled)


def model_get(*, name: str) -> ModelInfo:
    """A configured endpoint or an implicit `mock/...` one; raises MODEL_NOT_FOUND."""
    return registry.resolve(name, allow_disabled=True).info()
