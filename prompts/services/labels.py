"""Label writes: point a label at a version, live A/B splits, protection and approval, the move log."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agent_platform.accounts.types import Actor
from agent_platform.api.errors import PlatformError
from prompts import cache as prompt_cache
from prompts.models import (
    LABEL_NAME_PATTERN,
    LabelMove,
    Prompt,
    PromptLabel,
)
from prompts.selectors import (
    LATEST,
    not_found,
    version_exists,
    version_is_approved,
)
from prompts.services.access import acting_user, prompt_for_write
from prompts.validation import invalid


def protected_by_default() -> frozenset[str]:
    return frozenset(settings.PROMPT_PROTECTED_LABELS)


def _may_move_protected(user: Actor) -> bool:
    return user is None or user.has_perm("prompts.move_protected_label")


def _validate_split(prompt: Prompt, split: Any) -> dict[str, float] | None:
    if split in (None, {}):
        return None
    if not isinstance(split, dict):
        raise invalid('split must be an object {"<version>": weight}.', "split")
    normalized: dict[str, float] = {}
    for key, weight in split.items():
        try:
            version = int(key)
        except (TypeError, ValueError):
            raise invalid(f"split: '{key}' is not a version number.", "split") from None
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise invalid(f"split: the weight of v{version} must be a number >= 0.", "split")
        if not version_exists(prompt=prompt, version=version):
            raise not_found(f"Prompt '{prompt.name}' has no version {version}.", name=prompt.name, version=version)
        normalized[str(version)] = weight
    if sum(normalized.values()) <= 0:
        raise invalid("split: at least one weight must be positive.", "split")
    return normalized


def _require_protected_permission(*, prompt: Prompt, label: str, user: Actor) -> None:
    if not _may_move_protected(user):
        raise PlatformError(
            f"Label '{label}' of prompt '{prompt.name}' is protected; moving it needs the permission "
            "'prompts.move_protected_label'.",
            code="LABEL_PROTECTED",
            field="label",
            details={"label": label},
        )


def _require_approval(*, prompt: Prompt, label: str, versions: set[int]) -> None:
    if not prompt.requires_approval:
        return
    missing = sorted(v for v in versions if not version_is_approved(prompt=prompt, version=v))
    if missing:
        raise PlatformError(
            f"Prompt '{prompt.name}' requires approval: version {missing[0]} has no approved review.",
            code="APPROVAL_REQUIRED",
            field="version",
            details={"label": label, "versions": missing},
        )


@transaction.atomic
def label_move(
    *,
    name: str,
    label: str,
    version: int,
    user: Actor = None,
    note: str = "",
    protected: bool | None = None,
    split: dict[str, float] | None = None,
) -> PromptLabel:
    """Point `label` at `version` (creating the label), optionally with a live A/B `split` {version: weight}.

    A protected label (`production` is protected when created, see PROMPT_PROTECTED_LABELS) needs the permission
    `prompts.move_protected_label` (`LABEL_PROTECTED`, 403), and where the prompt `requires_approval`, an approved
    review of the target version and of every version in the split (`APPROVAL_REQUIRED`, 409). Changing `protected`
    itself needs the permission too. Every change is recorded as a `LabelMove` (who, when).
    """
    if not isinstance(label, str) or not re.match(LABEL_NAME_PATTERN, label):
        raise invalid("label: use 1-50 lowercase letters, digits, '.', '_' or '-'.", "label")
    if label == LATEST:
        raise invalid("label: 'latest' always follows the newest version and cannot be moved.", "label")
    if isinstance(version, bool) or not isinstance(version, int):
        raise invalid("version must be an integer.", "version")
    prompt = prompt_for_write(name=name, user=user, action="move a label of")
    prompt = Prompt.objects.select_for_update().get(pk=prompt.pk)
    if not version_exists(prompt=prompt, version=version):
        raise not_found(f"Prompt '{name}' has no version {version}.", name=name, version=version)
    split = _validate_split(prompt, split)
    row = PromptLabel.objects.select_for_update().filter(prompt=prompt, name=label).first()
    was_protected = row.protected if row is not None else label in protected_by_default()
    will_be_protected = was_protected if protected is None else protected
    if was_protected or will_be_protected:
        _require_protected_permission(prompt=prompt, label=label, user=user)
    if will_be_protected:
        targets = {version} | ({int(v) for v, w in split.items() if w > 0} if split else set())
        _require_approval(prompt=prompt, label=label, versions=targets)
    if (
        row is not None
        and row.version == version
        and (row.split or None) == split
        and row.protected == will_be_protected
    ):
        return row
    from_version = row.version if row is not None else None
    if row is None:
        row = PromptLabel(prompt=prompt, name=label)
    row.version, row.split, row.protected, row.updated_by = version, split, will_be_protected, acting_user(user)
    row.save()
    LabelMove.objects.create(
        prompt=prompt,
        label=label,
        from_version=from_version,
        to_version=version,
        split=split,
        moved_by=acting_user(user),
        moved_at=timezone.now(),
        note=note,
    )
    prompt_cache.invalidate(prompt.name)
    return row


def label_split_set(
    *, name: str, label: str, split: dict[str, float] | None, user: Actor = None, note: str = ""
) -> PromptLabel:
    """Set (or clear, with None) a live A/B split on an existing label, keeping its primary version. The same
    protection and approval rules as a move apply; every split change is recorded as a `LabelMove`."""
    prompt = prompt_for_write(name=name, user=user, action="change a label of")
    row = prompt.labels.filter(name=label).first()
    if row is None:
        raise not_found(f"Prompt '{name}' has no label '{label}'.", name=name, label=label)
    return label_move(name=name, label=label, version=row.version, user=user, note=note, split=split or None)


@transaction.atomic
def label_delete(*, name: str, label: str, user: Actor = None, note: str = "") -> None:
    prompt = prompt_for_write(name=name, user=user, action="delete a label of")
    row = PromptLabel.objects.select_for_update().filter(prompt=prompt, name=label).first()
    if row is None:
        raise not_found(f"Prompt '{name}' has no label '{label}'.", name=name, label=label)
    if row.protected:
        _require_protected_permission(prompt=prompt, label=label, user=user)
    LabelMove.objects.create(
        prompt=prompt,
        label=label,
        from_version=row.version,
        to_version=None,
        moved_by=acting_user(user),
        moved_at=timezone.now(),
        note=note,
    )
    row.delete()
    prompt_cache.invalidate(prompt.name)
