"""Reads of the costs app: usage reports (rollups for whole past days, raw records for the rest), prices, budgets."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDay, TruncHour
from django.utils import timezone

from agent_platform.api.errors import ValidationFailed
from costs.models import Budget, CostRecord, Price, UsageDaily, UsageRollupDay

ZERO = Decimal(0)
GROUP_FIELDS = {
    "provider": "provider",
    "model": "model",
    "agent": "agent_id",
    "user": "user_id",
    "api_key": "api_key_id",
    "team": "team_id",
    "day": None,
    "hour": None,
}
METRICS = ("calls", "errors", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "cost")
MAX_HOURLY_RANGE = timedelta(days=31)
MAX_RANGE = timedelta(days=3660)


@dataclass
class UsageReport:
    start: datetime
    end: datetime
    group_by: str
    bucket: str
    totals: dict[str, Any]
    groups: list[dict[str, Any]] = field(default_factory=list)  # one row per group key, by cost descending
    series: list[dict[str, Any]] = field(default_factory=list)  # one row per (bucket, key), by bucket
    rollup_days: int = 0


def _empty() -> dict[str, Any]:
    return {"calls": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0, "cached_tokens": 0,
            "reasoning_tokens": 0, "cost": ZERO}  # fmt: skip


def _add(target: dict[str, Any], row: dict[str, Any]) -> None:
    for metric in METRICS:
        target[metric] += row[metric] or (ZERO if metric == "cost" else 0)


def _finish(values: dict[str, Any]) -> dict[str, Any]:
    values["total_tokens"] = values["input_tokens"] + values["output_tokens"]
    return values


def _aggregates(*, calls_field: str | None = None, rollup: bool = False) -> dict[str, Any]:
    if rollup:
        return {
            "calls": Sum("calls"),
            "errors": Sum("errors"),
            "input_tokens": Sum("input_tokens"),
            "output_tokens": Sum("output_tokens"),
            "cached_tokens": Sum("cached_tokens"),
            "reasoning_tokens": Sum("reasoning_tokens"),
            "cost": Coalesce(Sum("cost"), ZERO),
        }
    return {
        "calls": Count("id"),
        "errors": Count("id", filter=~Q(status="ok")),
        "input_tokens": Sum("input_tokens"),
        "output_tokens": Sum("output_tokens"),
        "cached_tokens": Sum("cached_tokens"),
        "reasoning_tokens": Sum("reasoning_tokens"),
        "cost": Coalesce(Sum("cost"), ZERO),
    }


def _day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def get_usage_report(
    *,
    start: datetime,
    end: datetime,
    group_by: str = "model",
    bucket: str | None = None,
    user_id: int | None = None,
    filters: dict[str, Any] | None = None,
) -> UsageReport:
    """Totals and a time series of billed calls in [start, end), grouped by provider, model, agent, user, API key,
    team, or only by time (`day`, `hour`). Day buckets read the daily rollups for whole past days that have been
    rolled up and the raw cost records for everything else (today, partial days, days not rolled up yet);
    hour buckets read raw records (range limited to 31 days)."""
    if group_by not in GROUP_FIELDS:
        raise ValidationFailed(
            f"group_by must be one of: {', '.join(GROUP_FIELDS)}.", field="group_by", details={"value": group_by}
        )
    bucket = bucket or ("hour" if group_by == "hour" else "day")
    if bucket not in ("day", "hour"):
        raise ValidationFailed("bucket must be 'day' or 'hour'.", field="bucket")
    if end <= start:
        raise ValidationFailed("end must be after start.", field="end")
    if end - start > (MAX_HOURLY_RANGE if bucket == "hour" else MAX_RANGE):
        raise ValidationFailed("The time range is too long for this bucket.", field="start")
    key_field = GROUP_FIELDS[group_by]
    extra = dict(filters or {})
    if user_id is not None:
        extra["user_id"] = user_id

    cells: dict[tuple[Any, Any], dict[str, Any]] = defaultdict(_empty)
    rollup_days: list[date] = []
    raw_q = Q(created_at__gte=start, created_at__lt=end)
    if bucket == "day":
        today = timezone.now().astimezone(UTC).date()
        first_whole = start.astimezone(UTC).date()
        if _day_start(first_whole) < start:
            first_whole += timedelta(days=1)
        last_whole = (end.astimezone(UTC) - timedelta(days=1)).date()  # the day [d, d+1) must end by `end`
        if _day_start(last_whole) + timedelta(days=1) > end:
            last_whole -= timedelta(days=1)
        last_whole = min(last_whole, today - timedelta(days=1))
        if first_whole <= last_whole:
            rollup_days = sorted(
                UsageRollupDay.objects.filter(day__gte=first_whole, day__lte=last_whole).values_list("day", flat=True)
            )
        if rollup_days:
            dims = ["day"] + ([key_field] if key_field else [])
            rows = (
                UsageDaily.objects.filter(day__in=rollup_days, **extra)
                .values(*dims)
                .annotate(**_aggregates(rollup=True))
                .order_by()
            )
            for row in rows:
                _add(cells[(row["day"].isoformat(), row[key_field] if key_field else None)], row)
            # the raw rows still needed: the gaps around and between rolled-up days, as positive (indexable) ranges
            gaps, cursor = [], start
            for first, last in _contiguous_ranges(rollup_days):
                if _day_start(first) > cursor:
                    gaps.append((cursor, _day_start(first)))
                cursor = _day_start(last) + timedelta(days=1)
            if cursor < end:
                gaps.append((cursor, end))
            raw_q = Q(pk__in=[])
            for gap_start, gap_end in gaps:
                raw_q |= Q(created_at__gte=gap_start, created_at__lt=gap_end)
    trunc = TruncDay("created_at", tzinfo=UTC) if bucket == "day" else TruncHour("created_at", tzinfo=UTC)
    dims = ["b"] + ([key_field] if key_field else [])
    rows = (
        CostRecord.objects.filter(raw_q, **extra).annotate(b=trunc).values(*dims).annotate(**_aggregates()).order_by()
    )
    for row in rows:
        b = row["b"].astimezone(UTC)
        label = b.date().isoformat() if bucket == "day" else b.isoformat().replace("+00:00", "Z")
        _add(cells[(label, row[key_field] if key_field else None)], row)

    totals = _empty()
    by_key: dict[Any, dict[str, Any]] = defaultdict(_empty)
    series = []
    for (label, key), values in sorted(cells.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        _add(totals, values)
        if key_field:
            _add(by_key[key], values)
        series.append({"bucket": label, "key": key, **_finish(dict(values))})
    if key_field:
        groups = [
            {"key": k, **_finish(v)} for k, v in sorted(by_key.items(), key=lambda kv: kv[1]["cost"], reverse=True)
        ]
    else:
        groups = [{"key": s["bucket"], **{m: s[m] for m in (*METRICS, "total_tokens")}} for s in series]
    return UsageReport(
        start=start,
        end=end,
        group_by=group_by,
        bucket=bucket,
        totals=_finish(totals),
        groups=groups,
        series=series,
        rollup_days=len(rollup_days),
    )


def _contiguous_ranges(days: list[date]) -> list[tuple[date, date]]:
    ranges: list[tuple[date, date]] = []
    for day in days:
        if ranges and ranges[-1][1] + timedelta(days=1) == day:
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def price_list(*, provider: str | None = None, model: str | None = None) -> QuerySet[Price]:
    qs = Price.objects.all()
    if provider:
        qs = qs.filter(provider=provider)
    if model:
        qs = qs.filter(model__icontains=model)
    return qs


def budgets_visible_to(user) -> QuerySet[Budget]:
    if user.is_staff:
        return Budget.objects.all()
    from agent_platform.accounts.models import ApiKey

    key_ids = list(ApiKey.objects.filter(user=user).values_list("id", flat=True))
    team_ids = list(user.teams.values_list("id", flat=True))
    return Budget.objects.filter(
        Q(scope=Budget.Scope.USER, scope_id=user.pk)
        | Q(scope=Budget.Scope.API_KEY, scope_id__in=key_ids)
        | Q(scope=Budget.Scope.TEAM, scope_id__in=team_ids)
    )


def budgets_near_limit(*, percent: float = 80.0, limit: int = 10, user=None) -> list[Any]:
    qs = budgets_visible_to(user) if user is not None else Budget.objects.all()
    qs = qs.filter(is_active=True, limit__gt=0).annotate(used_amount=F("spent") + F("reserved"))
    near = qs.filter(used_amount__gte=F("limit") * Decimal(percent) / 100).order_by("-used_amount")
    found = list(near[: limit * 3])
    return sorted(found, key=lambda b: b.percent_used, reverse=True)[:limit]


def unpriced_models(*, since: datetime | None = None) -> list[dict[str, Any]]:
    qs = CostRecord.objects.filter(unpriced=True)
    if since:
        qs = qs.filter(created_at__gte=since)
    return [dict(row) for row in qs.values("provider", "model").annotate(calls=Count("id")).order_by("-calls")[:50]]
