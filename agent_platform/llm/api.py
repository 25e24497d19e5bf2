"""`/api/v1/models/`: the model endpoints callers can use, with context window and known prices."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView, ListAPIView
from rest_framework.response import Response

from agent_platform.llm import selectors


class ModelInfoSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="Endpoint name callers use")
    model = serializers.CharField(help_text="litellm model string")
    provider = serializers.CharField()
    context_window = serializers.IntegerField(allow_null=True)
    max_output_tokens = serializers.IntegerField(allow_null=True)
    input_price_per_million = serializers.DecimalField(
        max_digits=20, decimal_places=6, allow_null=True, help_text="USD per million input tokens (litellm's map)"
    )
    output_price_per_million = serializers.DecimalField(
        max_digits=20, decimal_places=6, allow_null=True, help_text="USD per million output tokens (litellm's map)"
    )
    supports_tools = serializers.BooleanField()
    enabled = serializers.BooleanField()
    description = serializers.CharField(allow_blank=True)


def _bool(value: str | None, name: str) -> bool | None:
    if value in (None, ""):
        return None
    lowered = value.lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise serializers.ValidationError({name: ["Must be true or false."]})


class ModelListView(ListAPIView):
    serializer_class = ModelInfoSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return []  # the schema generator asks for a queryset: serving the schema must not query the database
        enabled = _bool(self.request.query_params.get("enabled"), "enabled")
        provider = self.request.query_params.get("provider") or None
        return [
            m
            for m in selectors.model_list()
            if (enabled is None or m.enabled == enabled) and (provider is None or m.provider == provider)
        ]

    @extend_schema(
        summary="List model endpoints",
        parameters=[
            OpenApiParameter("enabled", OpenApiTypes.BOOL, description="Only enabled (true) or disabled (false)"),
            OpenApiParameter("provider", OpenApiTypes.STR, description="litellm provider, e.g. openai"),
        ],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ModelDetailView(GenericAPIView):
    serializer_class = ModelInfoSerializer
    pagination_class = None

    @extend_schema(summary="One model endpoint (configured, or an implicit mock/<name>)")
    def get(self, request, name: str):
        return Response(self.get_serializer(selectors.model_get(name=name)).data)
