"""Review writes: request, submit, approve and reject a version (four eyes)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from agent_platform.accounts.types import Actor
from agent_platform.api.errors import PlatformError
from prompts.models import (
    Prompt,
    PromptReview,
)
from prompts.selectors import (
    not_found,
    prompt_by_name,
    version_exists,
)
from prompts.services.access import acting_user, prompt_for_write


def _may_review(user: Actor) -> bool:
    return user is None or user.has_perm("prompts.review_prompt")


def _review_for(prompt: Prompt, version: int, states: tuple[str, ...]) -> PromptReview | None:
    return (
        PromptReview.objects.select_for_update()
        .filter(prompt=prompt, version=version, state__in=states)
        .order_by("-created_at", "-id")
        .first()
    )


@transaction.atomic
def review_create(*, name: str, version: int, user: Actor = None, note: str = "") -> PromptReview:
    """A draft review of `version` (submit it with `review_submit`)."""
    prompt = prompt_for_write(name=name, user=user, action="request a review of")
    if not version_exists(prompt=prompt, version=version):
        raise not_found(f"Prompt '{name}' has no version {version}.", name=name, version=version)
    return PromptReview.objects.create(prompt=prompt, version=version, requested_by=acting_user(user), note=note)


@transaction.atomic
def review_submit(*, name: str, version: int, user: Actor = None, note: str = "") -> PromptReview:
    """draft → in_review (creating the review if there is no draft). Idempotent while in review."""
    prompt = prompt_for_write(name=name, user=user, action="request a review of")
    if not version_exists(prompt=prompt, version=version):
        raise not_found(f"Prompt '{name}' has no version {version}.", name=name, version=version)
    existing = _review_for(prompt, version, (PromptReview.State.IN_REVIEW, PromptReview.State.APPROVED))
    if existing is not None:
        return existing
    review = _review_for(prompt, version, (PromptReview.State.DRAFT,))
    if review is None:
        review = PromptReview(prompt=prompt, version=version, requested_by=acting_user(user))
    review.state = PromptReview.State.IN_REVIEW
    if note:
        review.note = note
    review.save()
    return review


def _decide(*, name: str, version: int, user: Actor, note: str, state: str) -> PromptReview:
    if not _may_review(user):
        raise PlatformError(
            "Approving or rejecting a review needs the permission 'prompts.review_prompt'.", code="POLICY_DENIED"
        )
    prompt = prompt_by_name(name=name, user=user)  # a reviewer needs to read the prompt, not to own it
    review = _review_for(prompt, version, (PromptReview.State.IN_REVIEW,))
    if review is None:
        raise PlatformError(
            f"Version {version} of '{name}' has no review in review; submit it first.",
            code="CONFLICT",
            field="version",
            details={"version": version},
        )
    reviewer = acting_user(user)
    if state == PromptReview.State.APPROVED and reviewer is not None and review.requested_by_id == reviewer.pk:
        # Four eyes: the person who asked for the review cannot be the one who approves it.
        raise PlatformError(
            "A review must be approved by someone other than the person who submitted it.",
            code="POLICY_DENIED",
            field="version",
        )
    review.state = state
    review.reviewed_by = reviewer
    review.decision_note = note
    review.decided_at = timezone.now()
    review.save()
    return review


@transaction.atomic
def review_approve(*, name: str, version: int, user: Actor = None, note: str = "") -> PromptReview:
    """in_review → approved (needs `prompts.review_prompt`)."""
    return _decide(name=name, version=version, user=user, note=note, state=PromptReview.State.APPROVED)


@transaction.atomic
def review_reject(*, name: str, version: int, user: Actor = None, note: str = "") -> PromptReview:
    """in_review → rejected (needs `prompts.review_prompt`)."""
    return _decide(name=name, version=version, user=user, note=note, state=PromptReview.State.REJECTED)
