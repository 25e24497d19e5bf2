"""Labels: moves recorded with who/when, protection, approval, `latest`, default fetch, A/B split."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from agent_platform.api.errors import PlatformError
from agent_platform.observability.context import bind_caller
from prompts import selectors, services
from prompts.models import LabelMove, PromptReview

pytestmark = pytest.mark.django_db


def grant(user, codename):
    user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="prompts"))
    return type(user).objects.get(pk=user.pk)  # fresh permission cache


@pytest.fixture
def two_versions(user):
    # `user` owns the prompt: label moves need the right to change it (prompts/tests/test_access.py)
    services.prompt_create(name="p", text="one", user=user)
    services.prompt_update(name="p", text="two")


def test_without_production_the_default_fetch_serves_latest(two_versions):
    got = selectors.get_prompt(name="p")
    assert got.version == 2 and got.label is None


def test_default_fetch_serves_production_and_latest_follows_newest(two_versions, admin_user):
    services.label_move(name="p", label="production", version=1, user=admin_user)
    assert selectors.get_prompt(name="p").version == 1
    assert selectors.get_prompt(name="p").label == "production"
    assert selectors.get_prompt(name="p", label="latest").version == 2
    services.prompt_update(name="p", text="three")
    assert selectors.get_prompt(name="p", label="latest").version == 3
    assert selectors.get_prompt(name="p").version == 1
    labels = {label.name: label for label in selectors.label_list(name="p")}
    assert labels["latest"].version == 3 and labels["latest"].computed
    assert labels["production"].version == 1 and labels["production"].protected


def test_latest_cannot_be_moved_and_unknown_labels_or_versions_are_404(two_versions):
    with pytest.raises(PlatformError) as err:
        services.label_move(name="p", label="latest", version=1)
    assert err.value.code == "VALIDATION_ERROR"
    with pytest.raises(PlatformError) as err:
        services.label_move(name="p", label="staging", version=7)
    assert err.value.code == "PROMPT_NOT_FOUND"
    with pytest.raises(PlatformError) as err:
        selectors.get_prompt(name="p", label="canary")
    assert err.value.code == "PROMPT_NOT_FOUND"
    with pytest.raises(PlatformError) as err:
        selectors.get_prompt(name="nope")
    assert err.value.code == "PROMPT_NOT_FOUND"


def test_label_moves_are_recorded_with_who_and_when(two_versions, user):
    services.label_move(name="p", label="staging", version=1, user=user, note="try")
    services.label_move(name="p", label="staging", version=2, user=user)
    services.label_move(name="p", label="staging", version=2, user=user)  # no change: not recorded
    moves = list(LabelMove.objects.filter(label="staging").order_by("moved_at", "id"))
    assert [(m.from_version, m.to_version) for m in moves] == [(None, 1), (1, 2)]
    assert all(m.moved_by == user and m.moved_at is not None for m in moves)
    assert moves[0].note == "try"


def test_protected_label_needs_permission(two_versions, user):
    services.label_move(name="p", label="production", version=1)  # the platform itself (user=None)
    with pytest.raises(PlatformError) as err:
        services.label_move(name="p", label="production", version=2, user=user)
    assert err.value.code == "LABEL_PROTECTED" and err.value.status == 403
    assert selectors.get_prompt(name="p").version == 1
    user = grant(user, "move_protected_label")
    services.label_move(name="p", label="production", version=2, user=user)
    assert selectors.get_prompt(name="p").version == 2


def test_protecting_or_unprotecting_needs_permission(two_versions, user):
    services.label_move(name="p", label="staging", version=1, user=user)
    with pytest.raises(PlatformError) as err:
        services.label_move(name="p", label="staging", version=1, user=user, protected=True)
    assert err.value.code == "LABEL_PROTECTED"
    services.label_move(name="p", label="production", version=1)
    with pytest.raises(PlatformError) as err:
        services.label_move(name="p", label="production", version=1, user=user, protected=False)
    assert err.value.code == "LABEL_PROTECTED"
    with pytest.raises(PlatformError) as err:
        services.label_delete(name="p", label="production", user=user)
    assert err.value.code == "LABEL_PROTECTED"


def test_approval_required_for_protected_labels(user, other_user):
    services.prompt_create(name="p", text="one", requires_approval=True, user=user)
    services.prompt_update(name="p", text="two")
    mover = grant(user, "move_protected_label")
    reviewer = grant(other_user, "review_prompt")

    services.label_move(name="p", label="staging", version=2, user=mover)  # unprotected: no approval needed
    with pytest.raises(PlatformError) as err:
        services.label_move(name="p", label="production", version=2, user=mover)
    assert err.value.code == "APPROVAL_REQUIRED" and err.value.status == 409

    review = services.review_create(name="p", version=2, user=mover, note="please")
    assert review.state == PromptReview.State.DRAFT
    with pytest.raises(PlatformError) as err:  # a draft is not in review yet
        services.review_approve(name="p", version=2, user=reviewer)
    assert err.value.code == "CONFLICT"
    assert services.review_submit(name="p", version=2, user=mover).pk == review.pk
    with pytest.raises(PlatformError) as err:  # the mover lacks review permission
        services.review_approve(name="p", version=2, user=mover)
    assert err.value.code == "POLICY_DENIED"
    with pytest.raises(PlatformError) as err:  # still not approved
        services.label_move(name="p", label="production", version=2, user=mover)
    assert err.value.code == "APPROVAL_REQUIRED"
    approved = services.review_approve(name="p", version=2, user=reviewer, note="lgtm")
    assert approved.state == "approved" and approved.reviewed_by == reviewer and approved.decided_at
    services.label_move(name="p", label="production", version=2, user=mover)
    assert selectors.get_prompt(name="p").version == 2

    # approval is per version: v1 was never approved
    with pytest.raises(PlatformError) as err:
        services.label_move(name="p", label="production", version=1, user=mover)
    assert err.value.code == "APPROVAL_REQUIRED"


def test_submitter_cannot_approve_their_own_review(user):
    services.prompt_create(name="p", text="one", requires_approval=True, user=user)
    both = grant(grant(user, "move_protected_label"), "review_prompt")
    services.review_submit(name="p", version=1, user=both)
    with pytest.raises(PlatformError) as err:
        services.review_approve(name="p", version=1, user=both)
    assert err.value.code == "POLICY_DENIED" and "someone other" in err.value.message
    with pytest.raises(PlatformError) as err:
        services.label_move(name="p", label="production", version=1, user=both)
    assert err.value.code == "APPROVAL_REQUIRED"


def test_rejected_review_does_not_allow_the_move(user):
    services.prompt_create(name="p", text="one", requires_approval=True, user=user)
    admin = grant(grant(user, "move_protected_label"), "review_prompt")
    services.review_submit(name="p", version=1, user=admin)
    assert services.review_reject(name="p", version=1, user=admin, note="no").state == "rejected"
    with pytest.raises(PlatformError) as err:
        services.label_move(name="p", label="production", version=1, user=admin)
    assert err.value.code == "APPROVAL_REQUIRED"


def test_split_assignment_is_sticky_and_weighted(two_versions):
    services.label_move(name="p", label="staging", version=1, split={"1": 50, "2": 50})
    first = {
        key: selectors.get_prompt(name="p", label="staging", stickiness_key=key).version for key in map(str, range(400))
    }
    again = {
        key: selectors.get_prompt(name="p", label="staging", stickiness_key=key).version for key in map(str, range(400))
    }
    assert first == again
    share = sum(1 for v in first.values() if v == 2) / len(first)
    assert 0.4 < share < 0.6
    picked = selectors.get_prompt(name="p", label="staging", stickiness_key="abc")
    assert picked.ab_variant == f"v{picked.version}" and picked.label == "staging"

    with bind_caller(conversation_id="conv-1"):
        via_caller = selectors.get_prompt(name="p", label="staging")
    assert via_caller.version == selectors.get_prompt(name="p", label="staging", stickiness_key="conv-1").version

    services.label_move(name="p", label="staging", version=1, split={"1": 0, "2": 100})
    assert {selectors.get_prompt(name="p", label="staging", stickiness_key=str(k)).version for k in range(50)} == {2}


def test_split_validation(two_versions):
    for bad, code in (
        ({"x": 1}, "VALIDATION_ERROR"),
        ({"1": -1}, "VALIDATION_ERROR"),
        ({"1": 0}, "VALIDATION_ERROR"),
        ({"9": 1}, "PROMPT_NOT_FOUND"),
        ([1], "VALIDATION_ERROR"),
    ):
        with pytest.raises(PlatformError) as err:
            services.label_move(name="p", label="staging", version=1, split=bad)
        assert err.value.code == code


def test_split_on_approval_prompt_needs_every_variant_approved(user):
    services.prompt_create(name="p", text="one", requires_approval=True)
    services.prompt_update(name="p", text="two")
    services.review_submit(name="p", version=1)
    services.review_approve(name="p", version=1)
    services.label_move(name="p", label="production", version=1)
    with pytest.raises(PlatformError) as err:
        services.label_move(name="p", label="production", version=1, split={"1": 90, "2": 10})
    assert err.value.code == "APPROVAL_REQUIRED" and err.value.details["versions"] == [2]


def test_label_split_set_keeps_the_primary_version_and_is_recorded(two_versions):
    services.label_move(name="p", label="canary", version=1)
    services.label_split_set(name="p", label="canary", split={"1": 80, "2": 20}, note="start A/B")
    label = {x.name: x for x in selectors.label_list(name="p")}["canary"]
    assert label.version == 1 and label.split == {"1": 80, "2": 20}
    move = LabelMove.objects.filter(label="canary").order_by("-id").first()
    assert move.split == {"1": 80, "2": 20} and move.note == "start A/B"
    services.label_split_set(name="p", label="canary", split=None)
    assert selectors.get_prompt(name="p", label="canary", stickiness_key="x").ab_variant is None
    with pytest.raises(PlatformError) as err:
        services.label_split_set(name="p", label="nope", split={"1": 1})
    assert err.value.code == "PROMPT_NOT_FOUND"
