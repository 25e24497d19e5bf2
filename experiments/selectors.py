"""Reads of the experiments app: what a user may see, progress counts, exports, spans from the traces app."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet

from agent_platform.api.errors import PlatformError
from experiments import importers
from experiments.models import (
    Dataset,
    DatasetItem,
    Experiment,
    ExperimentResult,
    HumanScore,
    ResultStatus,
)


def _visible(qs: QuerySet, user) -> QuerySet:
    if user is None or not user.is_authenticated:
        return qs.none()
    if user.is_staff:
        return qs
    team_ids = list(user.teams.values_list("id", flat=True))
    return qs.filter(Q(owner=user) | Q(team_id__in=team_ids))


def datasets_visible_to(user) -> QuerySet[Dataset]:
    return _visible(Dataset.objects.all(), user).annotate(item_count=Count("items")).order_by("name", "-version")


def dataset_get(*, user, dataset_id: int) -> Dataset:
    dataset = _visible(Dataset.objects.all(), user).filter(pk=dataset_id).first()
    if dataset is None:
        raise PlatformError(f"No dataset {dataset_id}.", code="DATASET_NOT_FOUND", field="dataset_id")
    return dataset


def experiments_visible_to(user) -> QuerySet[Experiment]:
    return _visible(Experiment.objects.select_related("dataset", "baseline"), user)


def experiment_get(*, user, experiment_id: int) -> Experiment:
    experiment = experiments_visible_to(user).filter(pk=experiment_id).first()
    if experiment is None:
        raise PlatformError(f"No experiment {experiment_id}.", code="EXPERIMENT_NOT_FOUND", field="experiment_id")
    return experiment


def result_get(*, user, experiment_id: int, result_id: int) -> ExperimentResult:
    experiment = experiment_get(user=user, experiment_id=experiment_id)
    result = ExperimentResult.objects.filter(experiment=experiment, pk=result_id).first()
    if result is None:
        raise PlatformError(
            f"No result {result_id} in experiment {experiment_id}.", code="NOT_FOUND", field="result_id"
        )
    return result


def experiment_progress(*, experiment: Experiment) -> dict[str, Any]:
    """Counts of result rows by status (one grouped query), and the percentage finished."""
    counts = {s: 0 for s in ResultStatus.values}
    for row in ExperimentResult.objects.filter(experiment=experiment).values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    total = sum(counts.values())
    if total == 0:  # not started yet: what it will run
        total = experiment.variants.count() * experiment.dataset.items.count()
        counts[ResultStatus.PENDING] = total
    done = counts[ResultStatus.COMPLETED] + counts[ResultStatus.FAILED]
    return {
        "total": total,
        **counts,
        "finished": done,
        "percent": round(100.0 * done / total, 1) if total else 0.0,
    }


def results_of(*, experiment: Experiment, variant: str | None = None, status: str | None = None):
    qs = ExperimentResult.objects.filter(experiment=experiment).select_related("variant", "item")
    if variant:
        qs = qs.filter(variant__name=variant)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("item__position", "variant__position", "id")


def _item_dict(item: DatasetItem) -> dict[str, Any]:
    return {"input": item.input, "messages": item.messages, "expected": item.expected, "metadata": item.metadata}


def dataset_export(*, dataset: Dataset, fmt: str) -> str:
    items = [_item_dict(i) for i in dataset.items.order_by("position")]
    if fmt == "csv":
        return importers.to_csv(items)
    if fmt == "jsonl":
        return importers.to_jsonl(items)
    raise PlatformError("format must be 'csv' or 'jsonl'", code="VALIDATION_ERROR", field="format")


def span_input_output(*, trace_id: str, span_id: str, user=None) -> tuple[Any, Any] | None:
    """(input, output) of a recorded span, read through `traces.selectors`; None if there is no such span (or the
    user may not see its trace)."""
    try:
        from traces import selectors as trace_selectors
    except ImportError:  # traces app absent: callers pass input/output directly
        return None
    if user is None:
        return None
    try:
        tree = trace_selectors.trace_tree(user=user, trace_id=trace_id)
    except PlatformError:
        return None
    for node in tree.flat:
        if node.span.span_id == span_id:
            return node.span.input, node.span.output
    return None


def human_scores_for(*, result_ids: list[int] | None = None, trace_ids: list[str] | None = None) -> QuerySet:
    qs = HumanScore.objects.all()
    if result_ids is not None:
        qs = qs.filter(result_id__in=result_ids)
    if trace_ids is not None:
        qs = qs.filter(trace_id__in=trace_ids)
    return qs


def human_scores_visible_to(user) -> QuerySet[HumanScore]:
    """Staff see every score; others their own and those on results of experiments they can see."""
    qs = HumanScore.objects.order_by("-created_at", "-id")
    if user.is_staff:
        return qs
    return qs.filter(Q(user=user) | Q(result__experiment__in=experiments_visible_to(user)))


def human_score_summary(*, scores) -> dict[str, Any]:
    """thumbs up rate, mean rating and label counts of a set of human scores."""
    thumbs = [s.value for s in scores if s.kind == "thumbs" and s.value is not None]
    ratings = [s.value for s in scores if s.kind == "rating" and s.value is not None]
    labels: dict[str, int] = {}
    for s in scores:
        if s.kind == "label":
            labels[s.label] = labels.get(s.label, 0) + 1
    return {
        "thumbs": len(thumbs),
        "thumbs_up_rate": (sum(thumbs) / len(thumbs)) if thumbs else None,
        "ratings": len(ratings),
        "mean_rating": (sum(ratings) / len(ratings)) if ratings else None,
        "labels": labels,
    }
