"""A run's states in the database: claimed by a worker, alive (heartbeats), its events stored, finished, cancelled."""

from __future__ import annotations

import logging
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Field, Max
from django.utils import timezone

from agent_platform.api.errors import PlatformError
from agent_platform.security.pii import mask_for_storage
from agents.models import AgentDefinition, Conversation, Message, Run, RunEvent, RunStatus
from agents.orchestrator import Orchestrator
from agents.services.commit import async_commit, async_commit_mode
from agents.services.events import event_publish_sync, events_store

logger = logging.getLogger("agents.runs")


ATTEMPT_SEQ_STRIDE = 1_000_000  # attempt n numbers its events from (n-1)*stride+1: a retry never reuses a seq
COST_QUANTUM = Decimal(1).scaleb(-Run._meta.get_field("cost").decimal_places)


# One round trip on PostgreSQL: the conditional UPDATE returns the claimed row, and set_config(..., true) turns off
# the WAL-flush wait for this statement's own transaction only (see async_commit).
_CLAIM_SQL = """
UPDATE {run}
   SET status = %s, started_at = %s, heartbeat_at = %s, attempts = attempts + 1,
       input_tokens = 0, output_tokens = 0, llm_calls = 0, cost = NULL
  FROM (SELECT set_config('synchronous_commit', %s, true)) AS commit_mode
 WHERE {run}.id = %s AND {run}.status = %s
RETURNING {run}.*
"""


def run_claim(*, run_id) -> Run | None:
    """Take a queued run (conditional UPDATE): a redelivered or duplicate task for a taken run does nothing."""
    now = timezone.now()
    if settings.USING_POSTGRES and not connection.in_atomic_block:
        quote = connection.ops.quote_name
        sql = _CLAIM_SQL.format(run=quote(Run._meta.db_table))
        params = [RunStatus.RUNNING, now, now, async_commit_mode(), str(run_id), RunStatus.QUEUED]
        run = next(iter(Run.objects.raw(sql, params)), None)
        if run is not None:
            run.agent = AgentDefinition.objects.get(id=run.agent_id)
        return run
    with transaction.atomic():
        async_commit()
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
        async_commit()
        return bool(Run.objects.filter(id=run_id, status=RunStatus.RUNNING).update(heartbeat_at=timezone.now()))


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
    events_store(run.id, events)
    if not updated:
        return Run.objects.get(id=run.id)
    for name, value in {**outcome, **common}.items():
        setattr(run, name, cast(Field, Run._meta.get_field(name)).to_python(value))
    return run


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
        events_store(run.id, [event])
        event_publish_sync(run.id, event)
    run.refresh_from_db()
    return run
