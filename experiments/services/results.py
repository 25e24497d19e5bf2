"""The runner's bookkeeping: claim, store and release result rows, heartbeats, the final status."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from experiments.models import (
    ACTIVE_STATUSES,
    Experiment,
    ExperimentResult,
    ExperimentStatus,
    ResultStatus,
)


def experiment_mark_running(*, experiment_id: int, run_token: str) -> bool:
    """Queued → running for this run token; False when the run is no longer current (cancelled, superseded)."""
    now = timezone.now()
    updated = Experiment.objects.filter(pk=experiment_id, run_token=run_token, status__in=ACTIVE_STATUSES).update(
        status=ExperimentStatus.RUNNING, heartbeat_at=now, updated_at=now
    )
    return updated == 1


def experiment_heartbeat(*, experiment_id: int, run_token: str) -> str | None:
    """Record that the runner is alive. Returns "running"; the experiment's status when it stopped (cancelled);
    "superseded" when a newer start took over (this runner was presumed dead); None if the experiment is gone."""
    now = timezone.now()
    updated = Experiment.objects.filter(pk=experiment_id, run_token=run_token, status=ExperimentStatus.RUNNING).update(
        heartbeat_at=now
    )
    if updated:
        return ExperimentStatus.RUNNING
    row = Experiment.objects.filter(pk=experiment_id).values_list("status", "run_token").first()
    if row is None:
        return None
    status, current_token = row
    return "superseded" if current_token != run_token else status


def experiment_finish(
    *, experiment_id: int, run_token: str, status: str, error_code: str = "", error_message: str = ""
) -> bool:
    now = timezone.now()
    updated = Experiment.objects.filter(pk=experiment_id, run_token=run_token, status__in=ACTIVE_STATUSES).update(
        status=status,
        finished_at=now,
        heartbeat_at=now,
        error_code=error_code,
        error_message=error_message[:2000],
        updated_at=now,
    )
    return updated == 1


def results_claim(*, experiment_id: int, run_token: str, limit: int) -> list[int]:
    """Claim up to `limit` pending result rows for this run (a conditional update: a row another runner claimed
    first is not taken). Returns the claimed ids."""
    candidates = list(
        ExperimentResult.objects.filter(experiment_id=experiment_id, status=ResultStatus.PENDING)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    if not candidates:
        return []
    now = timezone.now()
    ExperimentResult.objects.filter(id__in=candidates, status=ResultStatus.PENDING).update(
        status=ResultStatus.RUNNING, claim_token=run_token, claimed_at=now
    )
    return list(
        ExperimentResult.objects.filter(id__in=candidates, status=ResultStatus.RUNNING, claim_token=run_token)
        .order_by("id")
        .values_list("id", flat=True)
    )


def results_release(*, result_ids: list[int], run_token: str) -> None:
    """Give claimed rows back (cancel, budget stop): they stay pending for a later run."""
    if result_ids:
        ExperimentResult.objects.filter(id__in=result_ids, status=ResultStatus.RUNNING, claim_token=run_token).update(
            status=ResultStatus.PENDING, claim_token=""
        )


FINISH_FIELDS = [
    "status",
    "output",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "cost",
    "error_code",
    "error_message",
    "scores",
    "prompt_version",
    "trace_id",
    "span_id",
    "call_id",
    "attempts",
    "finished_at",
]


@transaction.atomic
def results_store(*, run_token: str, finished: list[dict[str, Any]]) -> int:
    """Store finished executions (dicts of FINISH_FIELDS plus `id`), each with a conditional update: only a row
    this run still holds (claimed by `run_token`, still running) is written. One statement, executed for every row
    (`executemany`), so storing a batch costs one round of SQL rather than one ORM update per row."""
    if not finished:
        return 0
    from django.db import connection

    meta = ExperimentResult._meta
    columns = [f for f in FINISH_FIELDS if f not in ("attempts", "finished_at")]
    fields = [meta.get_field(name) for name in columns]
    now = timezone.now()
    finished_field = meta.get_field("finished_at")
    table = connection.ops.quote_name(meta.db_table)
    assignments = ", ".join(f"{connection.ops.quote_name(f.column)} = %s" for f in fields)
    # Only quoted model column names are interpolated; every value is a parameter.
    finished_at, attempts = connection.ops.quote_name("finished_at"), connection.ops.quote_name("attempts")
    sql = (
        f"UPDATE {table} SET {assignments}, {finished_at} = %s, "  # noqa: S608
        f"{attempts} = {attempts} + 1 "
        f"WHERE {connection.ops.quote_name('id')} = %s AND {connection.ops.quote_name('claim_token')} = %s "
        f"AND {connection.ops.quote_name('status')} = %s"
    )
    defaults = {"output": "", "error_code": "", "error_message": "", "scores": {}, "trace_id": "", "span_id": ""}
    defaults.update(call_id="", input_tokens=0, output_tokens=0)
    params = []
    for data in finished:
        row = [
            field.get_db_prep_save(data.get(name, defaults.get(name)), connection)
            for name, field in zip(columns, fields, strict=True)
        ]
        row += [finished_field.get_db_prep_save(now, connection), data["id"], run_token, ResultStatus.RUNNING]
        params.append(row)
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
        count = cursor.rowcount
    return count if isinstance(count, int) and count >= 0 else len(params)
