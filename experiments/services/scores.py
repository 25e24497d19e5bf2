"""Human scores on experiment results."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from agent_platform.api.errors import PlatformError
from experiments.models import (
    ExperimentResult,
    HumanScore,
    HumanScoreKind,
)


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
