"""Reads: agents a user may see, runs, events, conversations."""

from __future__ import annotations

import uuid

from django.db.models import Q, QuerySet

from agent_platform.api.errors import PlatformError
from agents.models import AgentDefinition, Conversation, Message, Run, RunEvent


def agents_visible_to(user) -> QuerySet[AgentDefinition]:
    """Shared agents (no owner, no team), the user's own and their teams'. Staff see all."""
    qs = AgentDefinition.objects.all()
    if user is None or not user.is_authenticated:
        return qs.none()
    if user.is_staff:
        return qs
    # team membership as a subquery, not a join: no duplicate rows, so no DISTINCT (which would sort every column)
    return qs.filter(Q(owner__isnull=True, team__isnull=True) | Q(owner=user) | Q(team__in=user.teams.values("id")))


def agent_can_edit(user, agent: AgentDefinition) -> bool:
    if user is None or not user.is_authenticated:
        return False
    if user.is_staff or agent.owner_id == user.id:
        return True
    return agent.team_id is not None and user.teams.filter(id=agent.team_id).exists()


def agent_get(*, slug: str, user=None) -> AgentDefinition:
    qs = AgentDefinition.objects.all() if user is None else agents_visible_to(user)
    agent = qs.filter(slug=slug).first()
    if agent is None:
        raise PlatformError(f"No agent with slug {slug!r}.", code="AGENT_NOT_FOUND", field="slug")
    return agent


def agent_enabled(*, agent_id: int, slug: str) -> bool:
    """Whether the agent is enabled now; AGENT_NOT_FOUND if it has been deleted."""
    enabled = AgentDefinition.objects.filter(id=agent_id).values_list("enabled", flat=True).first()
    if enabled is None:
        raise PlatformError(f"No agent with slug {slug!r}.", code="AGENT_NOT_FOUND", field="slug")
    return enabled


def agent_catalog(*, user, category: str | None = None, search: str | None = None) -> QuerySet[AgentDefinition]:
    qs = agents_visible_to(user)
    if category:
        qs = qs.filter(category=category)
    if search:
        qs = qs.filter(Q(slug__icontains=search) | Q(name__icontains=search) | Q(description__icontains=search))
    return qs.order_by("slug")


def agent_categories(*, user) -> list[str]:
    return list(
        agents_visible_to(user).exclude(category="").order_by("category").values_list("category", flat=True).distinct()
    )


def _uuid(value, code: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError):
        raise PlatformError(f"{field} {value!r} is not a valid id.", code=code, field=field) from None


def run_get(*, run_id, user=None) -> Run:
    rid = _uuid(run_id, "RUN_NOT_FOUND", "run_id")
    qs = Run.objects.select_related("agent")
    if user is not None and not user.is_staff:
        qs = qs.filter(user=user)
    run = qs.filter(id=rid).first()
    if run is None:
        raise PlatformError(f"No run {run_id}.", code="RUN_NOT_FOUND", field="run_id")
    return run


def run_events_since(*, run: Run, after_seq: int = 0, limit: int = 5000) -> list[dict]:
    return [e.as_dict() for e in RunEvent.objects.filter(run=run, seq__gt=after_seq).order_by("seq")[:limit]]


def conversation_get(*, conversation_id, user=None) -> Conversation:
    cid = _uuid(conversation_id, "CONVERSATION_NOT_FOUND", "conversation_id")
    qs = Conversation.objects.select_related("agent")
    if user is not None and not user.is_staff:
        qs = qs.filter(user=user)
    conversation = qs.filter(id=cid).first()
    if conversation is None:
        raise PlatformError(
            f"No conversation {conversation_id}.", code="CONVERSATION_NOT_FOUND", field="conversation_id"
        )
    return conversation


def conversation_latest(*, user, agent: AgentDefinition) -> Conversation | None:
    return Conversation.objects.filter(user=user, agent=agent).order_by("-updated_at").first()


def conversation_messages(*, conversation: Conversation, before_id: int | None = None) -> QuerySet[Message]:
    qs = conversation.messages.select_related("run").order_by("id")
    if before_id is not None:
        qs = qs.filter(id__lte=before_id)
    return qs
