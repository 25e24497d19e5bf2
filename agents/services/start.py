"""Starting a run, as every entry point does: reap inline, create, dispatch, and wait when asked."""

from __future__ import annotations

import uuid

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
    run_id: uuid.UUID | None = None,
    dispatch: bool = True,
    wait: bool = False,
    wait_seconds: float | None = None,
) -> Run:
    """Create a run and start it. With `wait`, return it finished (or as it is after `wait_seconds`).

    `run_id`: the id to give it (a caller that subscribes to its events first chooses it). `dispatch=False`: the
    caller executes the run itself, streaming its events (the chat socket on the embedded default)."""
    runs_reap_inline()
    run = run_create(
        agent=agent, input=input, conversation=conversation, user=user, api_key_id=api_key_id, run_id=run_id
    )
    if not dispatch:
        return run
    sent = run_dispatch(run=run)
    if wait and sent:  # a run the broker did not take waits for the relay: answer at once, queued (202)
        return run_wait(run_id=run.id, timeout=wait_seconds or settings.AGENT_RUN_WAIT_SECONDS)
    run.refresh_from_db()
    return run
