"""Dashboard pages: the overview (`/`) and usage & cost (`/dashboard/usage/`)."""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import timezone
from rest_framework.exceptions import ValidationError as DRFValidationError

from agent_platform.api.errors import PlatformError
from costs import selectors
from costs.queries import usage_report_for

RANGES = {"24h": (timedelta(hours=24), "hour"), "7d": (timedelta(days=7), "day"), "30d": (timedelta(days=30), "day")}


def _iso(dt) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _traces_link(**params) -> str:
    return "/dashboard/traces/?" + urlencode({k: v for k, v in params.items() if v not in (None, "")})


@login_required
def overview(request):
    from traces import selectors as trace_selectors

    range_key = request.GET.get("range", "24h")
    if range_key not in RANGES:
        range_key = "24h"
    span, bucket = RANGES[range_key]
    end = timezone.now()
    start = end - span
    user = request.user
    own_user_id = None if user.is_staff else user.pk
    calls = trace_selectors.llm_call_stats(start=start, end=end, bucket=bucket, user=user)
    cost_report = selectors.get_usage_report(start=start, end=end, group_by=bucket, bucket=bucket, user_id=own_user_id)
    cost_by_bucket = {row["bucket"]: row["cost"] for row in cost_report.series}
    series = []
    for row in calls:
        label = row["bucket"].date().isoformat() if bucket == "day" else _iso(row["bucket"])
        series.append({**row, "label": label, "cost": float(cost_by_bucket.get(label, 0))})
    since = _iso(start)
    tops = {}
    for group in ("agent", "model", "user"):
        if group == "user" and not user.is_staff:
            continue
        report = selectors.get_usage_report(start=start, end=end, group_by=group, user_id=own_user_id)
        rows = []
        for row in report.groups[:5]:
            key = row["key"]
            link_key = {"agent": "agent", "model": "model", "user": "user"}[group]
            rows.append({**row, "link": _traces_link(**{link_key: key if key is not None else "", "since": since})})
        tops[group] = rows
    totals = {
        "calls": sum(r["calls"] for r in calls),
        "errors": sum(r["errors"] for r in calls),
        "tokens": sum(r["tokens"] for r in calls),
        "cost": cost_report.totals["cost"],
    }
    p50, p95 = trace_selectors.llm_latency(start=start, end=end, user=user)
    context = {
        "range_key": range_key,
        "ranges": list(RANGES),
        "totals": totals,
        "p50": p50,
        "p95": p95,
        "series_json": json.dumps(series, default=str),
        "tops": tops,
        "budgets": selectors.budgets_near_limit(user=user),
        "slowest": trace_selectors.slowest_traces(user=user, since=start),
        "failed": trace_selectors.failed_traces(user=user, since=start),
        "links": {
            "all": _traces_link(since=since),
            "errors": _traces_link(status="error", since=since),
        },
    }
    return render(request, "dashboard/overview.html", context)


def _bucket_labels(report) -> list[str]:
    """Every bucket of the range, so that quiet periods show as zero rather than being skipped."""
    start = report.start.astimezone(UTC)
    if report.bucket == "hour":
        step, current = timedelta(hours=1), start.replace(minute=0, second=0, microsecond=0)
    else:
        step, current = timedelta(days=1), start.replace(hour=0, minute=0, second=0, microsecond=0)
    labels: list[str] = []
    while current < report.end and len(labels) < 5000:
        labels.append(current.date().isoformat() if report.bucket == "day" else _iso(current))
        current += step
    return labels


@login_required
def usage(request):
    params = {k: v for k, v in request.GET.items() if v}
    error = None
    try:
        report = usage_report_for(request.user, params)
    except PlatformError as exc:
        error, report = exc.message, None
    except DRFValidationError as exc:
        detail = exc.detail if isinstance(exc.detail, dict) else {"query": exc.detail}
        error, report = "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in detail.items()), None
    chart = None
    if report is not None:
        buckets = _bucket_labels(report)
        keys = [g["key"] for g in report.groups[:8]] if report.group_by not in ("day", "hour") else [None]
        datasets = []
        for key in keys:
            values = {row["bucket"]: float(row["cost"]) for row in report.series if row["key"] == key}
            datasets.append(
                {"label": str(key) if key is not None else "cost", "data": [values.get(b, 0) for b in buckets]}
            )
        tokens: dict[str, list[int]] = {}
        for row in report.series:
            tokens[row["bucket"]] = tokens.get(row["bucket"], 0) + row["total_tokens"]
        chart = {"labels": buckets, "datasets": datasets, "tokens": [tokens.get(b, 0) for b in buckets]}
    return render(
        request,
        "costs/usage.html",
        {
            "report": report,
            "error": error,
            "chart_json": json.dumps(chart),
            "params": request.GET,
            "group_choices": list(selectors.GROUP_FIELDS),
            "unpriced": selectors.unpriced_models(since=timezone.now() - timedelta(days=30))
            if request.user.is_staff
            else [],
        },
    )
