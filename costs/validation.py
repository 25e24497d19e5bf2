"""The rules of a cost recompute's input, used by the service and by the API serializer alike."""

from __future__ import annotations

from datetime import datetime

from agent_platform.api.errors import ValidationFailed


def validate_recompute_range(*, start: datetime, end: datetime) -> None:
    """A recompute covers [start, end): both with a time zone, the end after the start."""
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValidationFailed("A date and time with a time zone (ISO 8601).", field=name)
    if end <= start:
        raise ValidationFailed("Must be after the start.", field="end")
