"""Export and import of prompts as JSON documents (all or nothing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction

from agent_platform.accounts.types import Actor
from agent_platform.api.errors import PlatformError
from prompts.models import (
    Prompt,
)
from prompts.selectors import (
    CONTENT_FIELDS,
)
from prompts.services.labels import label_move
from prompts.services.versions import prompt_create, prompt_update
from prompts.validation import invalid, validate_name


def prompt_export_data(prompt: Prompt) -> dict[str, Any]:
    labels = sorted(label.name for label in prompt.labels.all() if label.version == prompt.version)
    return {
        "name": prompt.name,
        "description": prompt.description,
        "tags": prompt.tags,
        "template_type": prompt.template_type,
        "text": prompt.text if prompt.template_type == Prompt.TemplateType.TEXT else "",
        "messages": prompt.messages if prompt.template_type == Prompt.TemplateType.CHAT else [],
        "variables": prompt.variables,
        "model_endpoint": prompt.model_endpoint,
        "params": prompt.params,
        "requires_approval": prompt.requires_approval,
        "version": prompt.version,
        "labels": labels,
    }


@dataclass(frozen=True)
class ImportResult:
    created: list[str]
    updated: list[str]
    unchanged: list[str]


@transaction.atomic
def prompts_import(*, data: Any, user: Actor = None, change_note: str = "Imported") -> ImportResult:
    """Create or update prompts from an export document ({"prompts": [...]} or a list). All or nothing: the first
    invalid prompt aborts the import with its index in the error. Labels listed in an item are pointed at the
    imported version (subject to protection and approval)."""
    items = data.get("prompts") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise invalid('The document must be {"prompts": [...]} or a list of prompts.', "prompts")
    created: list[str] = []
    updated: list[str] = []
    unchanged: list[str] = []
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise invalid("Each prompt must be an object.", "prompts")
            name = validate_name(item.get("name"))
            content = {f: item[f] for f in CONTENT_FIELDS if f in item}
            labels = item.get("labels") or []
            if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
                raise invalid("labels must be a list of label names.", "labels")
            existing = Prompt.objects.filter(name=name).first()
            if existing is None:
                prompt = prompt_create(name=name, user=user, change_note=change_note, **content)
                created.append(name)
            else:
                before = existing.version
                prompt = prompt_update(name=name, user=user, change_note=change_note, **content)
                (updated if prompt.version != before else unchanged).append(name)
            for label in labels:
                label_move(name=name, label=label, version=prompt.version, user=user, note=change_note)
        except PlatformError as error:
            error.details = {**error.details, "index": index}
            error.message = f"prompts[{index}]: {error.message}"
            raise
    return ImportResult(created=created, updated=updated, unchanged=unchanged)
