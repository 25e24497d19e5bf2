from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet
from django_otp import user_has_device

from agent_platform.accounts.models import ApiKey, Team
from agent_platform.accounts.services import hash_key
from agent_platform.accounts.types import Actor


def api_key_by_raw(*, raw_key: str) -> ApiKey | None:
    return ApiKey.objects.select_related("user").filter(key_hash=hash_key(raw_key)).first()


def api_keys_of_user(*, user) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(user=user)


def user_needs_otp(*, user) -> bool:
    """Whether every way in must check a one-time password for this user: always when the user has a confirmed
    device; for staff also when ADMIN_REQUIRE_OTP (production) is on, enrolled or not."""
    if user is None or not user.is_authenticated:
        return False
    if settings.ADMIN_REQUIRE_OTP and user.is_staff:
        return True
    return user_has_device(user, confirmed=True)


def team_usable_by(*, team: Team | None, user: Actor) -> bool:
    """Whether `user` may put something (an agent, a prompt) in `team`, creating it there or moving it there:
    the team's members and staff (None, the platform itself, may)."""
    if team is None or user is None:
        return True
    if not user.is_authenticated:
        return False
    return bool(user.is_staff) or team.members.filter(pk=user.pk).exists()


def team_require_usable(*, team: Team | None, user: Actor) -> None:
    """403 POLICY_DENIED on the `team` field unless `team_usable_by`: the one rule for every app's writes."""
    from agent_platform.api.errors import PlatformError  # DRF's settings import this module via authentication

    if not team_usable_by(team=team, user=user):
        raise PlatformError("team: you are not a member of this team.", code="POLICY_DENIED", field="team")


def team_get(*, team_id: int) -> Team:
    """The team a request names, or 422 VALIDATION_ERROR on the `team` field (membership is checked on write)."""
    from agent_platform.api.errors import PlatformError

    team = Team.objects.filter(pk=team_id).first()
    if team is None:
        raise PlatformError(f"team: no team {team_id}.", code="VALIDATION_ERROR", field="team")
    return team
