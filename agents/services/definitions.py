"""Agent definitions: create, update, delete, with the checks a definition must pass."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from agent_platform.accounts.selectors import team_require_usable
from agent_platform.accounts.types import Actor
from agent_platform.api.errors import PlatformError, ValidationFailed
from agents.models import AgentDefinition

# --- agent definitions ---------------------------------------------------------------------------------------

AGENT_FIELDS = (
    "slug", "name", "description", "category", "model_endpoint", "system_prompt_name", "system_prompt_label",
    "system_prompt_text", "parameters", "tools", "memory", "mode", "max_iterations", "max_total_tokens",
    "max_wall_seconds", "pii_mask", "enabled",
)  # fmt: skip


def prompt_readers(*, owner_id: int | None, team_id: int | None, caller_id: int | None = None):
    """Who sees an agent's stored prompt: its owner, its team and the run's caller (the caller reads the rendered
    text in the run's trace). Each must be allowed to read the prompt; see prompts.selectors.PromptReaders."""
    from prompts.selectors import PromptReaders

    return PromptReaders.of(user_ids=(owner_id, caller_id), team_ids=(team_id,))


def check_prompt_reference(*, agent: AgentDefinition) -> None:
    """An agent made for someone may name only a stored prompt its owner and team may read: otherwise
    PROMPT_NOT_FOUND on `system_prompt_name`, exactly as for a prompt that does not exist. An agent of the platform
    itself (no owner, no team: catalog, demo, admin) may name a prompt that does not exist yet."""
    if not agent.system_prompt_name or (agent.owner_id is None and agent.team_id is None):
        return
    from prompts.selectors import prompt_require_readable

    readers = prompt_readers(owner_id=agent.owner_id, team_id=agent.team_id)
    try:
        prompt_require_readable(name=agent.system_prompt_name, readers=readers)
    except PlatformError as exc:
        raise PlatformError(exc.message, code=exc.code, field="system_prompt_name", details=exc.details) from None


def require_valid(agent: AgentDefinition) -> None:
    """VALIDATION_ERROR naming the first bad field (all of them in `details.fields`) unless `agent` may be saved."""
    from agents.validation import agent_definition_errors

    errors = agent_definition_errors(agent)
    if errors:
        first = next(iter(errors))
        raise ValidationFailed(f"{first}: {' '.join(errors[first])}", field=first, details={"fields": errors})


@transaction.atomic
def agent_create(*, data: dict[str, Any], owner=None, team=None) -> AgentDefinition:
    team_require_usable(team=team, user=owner)
    agent = AgentDefinition(owner=owner, team=team, **{k: v for k, v in data.items() if k in AGENT_FIELDS})
    require_valid(agent)
    check_prompt_reference(agent=agent)
    agent.save()
    return agent


@transaction.atomic
def agent_update(*, agent: AgentDefinition, data: dict[str, Any], user: Actor = None) -> AgentDefinition:
    """Change `agent`; moving it to a team is for that team's members and staff (`user`, None for the platform)."""
    if "team" in data and data["team"] != agent.team:
        team_require_usable(team=data["team"], user=user)
    changed = []
    for key, value in data.items():
        if key in (*AGENT_FIELDS, "team") and getattr(agent, key) != value:
            setattr(agent, key, value)
            changed.append(key)
    if changed:
        try:
            require_valid(agent)
        except PlatformError:
            agent.refresh_from_db()  # the caller's instance stays as stored
            raise
        if {"system_prompt_name", "team"} & set(changed):
            try:
                check_prompt_reference(agent=agent)
            except PlatformError:
                agent.refresh_from_db()  # the caller's instance stays as stored
                raise
        agent.save()
    return agent


@transaction.atomic
def agent_delete(*, agent: AgentDefinition) -> None:
    agent.delete()
