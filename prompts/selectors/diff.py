"""What changed between two versions of a prompt."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from agent_platform.accounts.types import Actor
from prompts.selectors.access import prompt_by_name
from prompts.selectors.versions import (
    CONTENT_FIELDS,
    version_record,
)


@dataclass(frozen=True)
class VersionDiff:
    name: str
    from_version: int
    to_version: int
    changed_fields: list[str]
    unified: str  # the whole diff, readable
    text: str  # text prompts: unified diff of the template
    messages: list[dict[str, Any]]  # chat prompts: per message {index, role_from, role_to, status, diff}
    fields: dict[str, dict[str, Any]]  # other changed fields: {field: {"from": ..., "to": ...}}


def _lines(value: str) -> list[str]:
    return (value or "").splitlines(keepends=True) or []


def _udiff(a: str, b: str, from_name: str, to_name: str) -> str:
    out = difflib.unified_diff(_lines(a), _lines(b), fromfile=from_name, tofile=to_name, lineterm="")
    text = []
    for line in out:
        text.append(line if line.endswith("\n") else line + "\n")
    return "".join(text)


def compare_versions(*, name: str, v1: int, v2: int, user: Actor = None) -> VersionDiff:
    """A readable diff from v1 to v2: the template line by line (per message for chat prompts) and other fields."""
    prompt = prompt_by_name(name=name, user=user)
    a, b = version_record(prompt=prompt, version=v1), version_record(prompt=prompt, version=v2)
    changed = [f for f in CONTENT_FIELDS if getattr(a, f) != getattr(b, f)]
    parts: list[str] = []
    text_diff = ""
    if a.text != b.text:
        text_diff = _udiff(a.text, b.text, f"{name} v{v1} text", f"{name} v{v2} text")
        parts.append(text_diff)
    message_diffs: list[dict[str, Any]] = []
    for index in range(max(len(a.messages), len(b.messages))):
        old = a.messages[index] if index < len(a.messages) else None
        new = b.messages[index] if index < len(b.messages) else None
        if old == new:
            continue
        status = "added" if old is None else "removed" if new is None else "changed"
        old_role, new_role = (old or {}).get("role"), (new or {}).get("role")
        diff = _udiff(
            (old or {}).get("content", ""),
            (new or {}).get("content", ""),
            f"{name} v{v1} messages[{index}] ({old_role or '-'})",
            f"{name} v{v2} messages[{index}] ({new_role or '-'})",
        )
        if old_role != new_role and old is not None and new is not None:
            diff = f"@@ messages[{index}] role: {old_role} -> {new_role}\n" + diff
        message_diffs.append(
            {"index": index, "status": status, "role_from": old_role, "role_to": new_role, "diff": diff}
        )
        parts.append(diff or f"@@ messages[{index}] {status}\n")
    other: dict[str, dict[str, Any]] = {}
    for f in changed:
        if f in ("text", "messages"):
            continue
        other[f] = {"from": getattr(a, f), "to": getattr(b, f)}
        parts.append(
            f"@@ {f}\n-{json.dumps(getattr(a, f), sort_keys=True, default=str)}\n"
            f"+{json.dumps(getattr(b, f), sort_keys=True, default=str)}\n"
        )
    return VersionDiff(
        name=name,
        from_version=v1,
        to_version=v2,
        changed_fields=changed,
        unified="".join(parts),
        text=text_diff,
        messages=message_diffs,
        fields=other,
    )
