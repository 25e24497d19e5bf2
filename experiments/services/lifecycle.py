"""An experiment's lifecycle: create with its variants, start (or resume) its run, cancel."""

from __future__ import annotations

import logging
import secrets
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agent_platform.api.errors import PlatformError
from experiments.evaluators import build_evaluators
from experiments.models import (
    ACTIVE_STATUSES,
    Dataset,
    Experiment,
    ExperimentResult,
    ExperimentStatus,
    ResultStatus,
    Variant,
)
from experiments.prompting import experiment_readers, prompt_check_readable

if TYPE_CHECKING:
    from prompts.selectors import PromptReaders


logger = logging.getLogger("experiments")


def heartbeat_timeout() -> float:
    return settings.EXPERIMENTS_HEARTBEAT_TIMEOUT


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


@transaction.atomic
def experiment_baseline_default(*, experiment: Experiment) -> Experiment:
    """An experiment without a baseline compares against its first variant (as `experiment_create` does); one
    without variants yet keeps none."""
    if experiment.baseline_id is None:
        first = experiment.variants.order_by("position", "id").first()
        if first is not None:
            experiment.baseline = first
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
