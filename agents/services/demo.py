"""The demo agents, on the offline mock model."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from agents.models import AgentDefinition
from agents.services.definitions import agent_create

# --- demo ---------------------------------------------------------------------------------------------------

DEMO_AGENTS: list[dict[str, Any]] = [
    {
        "slug": "assistant",
        "name": "Ada",
        "description": "A friendly general assistant with a calculator and a clock. Runs on the offline mock model.",
        "category": "general",
        "model_endpoint": "mock/assistant",
        "system_prompt_name": "assistant-system",
        "system_prompt_label": "production",
        "system_prompt_text": "You are Ada, a concise and friendly assistant. If you are not sure, say so.",
        "tools": ["calculator", "current_time"],
        "parameters": {"temperature": 0.3},
    },
    {
        "slug": "helpdesk",
        "name": "Helpdesk",
        "description": "Answers support questions; can look up prompts and ask the assistant agent.",
        "category": "support",
        "model_endpoint": "mock/helpdesk",
        "system_prompt_text": "You are a helpdesk agent. Be brief. Use **markdown** for lists.",
        "tools": ["prompt_lookup", "call_agent", "calculator"],
        "max_iterations": 6,
    },
]


@transaction.atomic
def demo_agents_load(*, owner=None) -> list[AgentDefinition]:
    """Create the demo agents on mock endpoints (idempotent: existing ones are left as they are)."""
    agents = []
    for spec in DEMO_AGENTS:
        agent = AgentDefinition.objects.filter(slug=spec["slug"]).first()
        agents.append(agent or agent_create(data=spec))
    return agents
