"""Live A/B splits: which version a caller gets, sticky per caller."""

from __future__ import annotations

import hashlib
import random

from agent_platform.api.errors import PlatformError
from agent_platform.observability.context import current_caller


def stickiness_key_from_caller() -> str | None:
    caller = current_caller()
    for value in (caller.conversation_id, caller.session_id, caller.user_id, caller.run_id):
        if value not in (None, ""):
            return str(value)
    return None


def assign_variant(*, split: dict[str, float], key: str | None, salt: str) -> int:
    """Pick a version from `{version: weight}`: stable for one key (same key → same version while the split is
    unchanged), random without a key. Weights need not sum to 100."""
    items = sorted(((int(v), float(w)) for v, w in split.items() if float(w) > 0), key=lambda item: item[0])
    total = sum(w for _, w in items)
    if not items or total <= 0:
        raise PlatformError("The label's split has no positive weight.", code="VALIDATION_ERROR", field="split")
    if key is None:
        point = random.random() * total
    else:
        digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64 * total
    cumulative = 0.0
    for version, weight in items:
        cumulative += weight
        if point < cumulative:
            return version
    return items[-1][0]
