"""Starting a run, as every entry point does: reap inline, create, dispatch, and wait when asked."""

from __future__ import annotations

from django.conf import settings

from agents.models import AgentDefinition, Conversation, Run
from agents.services.dispatch import run_create, run_dispatch, run_wait
from agents.services.reaper import runs_reap_inline


def run_start(
    *,
    agent: AgentDefinition,
    input: str,
    conversation: Conversation | None = None,
    user=None,
    api_key_id: int | None = None,
    wait: bool = False,
    wait_seconds: float | None = None,
) -> Run:
    """Create a run and start it. With `wait`, return it finished (or as it is after `wait_seconds`)."""
    runs_reap_inline()
    run = run_create(agent=agent, input=input, conversation=conversation, user=user, api_key_id=api_key_id)
    sent = run_dispatch(run=run)
    if wait and sent:  # a run the broker did not take waits for the relay: answer at once, queued (202)
        return run_wait(run_id=run.id, timeout=wait_seconds or settings.AGENT_RUN_WAIT_SECONDS)
    run.refresh_from_db()
    return run
