"""The trace list's filters and the trace status field, validated once for the API and the pages alike."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from traces.models import Trace


@extend_schema_field({"type": "string", "pattern": "^(ok|error|cancelled)$", "description": "ok, error or cancelled"})
class TraceStatusField(serializers.ChoiceField):
    def __init__(self, **kwargs):
        super().__init__(choices=Trace.Status.values, **kwargs)


class TraceFilterSerializer(serializers.Serializer):
    user = serializers.IntegerField(required=False, help_text="User id (staff only; others always see their own).")
    agent = serializers.CharField(required=False, help_text="Agent id or slug.")
    model = serializers.CharField(required=False)
    status = TraceStatusField(required=False)
    since = serializers.DateTimeField(required=False, help_text="Traces started at or after (ISO 8601).")
    until = serializers.DateTimeField(required=False, help_text="Traces started before (ISO 8601).")
    name = serializers.CharField(required=False)

    def validate(self, attrs):
        if attrs.get("since") and attrs.get("until") and attrs["until"] <= attrs["since"]:
            raise serializers.ValidationError({"until": "until must be after since."})
        return attrs
