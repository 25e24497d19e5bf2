"""Writes of the experiments app: datasets and their items, experiments and variants, starting/cancelling, scores.

Dataset imports are atomic: a file with any invalid row is rejected whole, with every row's error listed
(`DATASET_INVALID`, `details.rows = [{"row", "field", "message"}]`), so a dataset never holds half a file.
"""

from __future__ import annotations

import logging
import secrets
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from agent_platform.api.errors import PlatformError
from experiments import importers
from experiments.evaluators import build_evaluators
from experiments.models import (
    ACTIVE_STATUSES,
    Dataset,
    DatasetItem,
    Experiment,
    ExperimentResult,
    ExperimentStatus,
    HumanScore,
    HumanScoreKind,
    ResultStatus,
    Variant,
)
from experiments.prompting import experiment_readers, prompt_check_readable

if TYPE_CHECKING:
    from prompts.selectors import PromptReaders

MAX_ROW_ERRORS = 200
logger = logging.getLogger("experiments")


def max_dataset_items() -> int:
    return settings.EXPERIMENTS_DATASET_MAX_ITEMS


def heartbeat_timeout() -> float:
    return settings.EXPERIMENTS_HEARTBEAT_TIMEOUT


# --- datasets -----------------------------------------------------------------------------------------------


@transaction.atomic
def dataset_create(
    *,
    name: str,
    description: str = "",
    owner=None,
    team=None,
    items: list[dict[str, Any]] | None = None,
) -> Dataset:
    name = (name or "").strip()
    if not name:
        raise PlatformError("name is required", code="VALIDATION_ERROR", field="name")
    if Dataset.objects.filter(name=name, owner=owner).exists():
        raise PlatformError(
            f"A dataset named {name!r} exists; add a new version of it instead.", code="CONFLICT", field="name"
        )
    dataset = Dataset.objects.create(name=name, version=1, description=description, owner=owner, team=team)
    if items:
        dataset_items_add(dataset=dataset, items=items)
    return dataset


@transaction.atomic
def dataset_new_version(*, dataset: Dataset, description: str | None = None) -> Dataset:
    """A copy of `dataset` (all items) as the next version of its name, with the same owner and team."""
    siblings = Dataset.objects.select_for_update().filter(name=dataset.name, owner_id=dataset.owner_id)
    latest = siblings.aggregate(v=Max("version"))["v"] or 0
    copy = Dataset.objects.create(
        name=dataset.name,
        version=latest + 1,
        description=dataset.description if description is None else description,
        owner=dataset.owner,
        team=dataset.team,
    )
    DatasetItem.objects.bulk_create(
        DatasetItem(
            dataset=copy,
            position=item.position,
            input=item.input,
            messages=item.messages,
            expected=item.expected,
            metadata=item.metadata,
            source_trace_id=item.source_trace_id,
            source_span_id=item.source_span_id,
        )
        for item in dataset.items.all()
    )
    return copy


def _invalid(errors: list[importers.RowError], *, what: str) -> PlatformError:
    shown = [e.as_dict() for e in errors[:MAX_ROW_ERRORS]]
    first = errors[0]
    message = (
        f"{len(errors)} invalid {what}; nothing was imported. "
        f"First: row {first.row}, field {first.field}: {first.message}"
    )
    return PlatformError(
        message, code="DATASET_INVALID", details={"rows": shown, "error_count": len(errors), "imported": 0}
    )


@transaction.atomic
def dataset_items_add(
    *, dataset: Dataset, items: list[dict[str, Any]], sources: list[tuple[str, str]] | None = None
) -> list[DatasetItem]:
    """Validate and append items (dicts with input/messages/expected/metadata). All or nothing."""
    if not isinstance(items, list):
        raise PlatformError("items must be a list", code="VALIDATION_ERROR", field="items")
    clean: list[dict[str, Any]] = []
    errors: list[importers.RowError] = []
    for index, raw in enumerate(items, start=1):
        if not isinstance(raw, dict):
            errors.append(importers.RowError(index, "(item)", "must be an object"))
            continue
        unknown = sorted(k for k in raw if k not in importers.RESERVED)
        if unknown:
            errors.append(importers.RowError(index, unknown[0], "unknown field"))
            continue
        item, item_errors = importers.validate_item(raw, index)
        errors.extend(item_errors)
        if item is not None:
            clean.append(item)
    if errors:
        raise _invalid(errors, what="items")
    return _append(dataset=dataset, items=clean, sources=sources)


def _append(
    *, dataset: Dataset, items: list[dict[str, Any]], sources: list[tuple[str, str]] | None = None
) -> list[DatasetItem]:
    locked = Dataset.objects.select_for_update().get(pk=dataset.pk)
    existing = locked.items.count()
    if existing + len(items) > max_dataset_items():
        raise PlatformError(
            f"A dataset holds at most {max_dataset_items()} items ({existing} already).",
            code="DATASET_INVALID",
            field="items",
            details={"rows": []},
        )
    start = (locked.items.aggregate(p=Max("position"))["p"] or 0) + 1
    rows = []
    for offset, item in enumerate(items):
        trace_id, span_id = sources[offset] if sources else ("", "")
        rows.append(
            DatasetItem(
                dataset=locked,
                position=start + offset,
                input=item["input"],
                messages=item.get("messages"),
                expected=item.get("expected"),
                metadata=item.get("metadata") or {},
                source_trace_id=trace_id,
                source_span_id=span_id,
            )
        )
    created = DatasetItem.objects.bulk_create(rows, batch_size=500)
    Dataset.objects.filter(pk=locked.pk).update(updated_at=timezone.now())
    return created


@transaction.atomic
def dataset_import(*, dataset: Dataset, fmt: str, content: str | bytes) -> int:
    """Import a CSV or JSONL file into `dataset`. Atomic: any invalid row rejects the whole file (DATASET_INVALID
    listing every row's error); returns the number of items added."""
    if fmt not in ("csv", "jsonl"):
        raise PlatformError("format must be 'csv' or 'jsonl'", code="VALIDATION_ERROR", field="format")
    size = len(content.encode() if isinstance(content, str) else content)
    if size > settings.EXPERIMENTS_IMPORT_MAX_BYTES:
        raise PlatformError(
            f"The file is {size} bytes; the limit is {settings.EXPERIMENTS_IMPORT_MAX_BYTES}.",
            code="DATASET_INVALID",
            field="file",
            details={"rows": []},
        )
    if isinstance(content, bytes):
        try:
            content = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise PlatformError(
                "the file is not UTF-8 text", code="DATASET_INVALID", field="file", details={"rows": []}
            ) from None
    parsed = importers.parse_csv(content) if fmt == "csv" else importers.parse_jsonl(content)
    if parsed.errors:
        raise _invalid(parsed.errors, what="rows")
    if not parsed.items:
        raise PlatformError("the file has no items", code="DATASET_INVALID", field="file", details={"rows": []})
    return len(_append(dataset=dataset, items=parsed.items))


@transaction.atomic
def dataset_items_from_spans(*, dataset: Dataset, spans: list[dict[str, Any]], user=None) -> list[DatasetItem]:
    """Items from recorded spans: each entry is `{"trace_id", "span_id"}` (read through `traces.selectors`) or
    `{"input": ..., "output": ...}` given directly. A span's input becomes the item (messages when it is a list of
    chat messages, variables when it is an object, else a `{"input": <text>}` variable); its output the expected."""
    from experiments import selectors

    if not isinstance(spans, list) or not spans:
        raise PlatformError("spans must be a non-empty list", code="VALIDATION_ERROR", field="spans")
    items: list[dict[str, Any]] = []
    sources: list[tuple[str, str]] = []
    errors: list[importers.RowError] = []
    for index, entry in enumerate(spans, start=1):
        if not isinstance(entry, dict):
            errors.append(importers.RowError(index, "(span)", "must be an object"))
            continue
        trace_id, span_id = str(entry.get("trace_id") or ""), str(entry.get("span_id") or "")
        if span_id:
            found = selectors.span_input_output(trace_id=trace_id, span_id=span_id, user=user)
            if found is None:
                errors.append(importers.RowError(index, "span_id", f"no span {span_id} in trace {trace_id}"))
                continue
            span_input, span_output = found
        elif "input" in entry:
            span_input, span_output = entry.get("input"), entry.get("output")
        else:
            errors.append(importers.RowError(index, "span_id", "give trace_id + span_id, or input (+ output)"))
            continue
        raw = _item_from_io(span_input, span_output)
        if isinstance(entry.get("metadata"), dict):
            raw["metadata"] = {**raw["metadata"], **entry["metadata"]}
        item, item_errors = importers.validate_item(raw, index)
        errors.extend(item_errors)
        if item is not None:
            items.append(item)
            sources.append((trace_id[:32], span_id[:16]))
    if errors:
        raise _invalid(errors, what="spans")
    return _append(dataset=dataset, items=items, sources=sources)


def _item_from_io(span_input: Any, span_output: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"input": {}, "metadata": {"source": "trace"}}
    if isinstance(span_input, dict) and isinstance(span_input.get("messages"), list):
        span_input = span_input["messages"]
    if isinstance(span_input, list) and importers.validate_messages(span_input) is None:
        raw["messages"] = [m for m in span_input if m.get("role") != "assistant" or m is not span_input[-1]]
    elif isinstance(span_input, dict):
        raw["input"] = span_input
    elif span_input is not None:
        raw["input"] = {"input": span_input if isinstance(span_input, str) else str(span_input)}
    if isinstance(span_output, dict) and "content" in span_output:
        span_output = span_output["content"]
    raw["expected"] = span_output
    return raw


# --- experiments ----------------------------------------------------------------------------------------------


def _validate_variant(raw: Any, index: int) -> dict[str, Any]:
    where = f"variants[{index}]"
    if not isinstance(raw, dict):
        raise PlatformError("each variant must be an object", code="VALIDATION_ERROR", field=where)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 64:
        raise PlatformError("name must be 1-64 characters", code="VALIDATION_ERROR", field=f"{where}.name")
    endpoint = raw.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise PlatformError("endpoint is required", code="VALIDATION_ERROR", field=f"{where}.endpoint")
    prompt_name = raw.get("prompt_name") or ""
    version = raw.get("prompt_version")
    label = raw.get("prompt_label") or ""
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise PlatformError(
            "prompt_version must be a positive integer", code="VALIDATION_ERROR", field=f"{where}.prompt_version"
        )
    if version is not None and label:
        raise PlatformError(
            "give prompt_version or prompt_label, not both", code="VALIDATION_ERROR", field=f"{where}.prompt_label"
        )
    if (version is not None or label) and not prompt_name:
        raise PlatformError(
            "prompt_name is required with a version or label", code="VALIDATION_ERROR", field=f"{where}.prompt_name"
        )
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise PlatformError("params must be an object", code="VALIDATION_ERROR", field=f"{where}.params")
    return {
        "name": name.strip(),
        "endpoint": endpoint.strip(),
        "prompt_name": prompt_name,
        "prompt_version": version,
        "prompt_label": label,
        "params": params,
    }


@transaction.atomic
def experiment_create(
    *,
    name: str,
    dataset: Dataset,
    variants: list[dict[str, Any]],
    evaluators: list[dict[str, Any]] | None = None,
    concurrency: int = 8,
    baseline: str | None = None,
    description: str = "",
    owner=None,
    team=None,
) -> Experiment:
    """An experiment in draft with its variants. `baseline` names a variant (default: the first)."""
    if not (name or "").strip():
        raise PlatformError("name is required", code="VALIDATION_ERROR", field="name")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 256:
        raise PlatformError("concurrency must be between 1 and 256", code="VALIDATION_ERROR", field="concurrency")
    if not isinstance(variants, list) or not variants:
        raise PlatformError("an experiment needs at least one variant", code="VALIDATION_ERROR", field="variants")
    clean = [_validate_variant(raw, index) for index, raw in enumerate(variants)]
    names = [v["name"] for v in clean]
    for index, variant_name in enumerate(names):
        if variant_name in names[:index]:
            raise PlatformError(
                f"two variants are named {variant_name!r}", code="VALIDATION_ERROR", field=f"variants[{index}].name"
            )
    if baseline is not None and baseline not in names:
        raise PlatformError(f"no variant named {baseline!r}", code="VALIDATION_ERROR", field="baseline")
    configured = build_evaluators(evaluators or [])  # validates; raises naming evaluators[i].option
    readers = experiment_readers(owner_id=getattr(owner, "pk", None), team_id=getattr(team, "pk", None))
    for index, variant in enumerate(clean):
        _check_references(variant, index, readers=readers)
    for index, c in enumerate(configured):
        if c.type_name == "llm_judge":
            _check_references(
                {
                    "endpoint": c.evaluator.config["endpoint"],
                    "prompt_name": c.evaluator.config["prompt"],
                    "prompt_version": c.evaluator.config["version"],
                    "prompt_label": c.evaluator.config["label"] or "",
                },
                index,
                where="evaluators",
                names={"prompt_name": "prompt", "prompt_version": "version", "prompt_label": "label"},
                readers=readers,
            )
    experiment = Experiment.objects.create(
        name=name.strip(),
        description=description,
        dataset=dataset,
        concurrency=concurrency,
        evaluators=evaluators or [],
        owner=owner,
        team=team,
    )
    created = [Variant.objects.create(experiment=experiment, position=i, **v) for i, v in enumerate(clean)]
    experiment.baseline = next(v for v in created if v.name == (baseline or names[0]))
    experiment.save(update_fields=["baseline", "updated_at"])
    return experiment


def _check_references(
    variant: dict[str, Any],
    index: int,
    *,
    readers: PromptReaders,
    where: str = "variants",
    names: dict[str, str] | None = None,
) -> None:
    """The endpoint and prompt a variant (or a judge) names exist (MODEL_NOT_FOUND / PROMPT_NOT_FOUND naming the
    field). A prompt the experiment's owner or team may not read is PROMPT_NOT_FOUND on the prompt's name, with the
    same message as a prompt that does not exist; only then are its version and label looked up."""
    from agent_platform.llm.client import model_info

    names = names or {}
    try:
        model_info(endpoint=variant["endpoint"])
    except PlatformError as exc:
        if exc.code == "MODEL_NOT_FOUND":
            raise PlatformError(exc.message, code=exc.code, field=f"{where}[{index}].endpoint") from None
    if variant["prompt_name"]:
        from prompts.selectors import get_prompt

        try:
            prompt_check_readable(name=variant["prompt_name"], readers=readers)
        except PlatformError as exc:
            field = names.get("prompt_name", "prompt_name")
            raise PlatformError(exc.message, code=exc.code, field=f"{where}[{index}].{field}") from None
        try:
            get_prompt(
                name=variant["prompt_name"],
                version=variant["prompt_version"],
                label=variant["prompt_label"] or None,
                readers=readers,
            )
        except PlatformError as exc:
            if exc.code == "PROMPT_NOT_FOUND":
                field = (
                    "prompt_version"
                    if variant["prompt_version"]
                    else "prompt_label"
                    if variant["prompt_label"]
                    else "prompt_name"
                )
                field = names.get(field, field)
                raise PlatformError(exc.message, code=exc.code, field=f"{where}[{index}].{field}") from None
            raise


def _is_stale(experiment: Experiment) -> bool:
    seen = experiment.heartbeat_at or experiment.started_at or experiment.updated_at
    return seen is None or timezone.now() - seen > timedelta(seconds=heartbeat_timeout())


@transaction.atomic
def experiment_start(*, experiment: Experiment) -> Experiment:
    """Queue a run of every (variant, item) pair without a finished result.

    Starting a queued or running experiment is `EXPERIMENT_ALREADY_RUNNING` (409) — unless its runner has not
    reported for `EXPERIMENTS_HEARTBEAT_TIMEOUT` seconds (a dead worker), in which case this resumes it: rows the
    dead runner had claimed go back to pending, finished rows are kept and never re-run or re-billed."""
    locked = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if locked.status in ACTIVE_STATUSES and not _is_stale(locked):
        raise PlatformError(
            f"Experiment {locked.pk} is already {locked.status}.",
            code="EXPERIMENT_ALREADY_RUNNING",
            details={"experiment_id": locked.pk, "status": locked.status},
        )
    variants = list(locked.variants.all())
    if not variants:
        raise PlatformError("the experiment has no variants", code="VALIDATION_ERROR", field="variants")
    item_ids = list(locked.dataset.items.values_list("id", flat=True))
    if not item_ids:
        raise PlatformError("the dataset has no items", code="DATASET_INVALID", field="dataset", details={"rows": []})
    build_evaluators(locked.evaluators)
    ExperimentResult.objects.bulk_create(
        # item-major order: ids follow (item, variant), so claiming by id runs items side by side
        [ExperimentResult(experiment=locked, variant=v, item_id=i) for i in item_ids for v in variants],
        batch_size=1000,
        ignore_conflicts=True,
    )
    # Rows a dead runner had claimed go back to the queue (their calls may have been made; their results were not
    # stored, so they are the only rows that can be executed again).
    ExperimentResult.objects.filter(experiment=locked, status=ResultStatus.RUNNING).update(
        status=ResultStatus.PENDING, claim_token=""
    )
    now = timezone.now()
    locked.status = ExperimentStatus.QUEUED
    locked.run_token = secrets.token_hex(16)
    locked.heartbeat_at = now
    locked.started_at = locked.started_at or now
    locked.finished_at = None
    locked.error_code = locked.error_message = ""
    locked.save()
    token, pk = locked.run_token, locked.pk

    transaction.on_commit(lambda: _dispatch_run(experiment_id=pk, run_token=token))
    return locked


def background_runs() -> bool:
    return settings.EXPERIMENTS_BACKGROUND


def _dispatch_run(*, experiment_id: int, run_token: str) -> None:
    """Send the run to Celery; on the embedded default (eager Celery) run it in a background thread of this process
    instead (`EXPERIMENTS_BACKGROUND`, default on), so starting returns at once and progress shows while it runs."""
    from agent_platform.celery import app
    from experiments.tasks import run_experiment

    if app.conf.task_always_eager and background_runs():
        thread = threading.Thread(
            target=_run_in_thread, args=(experiment_id, run_token), name=f"experiment-{experiment_id}", daemon=True
        )
        thread.start()
    else:
        run_experiment.delay(experiment_id, run_token)


def _run_in_thread(experiment_id: int, run_token: str) -> None:
    from django.db import connections

    from agent_platform.observability.hooks import hub
    from experiments.runner import run_experiment

    try:
        run_experiment(experiment_id=experiment_id, run_token=run_token)
    except Exception:
        logger.exception("experiment %s: background run failed", experiment_id)
    finally:
        hub.flush()
        connections.close_all()


@transaction.atomic
def experiment_cancel(*, experiment: Experiment) -> Experiment:
    """Stop a queued or running experiment: no new item starts; in-flight calls finish and are kept."""
    locked = Experiment.objects.select_for_update().get(pk=experiment.pk)
    if locked.status not in ACTIVE_STATUSES:
        raise PlatformError(
            f"Experiment {locked.pk} is {locked.status}, not running.",
            code="CONFLICT",
            details={"experiment_id": locked.pk, "status": locked.status},
        )
    locked.status = ExperimentStatus.CANCELLED
    locked.finished_at = timezone.now()
    locked.save(update_fields=["status", "finished_at", "updated_at"])
    return locked


# --- runner bookkeeping (called by experiments.runner) ------------------------------------------------------------


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


# --- human scores -----------------------------------------------------------------------------------------------


@transaction.atomic
def human_score_add(
    *,
    kind: str,
    result: ExperimentResult | None = None,
    trace_id: str = "",
    span_id: str = "",
    value: float | None = None,
    label: str = "",
    comment: str = "",
    user=None,
) -> HumanScore:
    """A person's score on a result or a trace: thumbs (value 1 up / 0 down, or label "up"/"down"), rating (1-5)
    or label (any short text)."""
    if result is None and not trace_id:
        raise PlatformError("give a result or a trace_id", code="VALIDATION_ERROR", field="trace_id")
    if trace_id and (len(trace_id) > 32 or any(c not in "0123456789abcdef" for c in trace_id.lower())):
        raise PlatformError("trace_id must be up to 32 hex characters", code="VALIDATION_ERROR", field="trace_id")
    if kind not in HumanScoreKind.values:
        raise PlatformError(
            f"kind must be one of {', '.join(HumanScoreKind.values)}", code="VALIDATION_ERROR", field="kind"
        )
    if trace_id and user is not None:
        from traces.selectors import trace_get

        trace_get(user=user, trace_id=trace_id)  # TRACE_NOT_FOUND unless the scorer may see the trace
    label = (label or "").strip()
    if kind == HumanScoreKind.THUMBS:
        if value is None and label in ("up", "down"):
            value = 1.0 if label == "up" else 0.0
        if value not in (0, 1):
            raise PlatformError("thumbs value must be 1 (up) or 0 (down)", code="VALIDATION_ERROR", field="value")
    elif kind == HumanScoreKind.RATING:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= 5:
            raise PlatformError("rating value must be between 1 and 5", code="VALIDATION_ERROR", field="value")
    elif not label or len(label) > 100:
        raise PlatformError("label must be 1-100 characters", code="VALIDATION_ERROR", field="label")
    try:
        return HumanScore.objects.create(
            result=result,
            trace_id=trace_id.lower(),
            span_id=span_id[:16],
            kind=kind,
            value=None if value is None else float(value),
            label=label,
            comment=comment or "",
            user=user,
        )
    except IntegrityError:
        raise PlatformError("invalid human score", code="VALIDATION_ERROR", field="result") from None


@transaction.atomic
def dataset_delete(*, dataset: Dataset) -> None:
    """Delete a dataset and its items; a dataset an experiment uses is protected (ProtectedError)."""
    dataset.delete()


def experiments_resume_stale() -> list[int]:
    """Resume every queued or running experiment whose runner has not reported for EXPERIMENTS_HEARTBEAT_TIMEOUT
    seconds (its worker died): finished rows are kept, the rest runs again. Returns the resumed ids."""
    cutoff = timezone.now() - timedelta(seconds=heartbeat_timeout())
    resumed = []
    for experiment in Experiment.objects.filter(status__in=ACTIVE_STATUSES, heartbeat_at__lt=cutoff):
        try:
            experiment_start(experiment=experiment)
        except PlatformError as exc:  # raced with a live runner or emptied meanwhile: leave it
            logger.info("experiment %s not resumed: %s", experiment.pk, exc.code)
            continue
        resumed.append(experiment.pk)
    return resumed
