"""The agent a run executes (its spec), with its system prompt rendered from the prompt store."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import sync_to_async

from agent_platform.api.errors import PlatformError
from agents.models import AgentDefinition
from agents.orchestrator import AgentSpec
from agents.services.definitions import prompt_readers

logger = logging.getLogger("agents.runs")


def _rendered_text(rendered: Any) -> str:
    text = getattr(rendered, "text", None)
    if text:
        return text
    messages = getattr(rendered, "messages", None) or []
    return "\n\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "system")


def agent_spec_build(*, agent: AgentDefinition, question: str = "", user_id: int | None = None) -> AgentSpec:
    """The agent with its system prompt rendered from the prompt store (or its inline text).

    The prompt is rendered with `agent_name`/`assistant_name`, `agent_slug`, `tools` and `question` (the run's
    input); only the system messages of a chat prompt are used (the conversation supplies the rest).

    The prompt is read as the agent's owner and team AND the run's caller (`user_id`): the stricter rule, since the
    caller sees the rendered text in the run's trace. One any of them may not read is PROMPT_NOT_FOUND, as if it
    did not exist (the agent's inline text is used instead, if it has one): a run never shows another team's
    prompt or names its variables. An agent of nobody in particular run without a caller reads shared prompts only."""
    system = agent.system_prompt_text
    endpoint = agent.model_endpoint
    params = dict(agent.parameters or {})
    params.pop("prompt_variables", None)
    prompt_name: str | None = None
    prompt_version: int | None = None
    ab_variant: str | None = None
    if agent.system_prompt_name:
        from prompts.selectors import render_prompt

        try:
            variables = {
                "agent_name": agent.name,
                "assistant_name": agent.name,
                "agent_slug": agent.slug,
                "tools": list(agent.tools or []),
                "question": question,
                **(agent.parameters or {}).get("prompt_variables", {}),
            }
            readers = prompt_readers(owner_id=agent.owner_id, team_id=agent.team_id, caller_id=user_id)
            rendered = render_prompt(
                agent.system_prompt_name, variables, label=agent.system_prompt_label or None, readers=readers
            )
        except PlatformError as exc:
            if not system:
                if exc.code == "PROMPT_NOT_FOUND":
                    exc.details.setdefault("field", "system_prompt_name")
                raise
            logger.warning("agent %s: stored prompt unavailable (%s); using inline text", agent.slug, exc.code)
        else:
            system = _rendered_text(rendered)
            prompt_name, prompt_version = rendered.name, rendered.version
            ab_variant = getattr(rendered, "ab_variant", None)
            endpoint = endpoint or getattr(rendered, "model_endpoint", None) or ""
            params = {**(getattr(rendered, "params", None) or {}), **params}
    return AgentSpec(
        id=agent.id,
        slug=agent.slug,
        name=agent.name,
        model_endpoint=endpoint,
        system_prompt=system,
        parameters=params,
        tools=list(agent.tools or []),
        mode=agent.mode,
        max_iterations=agent.max_iterations,
        max_total_tokens=agent.max_total_tokens,
        max_wall_seconds=float(agent.max_wall_seconds),
        pii_mask=agent.pii_mask,
        prompt_name=prompt_name,
        prompt_version=prompt_version,
        ab_variant=ab_variant,
        team_id=agent.team_id,
    )


def agent_spec_for_slug(slug: str, user_id: int | None = None) -> AgentSpec:
    """The spec of another agent a run calls as a tool: only one the run's user may see (none of others' own)."""
    from django.contrib.auth import get_user_model

    from agents.selectors import agents_visible_to

    qs = AgentDefinition.objects.all()
    if user_id is not None:
        user = get_user_model().objects.filter(id=user_id).first()
        qs = agents_visible_to(user) if user is not None else qs.none()
    else:
        qs = qs.filter(owner__isnull=True, team__isnull=True)
    agent = qs.filter(slug=slug).first()
    if agent is None:
        raise PlatformError(f"No agent with slug {slug!r}.", code="AGENT_NOT_FOUND", field="agent")
    if not agent.enabled:
        raise PlatformError(f"Agent {slug!r} is disabled.", code="AGENT_DISABLED", field="agent")
    return agent_spec_build(agent=agent, user_id=user_id)


def spec_loader(user_id: int | None):
    async def load(slug: str) -> AgentSpec:
        return await sync_to_async(agent_spec_for_slug)(slug, user_id)

    return load
