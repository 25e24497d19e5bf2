"""Scores: human scores of results, and the evaluators that score automatically."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from agent_platform.api.errors import PlatformError
from agent_platform.api.pagination import PagePagination
from experiments import selectors, services
from experiments.api.serializers import EvaluatorInfoSerializer, HumanScoreSerializer
from experiments.evaluators import REGISTRY


class ResultScoresView(APIView):
    @extend_schema(request=HumanScoreSerializer, responses={201: HumanScoreSerializer})
    def post(self, request, experiment_id: int, result_id: int):
        result = selectors.result_get(user=request.user, experiment_id=experiment_id, result_id=result_id)
        serializer = HumanScoreSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        score = services.human_score_add(
            result=result,
            trace_id=data.get("trace_id") or result.trace_id,
            span_id=data.get("span_id") or result.span_id,
            kind=data["kind"],
            value=data.get("value"),
            label=data.get("label", ""),
            comment=data.get("comment", ""),
            user=request.user,
        )
        return Response(HumanScoreSerializer(score).data, status=status.HTTP_201_CREATED)


class HumanScoreListView(APIView):
    pagination_class = PagePagination

    @extend_schema(
        responses=HumanScoreSerializer(many=True),
        parameters=[OpenApiParameter("trace_id", str, description="Scores of this trace.")],
    )
    def get(self, request):
        qs = selectors.human_scores_visible_to(request.user)
        if request.query_params.get("trace_id"):
            qs = qs.filter(trace_id=request.query_params["trace_id"].lower())
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(HumanScoreSerializer(page, many=True).data)

    @extend_schema(request=HumanScoreSerializer, responses={201: HumanScoreSerializer})
    def post(self, request):
        serializer = HumanScoreSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if not data.get("trace_id"):
            raise PlatformError("trace_id is required", code="VALIDATION_ERROR", field="trace_id")
        score = services.human_score_add(
            trace_id=data["trace_id"],
            span_id=data.get("span_id", ""),
            kind=data["kind"],
            value=data.get("value"),
            label=data.get("label", ""),
            comment=data.get("comment", ""),
            user=request.user,
        )
        return Response(HumanScoreSerializer(score).data, status=status.HTTP_201_CREATED)


class EvaluatorListView(APIView):
    @extend_schema(responses=EvaluatorInfoSerializer(many=True))
    def get(self, request):
        body = [
            {
                "type": name,
                "description": cls.description,
                "options": {k: (None if repr(v) == "REQUIRED" else v) for k, v in cls.options.items()},
                "uses_llm": cls.uses_llm,
            }
            for name, cls in sorted(REGISTRY.items())
        ]
        return Response(body)
