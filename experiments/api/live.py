"""Prompt versions compared on live traffic (an A/B split of a label)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView


class LiveReportQuerySerializer(serializers.Serializer):
    prompt = serializers.CharField(max_length=200)
    days = serializers.IntegerField(required=False, default=7, min_value=1, max_value=90)
    baseline = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
    evaluators = serializers.ListField(child=serializers.DictField(), required=False, default=list)
    sample = serializers.IntegerField(required=False, default=100, min_value=1, max_value=500)


class LiveReportView(APIView):
    """Prompt versions compared on live traffic (an A/B split of a label), from the recorded LLM spans."""

    @extend_schema(
        parameters=[
            OpenApiParameter("prompt", str, required=True, description="Prompt name."),
            OpenApiParameter("days", int, description="Window in days (default 7)."),
            OpenApiParameter("baseline", int, description="Baseline version (default: the lowest seen)."),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        serializer = LiveReportQuerySerializer(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        return Response(self._report(request, serializer.validated_data))

    @extend_schema(
        request=LiveReportQuerySerializer,
        responses={200: OpenApiTypes.OBJECT},
        description="As GET, plus evaluators run on a sample of each version's live outputs.",
    )
    def post(self, request):
        serializer = LiveReportQuerySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(self._report(request, serializer.validated_data))

    @staticmethod
    def _report(request, data):
        from experiments.live import live_report

        return live_report(
            prompt_name=data["prompt"],
            user=request.user,
            days=data["days"],
            baseline_version=data.get("baseline"),
            evaluators=data.get("evaluators") or [],
            sample=data["sample"],
        )
