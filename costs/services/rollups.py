"""Daily usage rollups of cost records, rebuilt per day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from costs.models import CostRecord, UsageDaily, UsageRollupDay

ZERO = Decimal(0)

ROLLUP_KEYS = ("provider", "model", "agent_id", "user_id", "api_key_id", "team_id")


@transaction.atomic
def usage_rollup_build(*, day: date) -> int:
    """Rebuild the rollup rows of one UTC day from its cost records and mark the day complete."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    UsageDaily.objects.filter(day=day).delete()
    rows = (
        CostRecord.objects.filter(created_at__gte=start, created_at__lt=end)
        .values(*ROLLUP_KEYS)
        .annotate(
            n=Count("id"),
            n_errors=Count("id", filter=~Q(status="ok")),
            n_unpriced=Count("id", filter=Q(unpriced=True)),
            in_t=Coalesce(Sum("input_tokens"), 0),
            out_t=Coalesce(Sum("output_tokens"), 0),
            cached_t=Coalesce(Sum("cached_tokens"), 0),
            reasoning_t=Coalesce(Sum("reasoning_tokens"), 0),
            total_cost=Coalesce(Sum("cost"), ZERO),
        )
        .order_by()
    )
    objs = [
        UsageDaily(
            day=day,
            calls=r["n"],
            errors=r["n_errors"],
            unpriced_calls=r["n_unpriced"],
            input_tokens=r["in_t"],
            output_tokens=r["out_t"],
            cached_tokens=r["cached_t"],
            reasoning_tokens=r["reasoning_t"],
            cost=r["total_cost"],
            **{k: r[k] for k in ROLLUP_KEYS},
        )
        for r in rows
    ]
    UsageDaily.objects.bulk_create(objs, batch_size=2000)
    UsageRollupDay.objects.update_or_create(
        day=day, defaults={"built_at": timezone.now(), "records": sum(o.calls for o in objs)}
    )
    return len(objs)


def usage_rollups_refresh(*, days_back: int = 3) -> list[date]:
    """Rebuild the last `days_back` whole days (late records arrive after midnight) and any older day that has
    cost records but no rollup yet."""
    today = timezone.now().astimezone(UTC).date()
    wanted = {today - timedelta(days=i) for i in range(1, days_back + 1)}
    first = CostRecord.objects.order_by("created_at").values_list("created_at", flat=True).first()
    if first is not None:
        built = set(UsageRollupDay.objects.values_list("day", flat=True))
        day = first.astimezone(UTC).date()
        while day < today:
            if day not in built:
                wanted.add(day)
            day += timedelta(days=1)
    done = []
    for day in sorted(wanted):
        usage_rollup_build(day=day)
        done.append(day)
    return done
