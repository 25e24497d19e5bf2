"""The usage report's query parameters, validated once for the API and the dashboard pages alike."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from agent_platform.accounts.types import Actor
from costs import selectors


class UsageQuerySerializer(serializers.Serializer):
    start = serializers.DateTimeField(required=False, help_text="Inclusive (ISO 8601). Default: 30 days ago.")
    end = serializers.DateTimeField(required=False, help_text="Exclusive (ISO 8601). Default: now.")
    group_by = serializers.ChoiceField(choices=list(selectors.GROUP_FIELDS), default="model")
    bucket = serializers.ChoiceField(choices=["day", "hour"], required=False)
    user = serializers.IntegerField(required=False, help_text="Only this user's usage (staff only).")


def usage_report_for(request_user: Actor, params: Mapping[str, Any]) -> selectors.UsageReport:
    """The usage report `params` ask for; a user who is not staff sees only their own usage."""
    query = UsageQuerySerializer(data=params)
    query.is_valid(raise_exception=True)
    data = query.validated_data
    end = data.get("end") or timezone.now()
    start = data.get("start") or (end - timedelta(days=30))
    user_id = data.get("user") if getattr(request_user, "is_staff", False) else getattr(request_user, "pk", None)
    return selectors.get_usage_report(
        start=start, end=end, group_by=data["group_by"], bucket=data.get("bucket"), user_id=user_id
    )
