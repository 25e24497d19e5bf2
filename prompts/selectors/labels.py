"""A prompt's labels, their move log and its reviews."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from agent_platform.accounts.types import Actor
from prompts.models import LabelMove, Prompt, PromptReview
from prompts.selectors.access import prompt_by_name
from prompts.selectors.versions import (
    LATEST,
)


@dataclass(frozen=True)
class LabelInfo:
    name: str
    version: int
    protected: bool
    split: dict[str, float] | None
    computed: bool = False
    updated_by: str | None = None
    updated_at: datetime | None = None


def label_list(*, name: str, user: Actor = None) -> list[LabelInfo]:
    """The prompt's labels, with the computed `latest` first."""
    prompt = prompt_by_name(name=name, user=user)
    labels = [LabelInfo(name=LATEST, version=prompt.version, protected=False, split=None, computed=True)]
    for label in prompt.labels.select_related("updated_by").order_by("name"):
        labels.append(
            LabelInfo(
                name=label.name,
                version=label.version,
                protected=label.protected,
                split=label.split or None,
                updated_by=label.updated_by.get_username() if label.updated_by else None,
                updated_at=label.updated_at,
            )
        )
    return labels


def label_moves(*, name: str, label: str | None = None, user: Actor = None) -> QuerySet[LabelMove]:
    prompt = prompt_by_name(name=name, user=user)
    qs = prompt.label_moves.select_related("moved_by")
    return qs.filter(label=label) if label else qs


def review_list(*, name: str, version: int | None = None, user: Actor = None) -> QuerySet[PromptReview]:
    prompt = prompt_by_name(name=name, user=user)
    qs = prompt.reviews.select_related("requested_by", "reviewed_by")
    return qs.filter(version=version) if version is not None else qs


def version_is_approved(*, prompt: Prompt, version: int) -> bool:
    return prompt.reviews.filter(version=version, state=PromptReview.State.APPROVED).exists()
