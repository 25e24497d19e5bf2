"""Input rules of the costs app's writes: a model's own validation as a ValidationFailed, a recompute's range."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError as DjangoValidationError

from agent_platform.api.errors import ValidationFailed


def validate_recompute_range(*, start: datetime, end: datetime) -> None:
    """A recompute covers [start, end): both with a time zone, the end after the start."""
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValidationFailed("A date and time with a time zone (ISO 8601).", field=name)
    if end <= start:
        raise ValidationFailed("Must be after the start.", field="end")


def model_validate(obj) -> None:
    """The model's own `full_clean`, its first problem raised as VALIDATION_ERROR naming the field (all in details)."""
    try:
        obj.full_clean()
    except DjangoValidationError as exc:
        fields = exc.message_dict if hasattr(exc, "error_dict") else {"item": exc.messages}
        name = next(iter(fields))
        raise ValidationFailed(f"{name}: {' '.join(fields[name])}", field=name, details={"fields": fields}) from exc
