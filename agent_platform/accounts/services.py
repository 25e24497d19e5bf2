"""Writes for users' API keys and teams."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django_otp import devices_for_user
from django_otp import verify_token as otp_verify_on_device
from django_otp.models import Device
from django_otp.plugins.otp_totp.models import TOTPDevice

from agent_platform.accounts.models import ApiKey, Team

KEY_NAMESPACE = "ap"
LAST_USED_RESOLUTION = timedelta(seconds=60)


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    raw_key: str  # shown to the user once, never stored


@transaction.atomic
def api_key_create(*, user: User, name: str, expires_at: datetime | None = None, team: Team | None = None) -> IssuedKey:
    prefix = secrets.token_hex(4)
    raw_key = f"{KEY_NAMESPACE}_{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(
        user=user, team=team, name=name, prefix=prefix, key_hash=hash_key(raw_key), expires_at=expires_at
    )
    return IssuedKey(api_key=api_key, raw_key=raw_key)


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_touch(*, api_key: ApiKey) -> None:
    """Record use, at most once a minute per key, so authentication stays off the write path."""
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now


@transaction.atomic
def team_create(*, name: str, members: list[User] | None = None) -> Team:
    team = Team.objects.create(name=name)
    if members:
        team.members.set(members)
    return team


@transaction.atomic
def otp_verify(*, user: User, token: str, device_id: str | None = None) -> Device | None:
    """The user's confirmed device that accepts `token` (consuming it: a TOTP step or a backup code is good once),
    or None. Without `device_id`, a token of digits is tried on the TOTP devices and any other on the backup-code
    devices, so a typo does not count as a failed attempt against every device (django-otp throttles per device)."""
    token = token.strip()
    if not token:
        return None
    if device_id:
        return otp_verify_on_device(user, device_id, token)
    looks_like_totp = token.isdigit()
    for device in devices_for_user(user, confirmed=True):
        if isinstance(device, TOTPDevice) != looks_like_totp:
            continue
        verified = otp_verify_on_device(user, device.persistent_id, token)
        if verified is not None:
            return verified
    return None
