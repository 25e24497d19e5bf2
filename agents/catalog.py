"""The agent catalog: agent definitions loaded from a folder of JSON/YAML files, created or updated by slug."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent_platform.accounts.types import Actor
from agent_platform.api.errors import PlatformError
from agents.models import AgentDefinition
from agents.services import AGENT_FIELDS, agent_create, agent_update
from agents.validation import agent_definition_errors


@dataclass
class CatalogReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    invalid: list[dict[str, str]] = field(default_factory=list)  # {"file", "field", "message", "slug"}


def _read_definitions(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if isinstance(data, dict) and isinstance(data.get("agents"), list):
        return data["agents"]
    if isinstance(data, list):
        return data
    return [data]


def _candidate(item: dict[str, Any], existing: AgentDefinition | None) -> AgentDefinition:
    """What the definition would be after loading `item` (not saved): the stored row, overridden by the file."""
    candidate = AgentDefinition() if existing is None else AgentDefinition.objects.get(pk=existing.pk)
    for name, value in item.items():
        if name in AGENT_FIELDS:
            setattr(candidate, name, value)
    return candidate


def catalog_load(*, folder: str | Path, owner: Actor = None) -> CatalogReport:
    """Load agent definitions from the JSON/YAML files in `folder` (not recursive); re-loading updates. A bad file
    or definition is reported with its file and field; the good ones still load."""
    root = Path(folder)
    if not root.is_dir():
        raise PlatformError(f"{folder} is not a folder.", code="VALIDATION_ERROR", field="folder")
    report = CatalogReport()
    files = sorted(p for p in root.iterdir() if p.suffix in (".json", ".yaml", ".yml") and p.is_file())
    for path in files:
        try:
            items = _read_definitions(path)
        except (ValueError, yaml.YAMLError, UnicodeDecodeError) as exc:
            report.invalid.append({"file": path.name, "field": "(file)", "message": f"cannot parse: {exc}", "slug": ""})
            continue
        for index, item in enumerate(items):
            where = path.name if len(items) == 1 else f"{path.name}[{index}]"
            if not isinstance(item, dict):
                report.invalid.append({"file": where, "field": "(root)", "message": "must be an object", "slug": ""})
                continue
            slug = str(item.get("slug") or "")
            existing = AgentDefinition.objects.filter(slug=slug).first() if slug else None
            candidate = _candidate(item, existing)
            errors = agent_definition_errors(candidate)
            if errors:
                for name, messages in errors.items():
                    report.invalid.append({"file": where, "field": name, "message": " ".join(messages), "slug": slug})
                continue
            data = {name: getattr(candidate, name) for name in item if name in AGENT_FIELDS}
            try:
                if existing is None:
                    agent_create(data=data, owner=owner)
                    report.created.append(slug)
                elif any(getattr(existing, k) != v for k, v in data.items()):
                    agent_update(agent=existing, data=data)
                    report.updated.append(slug)
                else:
                    report.unchanged.append(slug)
            except PlatformError as exc:  # e.g. a prompt the owner may not read
                field_name = str(exc.details.get("field") or "(root)")
                report.invalid.append({"file": where, "field": field_name, "message": exc.message, "slug": slug})
    return report
