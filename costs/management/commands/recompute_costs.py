"""`manage.py recompute_costs`: reprice the cost records of a date range with the price table as it is now."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agent_platform.api.errors import PlatformError
from costs.services import cost_records_recompute


def _moment(value: str) -> datetime:
    """ISO 8601 (a date alone means its midnight); without a time zone it is UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"not an ISO 8601 date or date and time: {value!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Reprice the cost records created in [--start, --end) with the price table as it is now (after a price "
        "correction) and rebuild the affected daily rollups; budgets are not re-charged."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--start", required=True, help="Inclusive, ISO 8601 (2026-01-01 or 2026-01-01T12:00Z).")
        parser.add_argument("--end", required=True, help="Exclusive, ISO 8601.")
        parser.add_argument("--provider", help="Only this provider's records.")
        parser.add_argument("--model", help="Only this model's records (exact name).")
        parser.add_argument("--agent", help="Only this agent's records (id or slug).")

    def handle(self, *args: Any, **options: Any) -> None:
        bounds = {}
        for name in ("start", "end"):
            try:
                bounds[name] = _moment(options[name])
            except ValueError as exc:
                raise CommandError(f"--{name}: {exc}") from exc
        try:
            result = cost_records_recompute(
                **bounds, provider=options["provider"], model=options["model"], agent=options["agent"]
            )
        except PlatformError as exc:
            field = exc.details.get("field")
            raise CommandError(f"--{field}: {exc.message}" if field else exc.message) from exc
        self.stdout.write(
            f"recomputed {result['records']} records from {bounds['start']:%Y-%m-%d %H:%M} to "
            f"{bounds['end']:%Y-%m-%d %H:%M} UTC: {result['changed']} changed, {result['days']} days' rollups rebuilt"
        )
