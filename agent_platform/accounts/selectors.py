from __future__ import annotations

from django.db.models import QuerySet

from agent_platform.accounts.models import ApiKey
from agent_platform.accounts.services import hash_key


def api_key_by_raw(*, raw_key: str) -> ApiKey | None:
    return ApiKey.objects.select_related("user").filter(key_hash=hash_key(raw_key)).first()


def api_keys_of_user(*, user) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(user=user)


def team_ids_of_user(*, user) -> list[int]:
    return list(user.teams.values_list("id", flat=True)) if user and user.is_authenticated else []
