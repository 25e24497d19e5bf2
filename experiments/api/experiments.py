"""Experiments: list, create, read, start, cancel, results, report and its CSV."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from agent_platform.api.errors import PlatformError
from agent_platform.api.pagination import PagePagination
from experiments import selectors, services
from experiments.api.serializers import (
    ExperimentDetailSerializer,
    ExperimentSerializer,
    ResultSerializer,
    experiment_body,
)
from experiments.models import ResultStatus
from experiments.report import build_report, report_csv


class ExperimentListView(APIView):
    pagination_class = PagePagination

    @extend_schema(
        responses=ExperimentSerializer(many=True),
        parameters=[OpenApiParameter("status", str, description="Only experiments in this status.")],
    )
    def get(self, request):
        qs = selectors.experiments_visible_to(request.user).prefetch_related("variants")
        if request.query_params.get("status"):
            qs = qs.filter(status=request.query_params["status"])
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response([experiment_body(e) for e in page])

    @extend_schema(request=ExperimentSerializer, responses={201: ExperimentDetailSerializer})
    def post(self, request):
        serializer = ExperimentSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            dataset = selectors.dataset_get(user=request.user, dataset_id=data["dataset_id"])
        except PlatformError as exc:
            exc.details["field"] = "dataset"
            raise
        experiment = services.experiment_create(
            name=data["name"],
            description=data.get("description", ""),
            dataset=dataset,
            variants=[dict(v) for v in data["variants"]],
            evaluators=data.get("evaluators") or [],
            concurrency=data.get("concurrency", 8),
            baseline=data.get("baseline"),
            owner=request.user,
        )
        return Response(experiment_body(experiment, detail=True), status=status.HTTP_201_CREATED)


class ExperimentDetailView(APIView):
    @extend_schema(responses=ExperimentDetailSerializer)
    def get(self, request, experiment_id: int):
        experiment = selectors.experiment_get(user=request.user, experiment_id=experiment_id)
        return Response(experiment_body(experiment, detail=True))


class ExperimentStartView(APIView):
    @extend_schema(
        request=None,
        responses={202: ExperimentDetailSerializer},
        description="Queue the experiment (or resume it after a dead worker). 409 EXPERIMENT_ALREADY_RUNNING if it "
        "is running. On the embedded default the run happens in-process before this returns.",
    )
    def post(self, request, experiment_id: int):
        experiment = selectors.experiment_get(user=request.user, experiment_id=experiment_id)
        services.experiment_start(experiment=experiment)
        experiment = selectors.experiment_get(user=request.user, experiment_id=experiment_id)
        return Response(experiment_body(experiment, detail=True), status=status.HTTP_202_ACCEPTED)


class ExperimentCancelView(APIView):
    @extend_schema(request=None, responses=ExperimentDetailSerializer)
    def post(self, request, experiment_id: int):
        experiment = selectors.experiment_get(user=request.user, experiment_id=experiment_id)
        experiment = services.experiment_cancel(experiment=experiment)
        return Response(experiment_body(experiment, detail=True))


class ExperimentResultsView(APIView):
    pagination_class = PagePagination

    @extend_schema(
        responses=ResultSerializer(many=True),
        parameters=[
            OpenApiParameter("variant", str, description="Only this variant's results."),
            OpenApiParameter("status", str, enum=list(ResultStatus.values)),
        ],
    )
    def get(self, request, experiment_id: int):
        experiment = selectors.experiment_get(user=request.user, experiment_id=experiment_id)
        qs = selectors.results_of(
            experiment=experiment,
            variant=request.query_params.get("variant"),
            status=request.query_params.get("status"),
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(ResultSerializer(page, many=True).data)


class ExperimentReportView(APIView):
    @extend_schema(
        responses={200: OpenApiTypes.OBJECT},
        parameters=[OpenApiParameter("items", int, description="Side-by-side items to include (default 100).")],
        description="Per variant: mean score per evaluator with bootstrap 95% CI, pass rate, errors, cost, latency "
        "p50/p95, tokens, human scores; against the baseline: paired permutation and exact McNemar tests with a "
        "plain-words verdict; per-item side-by-side outputs.",
    )
    def get(self, request, experiment_id: int):
        experiment = selectors.experiment_get(user=request.user, experiment_id=experiment_id)
        raw = request.query_params.get("items", "100")
        if not raw.isdigit() or int(raw) > 10_000:
            raise PlatformError("items must be a number from 0 to 10000", code="VALIDATION_ERROR", field="items")
        return Response(build_report(experiment=experiment, item_limit=int(raw)))


class ExperimentReportCsvView(APIView):
    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request, experiment_id: int):
        experiment = selectors.experiment_get(user=request.user, experiment_id=experiment_id)
        response = HttpResponse(report_csv(experiment=experiment), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="experiment-{experiment.id}.csv"'
        return response
