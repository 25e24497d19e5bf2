"""Who may read and write a prompt: the one rule, as checks and as filters.

Read: staff (is_staff or is_superuser) read every prompt; everyone reads a shared prompt (one without a team);
a team's prompt is read by the team's members and by its owner (`created_by`).
Write (new versions, metadata, team, approval settings, labels, reviews, delete): staff; the prompt's owner; for a
team's prompt, the team's members. A shared prompt is therefore writable only by its owner and staff (and an
owner-less shared prompt, such as the demo content, by staff only).
`user: Actor = None` (and no `readers`) is the platform itself (demo loader, management commands): it reads and writes
everything. Every path that acts for people passes them: the API its caller (`user`); an agent run its owner, team
and caller, an experiment its owner and team, the prompt_lookup tool the run's caller and the agent's owner and
team (`readers`, a `PromptReaders`: each of them must be allowed to read the prompt).
A prompt a caller may not read is `PROMPT_NOT_FOUND` with the same message as a missing one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db.models import Q, QuerySet

from agent_platform.accounts.types import Actor
from agent_platform.api.errors import PlatformError
from prompts.models import Prompt

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User


def not_found(message: str, **details: Any) -> PlatformError:
    return PlatformError(message, code="PROMPT_NOT_FOUND", details=details)


def _is_staff(user: User | AnonymousUser) -> bool:
    return bool(user.is_staff or user.is_superuser)


def _readable_q(user_id: int) -> Q:
    """The read rule for a non-staff user, as a filter on Prompt."""
    from agent_platform.accounts.models import Team

    return Q(team__isnull=True) | Q(created_by_id=user_id) | Q(team__in=Team.objects.filter(members__id=user_id))


def visible_prompts(*, user: Actor = None) -> QuerySet[Prompt]:
    """Prompts `user` may read (the rule above). `user: Actor = None` is the platform itself: everything."""
    qs = Prompt.objects.all()
    if user is None:
        return qs
    if not user.is_authenticated:
        return qs.none()
    if _is_staff(user):
        return qs
    # team membership as a subquery, not a join: no duplicate rows, so no DISTINCT
    return qs.filter(_readable_q(user.pk))


def prompt_readable_by(*, prompt: Prompt, user: Actor) -> bool:
    """Whether `user` may read `prompt` (its text, versions, labels, reviews, renders)."""
    if user is None:
        return True
    if not user.is_authenticated:
        return False
    if _is_staff(user) or prompt.team_id is None or prompt.created_by_id == user.pk:
        return True
    return user.teams.filter(pk=prompt.team_id).exists()


def prompt_writable_by(*, prompt: Prompt, user: Actor) -> bool:
    """Whether `user` may change `prompt`: save versions, change metadata, team or approval, move labels, delete."""
    if user is None:
        return True
    if not user.is_authenticated:
        return False
    if _is_staff(user) or (prompt.created_by_id is not None and prompt.created_by_id == user.pk):
        return True
    return prompt.team_id is not None and user.teams.filter(pk=prompt.team_id).exists()


@dataclass(frozen=True)
class PromptReaders:
    """Everyone who will see a prompt's text through an indirect path: each user and each team listed must be
    allowed to read the prompt. An agent run lists the agent's owner and team and the run's caller; an experiment
    its owner and team; the prompt_lookup tool the run's caller and the agent's owner and team.

    Nobody listed (an owner-less, team-less agent run without a caller) is nobody in particular: shared prompts
    only. Only `readers=None` is the platform itself."""

    user_ids: tuple[int, ...] = ()
    team_ids: tuple[int, ...] = ()

    @classmethod
    def of(cls, *, user_ids: Iterable[int | None] = (), team_ids: Iterable[int | None] = ()) -> PromptReaders:
        """Readers from ids, None entries (no owner, no team, no caller) left out."""
        return cls(
            user_ids=tuple(dict.fromkeys(int(u) for u in user_ids if u is not None)),
            team_ids=tuple(dict.fromkeys(int(t) for t in team_ids if t is not None)),
        )


def prompts_readable_by_all(*, readers: PromptReaders) -> QuerySet[Prompt]:
    """Prompts every one of `readers` may read (the rule above, in one query): a team reads shared prompts and its
    own; a user id that does not exist reads nothing; no readers at all read shared prompts only."""
    from django.contrib.auth import get_user_model
    from django.db.models import Exists

    qs = Prompt.objects.all()
    if not readers.user_ids and not readers.team_ids:
        return qs.filter(team__isnull=True)
    users = get_user_model().objects
    for user_id in readers.user_ids:
        staff = users.filter(Q(is_staff=True) | Q(is_superuser=True), pk=user_id)
        qs = qs.filter(Exists(users.filter(pk=user_id))).filter(Exists(staff) | _readable_q(user_id))
    for team_id in readers.team_ids:
        qs = qs.filter(Q(team__isnull=True) | Q(team_id=team_id))
    return qs


def _readable_named(*, name: str, user: Actor, readers: PromptReaders | None) -> QuerySet[Prompt]:
    qs = visible_prompts(user=user)
    if readers is not None:
        qs = qs.filter(pk__in=prompts_readable_by_all(readers=readers).values("pk"))
    return qs.filter(name=name)


def prompt_by_name(*, name: str, user: Actor = None, readers: PromptReaders | None = None) -> Prompt:
    """The prompt `name` if `user` (and every one of `readers`) may read it, else PROMPT_NOT_FOUND exactly as for a
    prompt that does not exist."""
    prompt = _readable_named(name=name, user=user, readers=readers).first()
    if prompt is None:
        raise not_found(f"No prompt named '{name}'.", name=name)
    return prompt


def prompt_require_readable(*, name: str, user: Actor = None, readers: PromptReaders | None = None) -> None:
    """`prompt_by_name` as a check only (one small query): PROMPT_NOT_FOUND unless readable."""
    if not _readable_named(name=name, user=user, readers=readers).exists():
        raise not_found(f"No prompt named '{name}'.", name=name)


def prompt_list(*, user: Actor = None, search: str | None = None, tag: str | None = None) -> QuerySet[Prompt]:
    qs = visible_prompts(user=user).prefetch_related("labels")
    if search:
        qs = qs.filter(Q(name__icontains=search) | Q(description__icontains=search))
    if tag:
        qs = qs.filter(tags__contains=[tag]) if _json_contains_supported() else qs.filter(tags__icontains=f'"{tag}"')
    return qs


def _json_contains_supported() -> bool:
    from django.db import connection

    return connection.features.supports_json_field_contains
