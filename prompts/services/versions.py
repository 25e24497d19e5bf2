"""Prompt writes: create, new versions, rollback and delete; each save is one history record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction

from agent_platform.accounts.types import Actor
from agent_platform.api.errors import PlatformError
from prompts import cache as prompt_cache
from prompts.models import (
    Prompt,
)
from prompts.selectors import (
    CONTENT_FIELDS,
    prompt_by_name,
    version_record,
)
from prompts.services.access import acting_user, prompt_for_write, require_team_usable, require_writable
from prompts.services.labels import label_move
from prompts.validation import invalid, validate_content, validate_meta, validate_name

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from agent_platform.accounts.models import Team


def _save_version(prompt: Prompt, *, user: User | None, change_note: str) -> Prompt:
    prompt.version += 1
    prompt._change_reason = change_note or ""
    prompt._history_user = user
    prompt.save()
    prompt_cache.invalidate(prompt.name)
    return prompt


@transaction.atomic
def prompt_create(
    *,
    name: str,
    template_type: str = Prompt.TemplateType.TEXT,
    text: str = "",
    messages: list[dict[str, str]] | None = None,
    variables: list[dict[str, Any]] | None = None,
    description: str = "",
    tags: list[str] | None = None,
    model_endpoint: str = "",
    params: dict[str, Any] | None = None,
    requires_approval: bool = False,
    team: Team | None = None,
    user: Actor = None,
    change_note: str = "Created",
    labels: list[str] | None = None,
) -> Prompt:
    """Create a prompt and its version 1 (optionally pointing `labels` at it)."""
    validate_name(name)
    content = validate_content(
        template_type=template_type,
        text=text,
        messages=messages,
        variables=variables,
        variables_given=variables is not None,
    )
    meta = validate_meta(
        tags=tags if tags is not None else [],
        params=params if params is not None else {},
        model_endpoint=model_endpoint,
        description=description,
        requires_approval=requires_approval,
    )
    if user is not None and not user.is_authenticated:
        raise PlatformError("Creating a prompt needs a signed-in user.", code="POLICY_DENIED")
    require_team_usable(team=team, user=user)
    if Prompt.objects.filter(name=name).exists():
        raise PlatformError(f"A prompt named '{name}' already exists.", code="CONFLICT", field="name")
    prompt = Prompt(name=name, team=team, created_by=acting_user(user), **content, **meta)
    try:
        with transaction.atomic():
            _save_version(prompt, user=acting_user(user), change_note=change_note)
    except IntegrityError:
        raise PlatformError(f"A prompt named '{name}' already exists.", code="CONFLICT", field="name") from None
    for label in labels or []:
        label_move(name=name, label=label, version=prompt.version, user=user, note="Set at creation")
    return prompt


@transaction.atomic
def prompt_update(
    *, name: str, user: Actor = None, change_note: str = "", force_new_version: bool = False, **changes: Any
) -> Prompt:
    """Save a new version with `changes` (any of the content fields). Unchanged content saves nothing, unless
    `force_new_version` (rollback)."""
    unknown = set(changes) - set(CONTENT_FIELDS) - {"team"}
    if unknown:
        raise invalid(f"Unknown or read-only fields: {', '.join(sorted(unknown))}.", sorted(unknown)[0])
    if "variables" in changes and changes["variables"] is None:
        del changes["variables"]  # null: keep the schema, add what the template newly uses
    prompt = prompt_by_name(name=name, user=user)
    prompt = Prompt.objects.select_for_update().get(pk=prompt.pk)
    merged = {f: getattr(prompt, f) for f in CONTENT_FIELDS}
    merged.update({k: v for k, v in changes.items() if k != "team"})
    content = validate_content(
        template_type=merged["template_type"],
        text=merged["text"],
        messages=merged["messages"],
        variables=merged["variables"],
        variables_given="variables" in changes,
    )
    meta = validate_meta(
        tags=merged["tags"],
        params=merged["params"],
        model_endpoint=merged["model_endpoint"],
        description=merged["description"],
        requires_approval=merged["requires_approval"],
    )
    new_values = {**content, **meta}
    changed = {k: v for k, v in new_values.items() if getattr(prompt, k) != v}
    if "team" in changes and changes["team"] != prompt.team:
        changed["team"] = changes["team"]
    if not changed and not force_new_version:
        return prompt  # nothing is written, so nothing to allow (re-importing an unchanged export of shared prompts)
    require_writable(prompt=prompt, user=user, action="change")  # as the prompt is now, before any change
    if "team" in changed:
        require_team_usable(team=changed["team"], user=user)
        prompt.team = changed["team"]
    for key, value in new_values.items():
        setattr(prompt, key, value)
    return _save_version(prompt, user=acting_user(user), change_note=change_note)


@transaction.atomic
def prompt_rollback(*, name: str, version: int, user: Actor = None, change_note: str = "") -> Prompt:
    """A NEW version whose content equals `version`'s. History is never rewritten."""
    prompt = prompt_for_write(name=name, user=user, action="roll back")
    old = version_record(prompt=prompt, version=version)
    return prompt_update(
        name=name,
        user=user,
        change_note=change_note or f"Rollback to v{version}",
        force_new_version=True,
        **old.content(),
    )


@transaction.atomic
def prompt_delete(*, name: str, user: Actor = None) -> None:
    """Delete a prompt with its labels and reviews; its version history stays in the historical table."""
    prompt = prompt_for_write(name=name, user=user, action="delete")
    prompt._history_user = acting_user(user)
    prompt._change_reason = "Deleted"
    prompt.delete()
    prompt_cache.invalidate(name)
