"""Conversations: create, clear, and the context a run reads from one."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from agents import memory
from agents.models import AgentDefinition, Conversation, Message, Run
from agents.orchestrator import AgentSpec

# --- conversations ----------------------------------------------------------------------------------------


@transaction.atomic
def conversation_create(*, agent: AgentDefinition, user=None, title: str = "") -> Conversation:
    return Conversation.objects.create(agent=agent, user=user, title=title[:200])


@transaction.atomic
def conversation_clear(*, conversation: Conversation) -> int:
    deleted, _ = conversation.messages.all().delete()
    Conversation.objects.filter(id=conversation.id).update(updated_at=timezone.now())
    return deleted


SUMMARY_RESERVE_TOKENS = 400


def conversation_context(
    *, run: Run, spec: AgentSpec, agent: AgentDefinition
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The run's conversation up to its own input, trimmed to the model's context window: (kept, dropped).

    With the memory setting `"summarize": true` the dropped (oldest) messages are
    returned too, for the orchestrator to summarise into one note; room for that note is kept free."""
    settings_ = agent.memory or {}
    max_messages = int(settings_.get("max_messages") or 100)
    rows: list[Message] = []
    if run.conversation_id is not None:  # every run has one (run_create); the column allows none
        own = Message.objects.filter(run_id=run.id, role="user").order_by("id").values("id")[:1]
        qs = Message.objects.filter(conversation_id=run.conversation_id, role__in=["user", "assistant"], id__lte=own)
        rows = list(qs.order_by("-id")[:max_messages])[::-1]
    messages = [m.as_llm_message() for m in rows] or [{"role": "user", "content": run.input}]
    system = {"role": "system", "content": spec.system_prompt} if spec.system_prompt else None
    budget = memory.context_budget(endpoint=spec.model_endpoint, memory=settings_, parameters=spec.parameters)
    summarize = bool(settings_.get("summarize"))
    if summarize:
        budget = max(budget - SUMMARY_RESERVE_TOKENS, 1)
    kept = memory.trim_messages(endpoint=spec.model_endpoint, system=system, messages=messages, budget=budget)
    dropped = messages[: len(messages) - len(kept)] if summarize else []
    return kept, dropped
