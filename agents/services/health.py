"""Whether an agent can answer: its endpoint configured, credentialed and responding."""

from __future__ import annotations

import time
from typing import Any

from agent_platform.api.errors import PlatformError
from agent_platform.llm import client as llm
from agents.models import AgentDefinition


def agent_health(*, agent: AgentDefinition, probe: bool = True) -> dict[str, Any]:
    """Is the agent's endpoint configured, credentialed and answering? A probe is a 1-token completion."""
    result: dict[str, Any] = {"agent": agent.slug, "endpoint": agent.model_endpoint, "enabled": agent.enabled}
    try:
        info = llm.model_info(endpoint=agent.model_endpoint)
        result.update(model=info.model, provider=info.provider)
        if probe:
            started = time.perf_counter()
            llm.complete(
                endpoint=agent.model_endpoint,
                messages=[{"role": "user", "content": "ping"}],
                params={"max_tokens": 1},
                timeout=10,
            )
            result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    except PlatformError as exc:
        result.update(healthy=False, error={"code": exc.code, "message": exc.message})
        return result
    result["healthy"] = agent.enabled
    if not agent.enabled:
        result["error"] = {"code": "AGENT_DISABLED", "message": f"Agent {agent.slug!r} is disabled."}
    return result
