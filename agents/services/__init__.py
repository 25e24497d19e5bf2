"""Writes of the agents app, one module per concern, behind this facade (`from agents import services`):

- `definitions`: agent definitions (create, update, delete) and their checks
- `specs`: the agent a run executes, its system prompt rendered; `health`: whether an agent can answer
- `conversations`: conversations and the context a run reads
- `start`: starting a run as every entry point does; `dispatch`: create, hand to workers (outbox, relay), wait
- `execution`: a run executed (claim, stream, outcome); `lifecycle`: a run's states; `events`: its events out
- `commit`: the asynchronous commit of hot-path bookkeeping
- `reaper`: runs whose worker died; `demo`: the demo agents
"""

from agents.services.conversations import conversation_clear, conversation_create
from agents.services.definitions import AGENT_FIELDS, agent_create, agent_delete, agent_update
from agents.services.demo import demo_agents_load
from agents.services.dispatch import MAX_INPUT_CHARS, run_create, run_dispatch, run_wait, runs_dispatch_stale
from agents.services.events import run_group
from agents.services.execution import TERMINAL_EVENTS, run_execute, run_execute_async
from agents.services.health import agent_health
from agents.services.lifecycle import ATTEMPT_SEQ_STRIDE, run_cancel, run_claim, run_finish, run_heartbeat
from agents.services.reaper import runs_reap_inline, runs_reap_stale
from agents.services.specs import agent_spec_build, agent_spec_for_slug
from agents.services.start import run_start

__all__ = [
    "AGENT_FIELDS",
    "ATTEMPT_SEQ_STRIDE",
    "MAX_INPUT_CHARS",
    "TERMINAL_EVENTS",
    "agent_create",
    "agent_delete",
    "agent_health",
    "agent_spec_build",
    "agent_spec_for_slug",
    "agent_update",
    "conversation_clear",
    "conversation_create",
    "demo_agents_load",
    "run_cancel",
    "run_claim",
    "run_create",
    "run_dispatch",
    "run_execute",
    "run_execute_async",
    "run_finish",
    "run_group",
    "run_heartbeat",
    "run_start",
    "run_wait",
    "runs_dispatch_stale",
    "runs_reap_inline",
    "runs_reap_stale",
]
