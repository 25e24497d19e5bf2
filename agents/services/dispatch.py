"""Runs accepted and handed to workers: create, dispatch (the outbox and its relay), wait for the outcome."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from agent_platform.api.errors import PlatformError
from agent_platform.observability.context import current_trace, new_trace_id
from agent_platform.security.pii import mask_for_storage
from agents.models import AgentDefinition, Conversation, Message, Run, RunStatus
from agents.services.commit import async_commit

logger = logging.getLogger("agents.runs")


MAX_INPUT_CHARS = 100_000
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
    async_commit()
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


def run_dispatch(*, run: Run) -> bool:
    """Hand the run to Celery (after the transaction commits), or execute it here on the embedded default.

    The run row is the outbox: `dispatched_at` says when its task was last sent. A send the broker refuses is
    logged and clears `dispatched_at`, and the run stays queued: the relay (`runs_dispatch_stale`) sends it once
    the broker is back. So accepting a run never fails on the broker. Returns False when the send failed (known
    only when not inside a transaction; inside one the send waits for the commit and True is returned)."""
    from agents.tasks import run_execute_task

    if not run.celery_task_id or run.attempts:  # a re-queued run gets a new task id
        run.celery_task_id = str(uuid.uuid4())
        run.dispatched_at = timezone.now()
        Run.objects.filter(id=run.id).update(celery_task_id=run.celery_task_id, dispatched_at=run.dispatched_at)
    task_id = run.celery_task_id

    if settings.CELERY_TASK_ALWAYS_EAGER:
        run_execute_task.apply_async(args=[str(run.id)], task_id=task_id)
        return True

    outcome = {"sent": True}

    def send() -> None:
        outcome["sent"] = run_send(run_id=run.id, task_id=task_id, sent_at=run.dispatched_at)

    transaction.on_commit(send)
    return outcome["sent"]


def run_send(*, run_id, task_id: str, sent_at=None) -> bool:
    """Publish a run's task; on failure mark the run as awaiting dispatch (`dispatched_at` NULL) and return False."""
    from agents.tasks import run_execute_task

    try:
        run_execute_task.apply_async(args=[str(run_id)], task_id=task_id)
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
    window = timedelta(seconds=float(settings.AGENT_RUN_DISPATCH_STALE_SECONDS))
    grace = timedelta(seconds=float(settings.AGENT_RUN_DISPATCH_GRACE_SECONDS))
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
        if not run_send(run_id=run_id, task_id=task_id, sent_at=now):
            report["failed"] += 1
            break
        report["sent"] += 1
    if report["sent"] or report["failed"]:
        logger.warning("dispatch relay: %(sent)d runs sent again, %(failed)d failed", report)
    return report


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
