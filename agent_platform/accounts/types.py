"""Who acts on the platform, as a type: a signed-in user, an anonymous visitor, or None for the platform itself."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

Actor: TypeAlias = "User | AnonymousUser | None"
