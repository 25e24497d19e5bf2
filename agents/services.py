"""Writes: agent definitions, conversations, runs (start, execute, cancel, reap), the catalog loader, health."""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max
from django.utils import timezone

from agent_platform.accounts.selectors import team_require_usable
from agent_platform.accounts.types import Actor
from agent_platform.api.errors import PlatformError, ValidationFailed
from agent_platform.llm import client as llm
from agent_platform.observability.context import current_trace, new_trace_id
from agent_platform.observability.metrics import note_run_requeued
from agent_platform.security.pii import StreamMasker, mask_for_storage
from agent_platform.worker_loop import call_async
from agents import memory
from agents.models import AgentDefinition, Conversation, Message, Run, RunEvent, RunStatus
from agents.orchestrator import AgentEvent, AgentSpec, Orchestrator
from agents.rendering import render_markdown

logger = logging.getLogger("agents.runs")

MAX_INPUT_CHARS = 100_000
ATTEMPT_SEQ_STRIDE = 1_000_000  # attempt n numbers its events from (n-1)*stride+1: a retry never reuses a seq
EVENT_FLUSH_EVERY = 50
EVENT_FLUSH_SECONDS = 0.25
TERMINAL_EVENTS = ("final", "error")
COST_QUANTUM = Decimal(1).scaleb(-Run._meta.get_field("cost").decimal_places)


def _setting(name: str, default: Any) -> Any:
    """A tunable: Django setting, else environment variable, else the default (cast to its type)."""
    value = getattr(settings, name, None)
    if value is None:
        raw = os.environ.get(name)
        value = type(default)(raw) if raw not in (None, "") else default
    return value


def _async_commit_mode() -> str:
    """PostgreSQL's synchronous_commit for the run's hot-path bookkeeping: "off" unless AGENT_RUN_ASYNC_COMMIT=false."""
    return "on" if str(_setting("AGENT_RUN_ASYNC_COMMIT", "true")).lower() in ("0", "false", "no") else "off"


def _async_commit() -> None:
    """Inside a transaction on PostgreSQL: do not wait for the WAL flush at commit (~4 ms here on every commit).

    Used for the run's hot-path bookkeeping (creating and claiming a run, heartbeats, streamed events). A database
    crash may lose the last fraction of a second of these, never corrupt them; the reaper re-dispatches a queued run
    that nobody claimed. Turn off with AGENT_RUN_ASYNC_COMMIT=false. Outcomes (run_finish) always commit durably."""
    if settings.USING_POSTGRES and _async_commit_mode() == "off":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def run_group(run_id: Any) -> str:
    """The channel-layer group a run's events are published to."""
    return f"run.{run_id}"


# --- agent definitions ---------------------------------------------------------------------------------------

AGENT_FIELDS = (
    "slug", "name", "description", "category", "model_endpoint", "system_prompt_name", "system_prompt_label",
    "system_prompt_text", "parameters", "tools", "memory", "mode", "max_iterations", "max_total_tokens",
    "max_wall_seconds", "pii_mask", "enabled",
)  # fmt: skip


def _prompt_readers(*, owner_id: int | None, team_id: int | None, caller_id: int | None = None):
    """Who sees an agent's stored prompt: its owner, its team and the run's caller (the caller reads the rendered
    text in the run's trace). Each must be allowed to read the prompt; see prompts.selectors.PromptReaders."""
    from prompts.selectors import PromptReaders

    return PromptReaders.of(user_ids=(owner_id, caller_id), team_ids=(team_id,))


def _check_prompt_reference(*, agent: AgentDefinition) -> None:
    """An agent made for someone may name only a stored prompt its owner and team may read: otherwise
    PROMPT_NOT_FOUND on `system_prompt_name`, exactly as for a prompt that does not exist. An agent of the platform
    itself (no owner, no team: catalog, demo, admin) may name a prompt that does not exist yet."""
    if not agent.system_prompt_name or (agent.owner_id is None and agent.team_id is None):
        return
    from prompts.selectors import prompt_require_readable

    readers = _prompt_readers(owner_id=agent.owner_id, team_id=agent.team_id)
    try:
        prompt_require_readable(name=agent.system_prompt_name, readers=readers)
    except PlatformError as exc:
        raise PlatformError(exc.message, code=exc.code, field="system_prompt_name", details=exc.details) from None


def _require_valid(agent: AgentDefinition) -> None:
    """VALIDATION_ERROR naming the first bad field (all of them in `details.fields`) unless `agent` may be saved."""
    from agents.validation import agent_definition_errors

    errors = agent_definition_errors(agent)
    if errors:
        first = next(iter(errors))
        raise ValidationFailed(f"{first}: {' '.join(errors[first])}", field=first, details={"fields": errors})


@transaction.atomic
def agent_create(*, data: dict[str, Any], owner=None, team=None) -> AgentDefinition:
    team_require_usable(team=team, user=owner)
    agent = AgentDefinition(owner=owner, team=team, **{k: v for k, v in data.items() if k in AGENT_FIELDS})
    _require_valid(agent)
    _check_prompt_reference(agent=agent)
    agent.save()
    return agent


@transaction.atomic
def agent_update(*, agent: AgentDefinition, data: dict[str, Any], user: Actor = None) -> AgentDefinition:
    """Change `agent`; moving it to a team is for that team's members and staff (`user`, None for the platform)."""
    if "team" in data and data["team"] != agent.team:
        team_require_usable(team=data["team"], user=user)
    changed = []
    for key, value in data.items():
        if key in (*AGENT_FIELDS, "team") and getattr(agent, key) != value:
            setattr(agent, key, value)
            changed.append(key)
    if changed:
        try:
            _require_valid(agent)
        except PlatformError:
            agent.refresh_from_db()  # the caller's instance stays as stored
            raise
        if {"system_prompt_name", "team"} & set(changed):
            try:
                _check_prompt_reference(agent=agent)
            except PlatformError:
                agent.refresh_from_db()  # the caller's instance stays as stored
                raise
        agent.save()
    return agent


@transaction.atomic
def agent_delete(*, agent: AgentDefinition) -> None:
    agent.delete()


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
        try:
            from prompts.selectors import render_prompt
        except ImportError:
            render_prompt = None
        if render_prompt is None:
            if not system:
                raise PlatformError(
                    f"Agent {agent.slug!r} uses stored prompt {agent.system_prompt_name!r}, but the prompt store is "
                    "not available.",
                    code="PROMPT_NOT_FOUND",
                    field="system_prompt_name",
                )
        else:
            try:
                variables = {
                    "agent_name": agent.name,
                    "assistant_name": agent.name,
                    "agent_slug": agent.slug,
                    "tools": list(agent.tools or []),
                    "question": question,
                    **(agent.parameters or {}).get("prompt_variables", {}),
                }
                readers = _prompt_readers(owner_id=agent.owner_id, team_id=agent.team_id, caller_id=user_id)
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


def _spec_loader(user_id: int | None):
    async def load(slug: str) -> AgentSpec:
        return await sync_to_async(agent_spec_for_slug)(slug, user_id)

    return load


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
    *, run: Run, spec: AgentSpec, agent: AgentDefinition, opens_conversation: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The run's conversation up to its own input, trimmed to the model's context window: (kept, dropped).

    `opens_conversation`: the run started its conversation, so its own input is all there is to read (no query on
    the way to the first token). With the memory setting `"summarize": true` the dropped (oldest) messages are
    returned too, for the orchestrator to summarise into one note; room for that note is kept free."""
    settings_ = agent.memory or {}
    max_messages = int(settings_.get("max_messages") or 100)
    rows = []
    if not opens_conversation:
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


# --- runs -----------------------------------------------------------------------------------------------------


@transaction.atomic
def run_create(
    *,
    agent: AgentDefinition,
    input: str,
    conversation: Conversation | None = None,
    user=None,
    api_key_id: int | None = None,
    run_id: uuid.UUID | None = None,
) -> Run:
    """A queued run with the user's message. `run_id`: the id to give it (a caller that subscribes to the run's
    events before it exists chooses it); a new one by default."""
    if not agent.enabled:
        raise PlatformError(f"Agent {agent.slug!r} is disabled.", code="AGENT_DISABLED", field="agent")
    if not isinstance(input, str) or not input.strip():
        raise PlatformError("input must be a non-empty string.", code="VALIDATION_ERROR", field="input")
    if len(input) > MAX_INPUT_CHARS:
        raise PlatformError(
            f"input is {len(input)} characters; the limit is {MAX_INPUT_CHARS}.", code="VALIDATION_ERROR", field="input"
        )
    _async_commit()
    if agent.pii_mask:  # the agent's policy: personal data is stored masked, so the model reads it masked too
        input = mask_for_storage(input)
    is_new = conversation is None
    if conversation is None:
        conversation = Conversation.objects.create(agent=agent, user=user, title=input.strip()[:80])
    elif conversation.agent_id != agent.id:
        raise PlatformError(
            "conversation_id belongs to another agent.", code="VALIDATION_ERROR", field="conversation_id"
        )
    trace = current_trace()
    run = Run.objects.create(
        id=run_id or uuid.uuid4(),
        agent=agent,
        conversation=conversation,
        user=user if user is not None and user.is_authenticated else None,
        api_key_id=api_key_id,
        input=input,
        trace_id=trace.trace_id if trace else new_trace_id(),
        celery_task_id=str(uuid.uuid4()),
        dispatched_at=timezone.now(),  # the outbox: sent at commit (cleared if that fails; see run_dispatch)
    )
    Message.objects.create(conversation=conversation, role=Message.Role.USER, content=input, run=run)
    if not is_new:
        Conversation.objects.filter(id=conversation.id).update(updated_at=timezone.now())
    return run


def run_dispatch(*, run: Run, opens_conversation: bool = False) -> bool:
    """Hand the run to Celery (after the transaction commits), or execute it here on the embedded default.

    The run row is the outbox: `dispatched_at` says when its task was last sent. A send the broker refuses is
    logged and clears `dispatched_at`, and the run stays queued: the relay (`runs_dispatch_stale`) sends it once
    the broker is back. So accepting a run never fails on the broker. Returns False when the send failed (known
    only when not inside a transaction; inside one the send waits for the commit and True is returned).

    `opens_conversation`: the run was created with a new conversation (its worker need not read the history)."""
    from agents.tasks import run_execute_task

    if not run.celery_task_id or run.attempts:  # a re-queued run gets a new task id
        run.celery_task_id = str(uuid.uuid4())
        run.dispatched_at = timezone.now()
        Run.objects.filter(id=run.id).update(celery_task_id=run.celery_task_id, dispatched_at=run.dispatched_at)
    task_id = run.celery_task_id
    kwargs = {"opens_conversation": True} if opens_conversation else {}

    if settings.CELERY_TASK_ALWAYS_EAGER:
        run_execute_task.apply_async(args=[str(run.id)], kwargs=kwargs, task_id=task_id)
        return True

    outcome = {"sent": True}

    def send() -> None:
        outcome["sent"] = _run_send(run_id=run.id, task_id=task_id, kwargs=kwargs, sent_at=run.dispatched_at)

    transaction.on_commit(send)
    return outcome["sent"]


def _run_send(*, run_id, task_id: str, kwargs: dict[str, Any] | None = None, sent_at=None) -> bool:
    """Publish a run's task; on failure mark the run as awaiting dispatch (`dispatched_at` NULL) and return False."""
    from agents.tasks import run_execute_task

    try:
        run_execute_task.apply_async(args=[str(run_id)], kwargs=kwargs or {}, task_id=task_id)
        return True
    except Exception:  # the broker is down (or refuses): the run waits in the outbox for the relay
        logger.warning("run %s: sending its task failed; the dispatch relay sends it later", run_id, exc_info=True)
    try:
        pending = Run.objects.filter(id=run_id, status=RunStatus.QUEUED)
        if sent_at is not None:
            pending = pending.filter(dispatched_at=sent_at)  # not if someone sent it meanwhile
        pending.update(dispatched_at=None)
    except Exception:  # the database too: the relay still sends it, once its window has passed
        logger.warning("run %s: could not mark it as awaiting dispatch", run_id, exc_info=True)
    return False


def runs_dispatch_stale(*, now=None, limit: int = 500) -> dict[str, int]:
    """The dispatch relay (beat, every AGENT_RUN_DISPATCH_RELAY_SECONDS, on the maintenance queue): send again the
    runs still queued and unclaimed whose send failed (`dispatched_at` NULL, created more than
    AGENT_RUN_DISPATCH_GRACE_SECONDS ago) or was more than AGENT_RUN_DISPATCH_STALE_SECONDS ago (its message lost
    with a broker restart, or its worker never took it). Each send is recorded first, with a conditional update,
    so a run is sent once per window however often (and in however many processes) the relay runs. A duplicate
    is harmless: the claim is conditional. Stops at the first failed send (the broker is down)."""
    report = {"sent": 0, "failed": 0}
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return report  # in-process runs execute where they are started; there is no broker to send to
    from django.db.models import Q

    now = now or timezone.now()
    window = timedelta(seconds=float(_setting("AGENT_RUN_DISPATCH_STALE_SECONDS", 30.0)))
    grace = timedelta(seconds=float(_setting("AGENT_RUN_DISPATCH_GRACE_SECONDS", 5.0)))
    due = Run.objects.filter(status=RunStatus.QUEUED).filter(
        Q(dispatched_at__lt=now - window) | Q(dispatched_at__isnull=True, created_at__lt=now - grace)
    )
    for run_id, last_sent in due.order_by("created_at").values_list("id", "dispatched_at")[:limit]:
        task_id = str(uuid.uuid4())
        taken = Run.objects.filter(id=run_id, status=RunStatus.QUEUED, dispatched_at=last_sent).update(
            dispatched_at=now, celery_task_id=task_id
        )
        if not taken:
            continue  # claimed, cancelled or sent by someone else meanwhile
        if not _run_send(run_id=run_id, task_id=task_id, sent_at=now):
            report["failed"] += 1
            break
        report["sent"] += 1
    if report["sent"] or report["failed"]:
        logger.warning("dispatch relay: %(sent)d runs sent again, %(failed)d failed", report)
    return report


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
    sent = run_dispatch(run=run, opens_conversation=conversation is None)
    if wait and sent:  # a run the broker did not take waits for the relay: answer at once, queued (202)
        return run_wait(run_id=run.id, timeout=wait_seconds or _setting("AGENT_RUN_WAIT_SECONDS", 120))
    run.refresh_from_db()
    return run


def run_wait(*, run_id, timeout: float) -> Run:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        run = Run.objects.select_related("agent").get(id=run_id)
        if run.is_finished or time.monotonic() >= deadline:
            return run
        if settings.DB_POOL_ENABLED and not connection.in_atomic_block:
            connection.close()  # back to the pool while waiting: a waiting caller holds no database session
        time.sleep(delay)
        delay = min(delay * 1.5, 0.25)


# One round trip on PostgreSQL: the conditional UPDATE returns the claimed row, and set_config(..., true) turns off
# the WAL-flush wait for this statement's own transaction only (see _async_commit). It also returns a digest of the
# agent's row, so that the agent is read again only when it has changed.
_CLAIM_SQL = """
UPDATE {run}
   SET status = %s, started_at = %s, heartbeat_at = %s, attempts = attempts + 1,
       input_tokens = 0, output_tokens = 0, llm_calls = 0, cost = NULL
  FROM (SELECT set_config('synchronous_commit', %s, true)) AS commit_mode
 WHERE {run}.id = %s AND {run}.status = %s
RETURNING {run}.*, (SELECT md5(agent::text) FROM {agent} AS agent WHERE agent.id = {run}.agent_id) AS agent_digest
"""
_AGENT_CACHE_SIZE = 256
_agents_by_digest: dict[int, tuple[str, AgentDefinition]] = {}


def _agent_as_of(*, agent_id: int, digest: str | None) -> AgentDefinition:
    """The agent whose row has this digest: from this process's cache, read again when the row has changed."""
    cached = _agents_by_digest.get(agent_id)
    if cached is None or digest is None or cached[0] != digest:
        agent = AgentDefinition.objects.get(id=agent_id)
        if len(_agents_by_digest) >= _AGENT_CACHE_SIZE:
            _agents_by_digest.clear()
        _agents_by_digest[agent_id] = cached = (digest or "", agent)
    return copy.copy(cached[1])  # each run gets its own instance: nothing a run sets leaks into another


def run_claim(*, run_id) -> Run | None:
    """Take a queued run (conditional UPDATE): a redelivered or duplicate task for a taken run does nothing."""
    now = timezone.now()
    if settings.USING_POSTGRES and not connection.in_atomic_block:
        quote = connection.ops.quote_name
        sql = _CLAIM_SQL.format(run=quote(Run._meta.db_table), agent=quote(AgentDefinition._meta.db_table))
        params = [RunStatus.RUNNING, now, now, _async_commit_mode(), str(run_id), RunStatus.QUEUED]
        run = next(iter(Run.objects.raw(sql, params)), None)
        if run is not None:
            run.agent = _agent_as_of(agent_id=run.agent_id, digest=run.agent_digest)
        return run
    with transaction.atomic():
        _async_commit()
        claimed = Run.objects.filter(id=run_id, status=RunStatus.QUEUED).update(
            status=RunStatus.RUNNING,
            started_at=now,
            heartbeat_at=now,
            attempts=F("attempts") + 1,
            input_tokens=0,
            output_tokens=0,
            llm_calls=0,
            cost=None,
        )
        if not claimed:
            return None
        return Run.objects.select_related("agent").get(id=run_id)


def run_heartbeat(*, run_id) -> bool:
    """Mark the run alive; False when it is no longer running here (cancelled or taken over)."""
    with transaction.atomic():
        _async_commit()
        return bool(Run.objects.filter(id=run_id, status=RunStatus.RUNNING).update(heartbeat_at=timezone.now()))


def _events_store_streamed(run_id, events: list[dict[str, Any]]) -> None:
    """A batch of a running run's events (asynchronous commit: they are also published as they happen)."""
    with transaction.atomic():
        _async_commit()
        _events_store(run_id, events)


def _events_store(run_id, events: list[dict[str, Any]]) -> None:
    if events:
        RunEvent.objects.bulk_create(
            [RunEvent(run_id=run_id, seq=e["seq"], type=e["type"], data=e["data"]) for e in events],
            ignore_conflicts=True,
        )


@transaction.atomic
def run_finish(*, run: Run, orchestrator: Orchestrator, events: list[dict[str, Any]], cancelled: bool = False) -> Run:
    """Store the outcome (conditional on the run still running here), the answer message and the last events.

    `run`: the run as claimed. When the conditional update takes, the run is returned with the values written (no
    re-read on the way out of every run); when it does not (cancelled or taken over meanwhile), as stored."""
    now = timezone.now()
    totals = orchestrator.totals
    common = {
        "finished_at": now,
        "heartbeat_at": now,
        "input_tokens": totals.input_tokens,
        "output_tokens": totals.output_tokens,
        "llm_calls": totals.llm_calls,
        # rounded as the column stores it (half away from zero), so that the run returned equals the run stored
        "cost": totals.cost.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP) if totals.cost is not None else None,
        "prompt_name": orchestrator.spec.prompt_name or "",
        "prompt_version": orchestrator.spec.prompt_version,
    }
    error = orchestrator.error
    output, error_message = orchestrator.output, error.message if error is not None else ""
    if orchestrator.spec.pii_mask:
        output, error_message = mask_for_storage(output), mask_for_storage(error_message)
    if cancelled:
        outcome = {
            "status": RunStatus.CANCELLED,
            "error_code": "RUN_CANCELLED",
            "error_message": "The run was cancelled.",
        }
        from_statuses = [RunStatus.RUNNING, RunStatus.CANCELLED]
    elif error is None:
        outcome = {"status": RunStatus.SUCCEEDED, "output": output}
        from_statuses = [RunStatus.RUNNING]
    else:
        outcome = {"status": RunStatus.FAILED, "error_code": error.code, "error_message": error_message}
        from_statuses = [RunStatus.RUNNING]
    updated = Run.objects.filter(id=run.id, status__in=from_statuses).update(**outcome, **common)
    if updated and outcome["status"] == RunStatus.SUCCEEDED and run.conversation_id:
        Message.objects.create(
            conversation_id=run.conversation_id, role=Message.Role.ASSISTANT, content=output, run_id=run.id
        )
        Conversation.objects.filter(id=run.conversation_id).update(updated_at=now)
    _events_store(run.id, events)
    if not updated:
        return Run.objects.get(id=run.id)
    for name, value in {**outcome, **common}.items():
        setattr(run, name, Run._meta.get_field(name).to_python(value))
    return run


EventCallback = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class _EventSink:
    """Publishes each event at once (to the socket or the channel layer) and stores them in batches.

    To the channel layer, one send is in flight per run: events that arrive meanwhile leave together in the next
    message ("run.events"). An idle stream sends each event alone, as soon as it exists; a busy worker sends fewer,
    larger messages instead of falling behind one round trip per token."""

    run_id: str
    on_event: EventCallback | None
    pending: list[dict[str, Any]] = field(default_factory=list)
    last_flush: float = field(default_factory=time.monotonic)
    publish_failures: int = 0
    outbox: list[dict[str, Any]] = field(default_factory=list)
    sender: asyncio.Task | None = None

    async def publish(self, event: dict[str, Any]) -> None:
        """Send one event now, after any still on their way."""
        if self.on_event is not None:
            await self.on_event(event)
            return
        await self.drain()
        await self._group_send([event])

    async def add(self, event: dict[str, Any]) -> None:
        self.pending.append(event)
        if self.on_event is not None:
            await self.on_event(event)
        else:
            self.outbox.append(event)
            if self.sender is None or self.sender.done():
                self.sender = asyncio.create_task(self._send_outbox())
        if len(self.pending) >= EVENT_FLUSH_EVERY or time.monotonic() - self.last_flush >= EVENT_FLUSH_SECONDS:
            await self.flush()

    async def drain(self) -> None:
        if self.sender is not None:
            await self.sender

    async def _send_outbox(self) -> None:
        while self.outbox:
            batch, self.outbox = self.outbox, []
            await self._group_send(batch)

    async def _group_send(self, events: list[dict[str, Any]]) -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is None:
            return
        if len(events) == 1:
            message = {"type": "run.event", "event": events[0]}
        else:
            message = {"type": "run.events", "events": events}
        try:
            await layer.group_send(run_group(self.run_id), message)
        except Exception:  # the run goes on: its events are stored, clients fetch them by sequence number
            self.publish_failures += 1
            if self.publish_failures == 1:
                logger.warning("run %s: publishing events failed", self.run_id, exc_info=True)

    async def flush(self) -> None:
        batch, self.pending = self.pending, []
        self.last_flush = time.monotonic()
        if batch:
            await sync_to_async(_events_store_streamed)(self.run_id, batch)


class _EventMasker:
    """A masking agent's events as they are shown and stored: PII masked in every event's data. Token text goes
    through one StreamMasker, and the newest token event waits for the next event, which is when what the masker
    still holds joins it; joined, the tokens read as the masked answer."""

    def __init__(self) -> None:
        self.stream = StreamMasker()
        self.held: dict[str, Any] | None = None

    def events(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The events to send on, in order, now that `event` has come."""
        if event["type"] == "token":
            event["data"] = {**event["data"], "text": self.stream.feed(event["data"].get("text") or "")}
            ready, self.held = self.release(), event
            return ready
        event["data"] = mask_for_storage(event["data"])
        return [*self.release(), event]

    def release(self) -> list[dict[str, Any]]:
        """The held token event, with the rest of the stream."""
        held, self.held = self.held, None
        if held is None:
            return []
        held["data"]["text"] += self.stream.flush()
        return [held]


def _event_dict(run_id: str, event: AgentEvent) -> dict[str, Any]:
    return {"run_id": run_id, "seq": event.seq, "type": event.type, "data": event.data}


def _claim_and_prepare(
    run_id, opens_conversation: bool
) -> tuple[Run | None, AgentSpec | None, tuple[list, list], PlatformError | None]:
    """One trip to the database thread: claim the run, then build its spec and context (or the reason it cannot)."""
    run = run_claim(run_id=run_id)
    if run is None:
        return None, None, ([], []), None
    try:
        if not run.agent.enabled:  # disabled while the run was queued
            raise PlatformError(f"Agent {run.agent.slug!r} is disabled.", code="AGENT_DISABLED", field="agent")
        spec = agent_spec_build(agent=run.agent, question=run.input, user_id=run.user_id)
        context = conversation_context(run=run, spec=spec, agent=run.agent, opens_conversation=opens_conversation)
        return run, spec, context, None
    except PlatformError as exc:
        return run, None, ([], []), exc


async def run_execute_async(
    run_id, *, on_event: EventCallback | None = None, opens_conversation: bool = False
) -> Run | None:
    """Execute a queued run: claim it, stream the orchestrator's events, store the outcome. Idempotent."""
    began = time.perf_counter()
    sink = _EventSink(run_id=str(run_id), on_event=on_event)
    run, spec, (messages, dropped), problem = await sync_to_async(_claim_and_prepare)(run_id, opens_conversation)
    prepared = time.perf_counter()
    if run is None:
        logger.info("run %s is not queued; nothing to do", run_id)
        return None
    rid = sink.run_id = str(run.id)
    seq_start = (run.attempts - 1) * ATTEMPT_SEQ_STRIDE + 1
    if problem is not None or spec is None:
        exc = problem or PlatformError("The agent could not be prepared.", code="AGENT_EXECUTION_FAILED")
        spec, messages = AgentSpec(slug=run.agent.slug, model_endpoint=run.agent.model_endpoint), []
        orchestrator = Orchestrator(spec, messages, run_id=rid, trace_id=run.trace_id, seq_start=seq_start)
        orchestrator.error = exc
        event = {
            "run_id": rid,
            "seq": seq_start,
            "type": "error",
            "data": {"code": exc.code, "message": exc.message, "details": exc.details, "trace_id": run.trace_id},
        }
        finished = await sync_to_async(run_finish)(run=run, orchestrator=orchestrator, events=[event])
        await sink.publish(event)
        return finished

    orchestrator = Orchestrator(
        spec,
        messages,
        run_id=rid,
        conversation_id=str(run.conversation_id) if run.conversation_id else None,
        user_id=run.user_id,
        trace_id=run.trace_id,
        agent_loader=_spec_loader(run.user_id),
        seq_start=seq_start,
        summarize=dropped or None,
    )
    terminal: dict[str, Any] | None = None
    first_token: float | None = None
    masker = _EventMasker() if spec.pii_mask else None

    async def consume() -> None:
        nonlocal terminal, first_token
        async for event in orchestrator.events():
            if first_token is None and event.type == "token":
                first_token = time.perf_counter()
            data = _event_dict(rid, event)
            for ready in masker.events(data) if masker else (data,):
                if ready["type"] in TERMINAL_EVENTS:
                    if ready["type"] == "final":
                        ready["data"]["html"] = render_markdown(ready["data"]["output"])
                    terminal = ready
                    continue
                await sink.add(ready)

    heartbeat_every = float(_setting("AGENT_RUN_HEARTBEAT_SECONDS", 2.0))
    task = asyncio.create_task(consume())
    cancelled = False
    while not task.done():
        done, _ = await asyncio.wait({task}, timeout=heartbeat_every)
        if done:
            break
        if not await sync_to_async(run_heartbeat)(run_id=rid):
            cancelled = True
            task.cancel()
            break
    try:
        await task
    except asyncio.CancelledError:
        if not cancelled:
            raise
    if cancelled:
        for held in masker.release() if masker else ():
            await sink.add(held)
        terminal = {
            "run_id": rid,
            "seq": orchestrator._seq + 1,
            "type": "error",
            "data": {"code": "RUN_CANCELLED", "message": "The run was cancelled.", **orchestrator.totals.as_dict()},
        }
    assert terminal is not None
    if terminal["type"] == "final" or cancelled:
        terminal["data"]["status"] = RunStatus.CANCELLED.value if cancelled else RunStatus.SUCCEEDED.value
    finished = await sync_to_async(run_finish)(
        run=run, orchestrator=orchestrator, events=[*sink.pending, terminal], cancelled=cancelled
    )
    sink.pending = []
    if terminal["type"] == "final" or cancelled:
        terminal["data"]["status"] = finished.status
    # where the time went, for operators and benchmarks (server-side, in ms)
    terminal["data"]["timings_ms"] = {
        "queued": round((run.started_at - run.created_at).total_seconds() * 1000, 1) if run.started_at else None,
        "prepare": round((prepared - began) * 1000, 1),
        "first_token": round((first_token - began) * 1000, 1) if first_token else None,
        "total": round((time.perf_counter() - began) * 1000, 1),
    }
    await sink.publish(terminal)
    return finished


def run_execute(*, run_id, opens_conversation: bool = False) -> Run | None:
    """Sync entry point (Celery task, eager or worker), on the process's shared event loop: the model's HTTP
    connection and the channel layer's Redis connection stay open from one run to the next."""
    return call_async(run_execute_async, run_id, opens_conversation=opens_conversation)


def run_cancel(*, run: Run) -> Run:
    now = timezone.now()
    was_queued = run.status == RunStatus.QUEUED
    updated = Run.objects.filter(id=run.id, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).update(
        status=RunStatus.CANCELLED, finished_at=now, error_code="RUN_CANCELLED", error_message="The run was cancelled."
    )
    if not updated:
        raise PlatformError(f"Run {run.id} has already finished ({run.status}).", code="RUN_NOT_CANCELLABLE")
    if was_queued:  # no worker is running it: write the terminal event here
        last = RunEvent.objects.filter(run=run).aggregate(m=Max("seq"))["m"] or 0
        event = {
            "seq": last + 1,
            "type": "error",
            "data": {"code": "RUN_CANCELLED", "message": "The run was cancelled."},
        }
        _events_store(run.id, [event])
        _publish_sync(run.id, event)
    run.refresh_from_db()
    return run


def _publish_sync(run_id, event: dict[str, Any]) -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is not None:
        try:
            call_async(
                layer.group_send, run_group(run_id), {"type": "run.event", "event": {"run_id": str(run_id), **event}}
            )
        except Exception:
            logger.warning("could not publish an event of run %s", run_id, exc_info=True)


_last_inline_reap = 0.0


def runs_reap_inline() -> None:
    """On the embedded default no beat runs the reaper: reap from the request path, at most once a minute.

    Runs left "running" by a process that died (a restarted server) are failed with RUN_WORKER_LOST, not re-run
    inside somebody else's request."""
    global _last_inline_reap
    if not settings.CELERY_TASK_ALWAYS_EAGER or time.monotonic() - _last_inline_reap < 60:
        return
    _last_inline_reap = time.monotonic()
    try:
        runs_reap_stale(max_attempts=1)
    except Exception:
        logger.warning("inline reaping of stale runs failed", exc_info=True)


def runs_reap_stale(*, stale_after: timedelta | None = None, max_attempts: int | None = None) -> dict[str, int]:
    """Runs whose worker died (heartbeat older than `stale_after`): re-queue once, then fail with RUN_WORKER_LOST.

    Scheduled by beat on the maintenance queue (agent_platform.celery), so a backlog of runs does not delay it."""
    stale_after = stale_after or timedelta(seconds=float(_setting("AGENT_RUN_STALE_SECONDS", 60)))
    max_attempts = max_attempts or int(_setting("AGENT_RUN_MAX_ATTEMPTS", 2))
    cutoff = timezone.now() - stale_after
    report = {"requeued": 0, "failed": 0}
    # Queued runs nobody claimed (a message lost with a broker restart) are the dispatch relay's: see
    # runs_dispatch_stale. A run re-queued here is sent once, and then the relay's window applies to it.
    for run in Run.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff).select_related("agent"):
        if run.attempts < max_attempts:
            with transaction.atomic():
                taken = Run.objects.filter(id=run.id, status=RunStatus.RUNNING, heartbeat_at=run.heartbeat_at).update(
                    status=RunStatus.QUEUED, heartbeat_at=None, dispatched_at=timezone.now()
                )
                if taken:
                    run_dispatch(run=run)
            if taken:
                logger.warning("run %s: worker lost; re-queued (attempt %d)", run.id, run.attempts + 1)
                report["requeued"] += 1
                note_run_requeued()
            continue
        message = f"The worker executing this run stopped responding {run.attempts} times; giving up."
        with transaction.atomic():
            taken = Run.objects.filter(id=run.id, status=RunStatus.RUNNING, heartbeat_at=run.heartbeat_at).update(
                status=RunStatus.FAILED, error_code="RUN_WORKER_LOST", error_message=message, finished_at=timezone.now()
            )
            if taken:
                seq = run.attempts * ATTEMPT_SEQ_STRIDE + 1
                event = {"seq": seq, "type": "error", "data": {"code": "RUN_WORKER_LOST", "message": message}}
                _events_store(run.id, [event])
        if taken:
            _publish_sync(run.id, event)
            report["failed"] += 1
    return report


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
