"""A prompt's versions: the immutable `PromptVersion` read from history, one version or all of them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from jinja2 import Template

from agent_platform.accounts.types import Actor
from prompts.models import Prompt
from prompts.sandbox import compile_template
from prompts.selectors.access import not_found, prompt_by_name

PRODUCTION = "production"
LATEST = "latest"
CONTENT_FIELDS = (
    "description",
    "tags",
    "template_type",
    "text",
    "messages",
    "variables",
    "model_endpoint",
    "params",
    "requires_approval",
)


@dataclass(frozen=True)
class PromptVersion:
    """One version of a prompt (immutable), plus how it was reached (label, A/B variant)."""

    name: str
    version: int
    template_type: str
    text: str
    messages: list[dict[str, str]]
    variables: list[dict[str, Any]]
    model_endpoint: str
    params: dict[str, Any]
    description: str = ""
    tags: list[str] = field(default_factory=list)
    requires_approval: bool = False
    author: str | None = None
    created_at: datetime | None = None
    change_note: str = ""
    label: str | None = None
    ab_variant: str | None = None
    compiled: tuple[Template, ...] | None = field(default=None, compare=False, repr=False)

    def content(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in CONTENT_FIELDS}

    def with_compiled(self) -> PromptVersion:
        if self.compiled is not None:
            return self
        if self.template_type == Prompt.TemplateType.CHAT:
            templates = tuple(
                compile_template(m.get("content", ""), where={"message_index": i}) for i, m in enumerate(self.messages)
            )
        else:
            templates = (compile_template(self.text),)
        return replace(self, compiled=templates)

    def to_cache(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "compiled"}
        return data


def version_from_history(record: Any) -> PromptVersion:
    user = getattr(record, "history_user", None)
    return PromptVersion(
        name=record.name,
        version=record.version,
        template_type=record.template_type,
        text=record.text,
        messages=record.messages or [],
        variables=record.variables or [],
        model_endpoint=record.model_endpoint,
        params=record.params or {},
        description=record.description,
        tags=record.tags or [],
        requires_approval=record.requires_approval,
        author=user.get_username() if user is not None else None,
        created_at=record.history_date,
        change_note=record.history_change_reason or "",
    )


def prompt_history(prompt: Prompt) -> QuerySet[Any]:
    return Prompt.history.filter(id=prompt.pk).exclude(history_type="-").select_related("history_user")


def version_record(*, prompt: Prompt, version: int) -> PromptVersion:
    record = prompt_history(prompt).filter(version=version).order_by("-history_id").first()
    if record is None:
        raise not_found(f"Prompt '{prompt.name}' has no version {version}.", name=prompt.name, version=version)
    return version_from_history(record)


def list_versions(*, name: str, user: Actor = None) -> list[PromptVersion]:
    """Every version, newest first."""
    prompt = prompt_by_name(name=name, user=user)
    seen: set[int] = set()
    versions = []
    for record in prompt_history(prompt).order_by("-version", "-history_id"):
        if record.version not in seen:
            seen.add(record.version)
            versions.append(version_from_history(record))
    return versions


def version_exists(*, prompt: Prompt, version: int) -> bool:
    return 1 <= version <= prompt.version and prompt_history(prompt).filter(version=version).exists()
