"""Writes for users' API keys and teams."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

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
def api_key_create(
    *, user: AbstractBaseUser, name: str, expires_at: datetime | None = None, team: Team | None = None
) -> IssuedKey:
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
def team_create(*, name: str, members: list[AbstractBaseUser] | None = None) -> Team:
    team = Team.objects.create(name=name)
    if members:
        team.members.set(members)
    return team
