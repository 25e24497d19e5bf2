"""Who may write: the checks every prompt write runs before it changes anything (the rule is in the selectors)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent_platform.accounts.selectors import team_require_usable
from agent_platform.accounts.types import Actor
from agent_platform.api.errors import PlatformError
from prompts.models import (
    Prompt,
)
from prompts.selectors import (
    prompt_by_name,
    prompt_writable_by,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from agent_platform.accounts.models import Team


def acting_user(user: Actor) -> User | None:
    return user if user is not None and user.is_authenticated else None


def prompt_for_write(*, name: str, user: Actor, action: str) -> Prompt:
    """The prompt `name` if `user` may change it: PROMPT_NOT_FOUND when they may not even read it (no hint that it
    exists), POLICY_DENIED when they may read but not change it."""
    prompt = prompt_by_name(name=name, user=user)
    require_writable(prompt=prompt, user=user, action=action)
    return prompt


def require_writable(*, prompt: Prompt, user: Actor, action: str) -> None:
    if not prompt_writable_by(prompt=prompt, user=user):
        raise PlatformError(
            f"You may not {action} prompt '{prompt.name}': only its owner"
            f"{', members of its team' if prompt.team_id else ''} and staff may change it.",
            code="POLICY_DENIED",
            details={"name": prompt.name},
        )


def require_team_usable(*, team: Team | None, user: Actor) -> None:
    team_require_usable(team=team, user=user)
