"""Dataset writes: create, version, add and import items (a file whole or not at all), items from spans, delete.

Dataset imports are atomic: a file with any invalid row is rejected whole, with every row's error listed
(`DATASET_INVALID`, `details.rows = [{"row", "field", "message"}]`), so a dataset never holds half a file.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from agent_platform.api.errors import PlatformError
from experiments import importers
from experiments.models import (
    Dataset,
    DatasetItem,
)

MAX_ROW_ERRORS = 200


def max_dataset_items() -> int:
    return settings.EXPERIMENTS_DATASET_MAX_ITEMS


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


@transaction.atomic
def dataset_delete(*, dataset: Dataset) -> None:
    """Delete a dataset and its items; a dataset an experiment uses is protected (ProtectedError)."""
    dataset.delete()
