from __future__ import annotations

from django.conf import settings
from django.db.models import QuerySet
from django_otp import user_has_device

from agent_platform.accounts.models import ApiKey
from agent_platform.accounts.services import hash_key


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
