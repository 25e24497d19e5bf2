"""REST API of the experiments app: datasets (items, import, export, from traces, versions), experiments (start,
cancel, results, report, CSV), evaluators, human scores. Views validate input and call services/selectors."""

from __future__ import annotations

from django.db.models import ProtectedError
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from agent_platform.api.errors import PlatformError
from agent_platform.api.pagination import PagePagination
from experiments import selectors, services
from experiments.evaluators import REGISTRY
from experiments.models import HumanScoreKind, ResultStatus
from experiments.report import build_report, report_csv

# --- serializers -------------------------------------------------------------------------------------------------


class DatasetItemSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    position = serializers.IntegerField(read_only=True)
    input = serializers.JSONField(required=False, help_text="Template variables (object).")
    messages = serializers.JSONField(required=False, allow_null=True, help_text="OpenAI-format chat messages.")
    expected = serializers.JSONField(required=False, allow_null=True)
    metadata = serializers.JSONField(required=False)
    source_trace_id = serializers.CharField(read_only=True)
    source_span_id = serializers.CharField(read_only=True)


class DatasetSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=100)
    version = serializers.IntegerField(read_only=True)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    item_count = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


class DatasetCreateSerializer(DatasetSerializer):
    items = serializers.ListField(
        child=serializers.JSONField(), required=False, help_text="Items to add: {input, messages, expected, metadata}."
    )


class ItemsAddSerializer(serializers.Serializer):
    items = serializers.ListField(child=serializers.JSONField(), allow_empty=False)


class ImportSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=["csv", "jsonl"], required=False)
    file = serializers.FileField(required=False, help_text="The CSV or JSONL file (multipart).")
    content = serializers.CharField(required=False, trim_whitespace=False, help_text="Or the file's text (JSON body).")

    def validate(self, attrs):
        if not attrs.get("file") and not attrs.get("content"):
            raise serializers.ValidationError({"file": "Upload a file or give its content."})
        if not attrs.get("format"):
            name = getattr(attrs.get("file"), "name", "") or ""
            suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
            if suffix not in ("csv", "jsonl"):
                raise serializers.ValidationError({"format": "Give format (csv or jsonl)."})
            attrs["format"] = suffix
        return attrs


class ImportResultSerializer(serializers.Serializer):
    imported = serializers.IntegerField()
    item_count = serializers.IntegerField()


class FromTracesSerializer(serializers.Serializer):
    spans = serializers.ListField(
        child=serializers.JSONField(),
        allow_empty=False,
        help_text='Each {"trace_id", "span_id"} of a recorded span, or {"input", "output"} given directly.',
    )


class VersionCreateSerializer(serializers.Serializer):
    description = serializers.CharField(required=False, allow_blank=True)


class VariantSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=64)
    prompt_name = serializers.CharField(required=False, allow_blank=True, default="")
    prompt_version = serializers.IntegerField(required=False, allow_null=True, min_value=1, default=None)
    prompt_label = serializers.CharField(required=False, allow_blank=True, default="")
    endpoint = serializers.CharField(max_length=200)
    params = serializers.DictField(required=False, default=dict)


class ProgressSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    pending = serializers.IntegerField()
    running = serializers.IntegerField()
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()
    finished = serializers.IntegerField()
    percent = serializers.FloatField()


class ExperimentSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    dataset = serializers.IntegerField(source="dataset_id", help_text="Dataset id (a specific version).")
    status = serializers.CharField(read_only=True)
    concurrency = serializers.IntegerField(required=False, default=8, min_value=1, max_value=256)
    evaluators = serializers.ListField(child=serializers.DictField(), required=False, default=list)
    variants = VariantSerializer(many=True)
    baseline = serializers.CharField(required=False, allow_null=True, default=None, help_text="Variant name.")
    error_code = serializers.CharField(read_only=True)
    error_message = serializers.CharField(read_only=True)
    started_at = serializers.DateTimeField(read_only=True)
    finished_at = serializers.DateTimeField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


class ExperimentDetailSerializer(ExperimentSerializer):
    progress = ProgressSerializer(read_only=True)


class ResultSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item_id = serializers.IntegerField()
    item_position = serializers.IntegerField(source="item.position")
    variant = serializers.CharField(source="variant.name")
    status = serializers.CharField()
    output = serializers.CharField()
    latency_ms = serializers.FloatField(allow_null=True)
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=20, decimal_places=10, allow_null=True)
    error_code = serializers.CharField()
    error_message = serializers.CharField()
    scores = serializers.JSONField()
    prompt_version = serializers.IntegerField(allow_null=True)
    trace_id = serializers.CharField()
    finished_at = serializers.DateTimeField(allow_null=True)


class HumanScoreSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    result = serializers.IntegerField(source="result_id", read_only=True, allow_null=True)
    trace_id = serializers.CharField(required=False, allow_blank=True, default="", max_length=32)
    span_id = serializers.CharField(required=False, allow_blank=True, default="", max_length=16)
    kind = serializers.ChoiceField(choices=HumanScoreKind.choices)
    value = serializers.FloatField(required=False, allow_null=True, default=None)
    label = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    user = serializers.IntegerField(source="user_id", read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)


class EvaluatorInfoSerializer(serializers.Serializer):
    type = serializers.CharField()
    description = serializers.CharField()
    options = serializers.DictField()
    uses_llm = serializers.BooleanField()


def _experiment_body(experiment, *, detail: bool = False) -> dict:
    variants = list(experiment.variants.all())
    data = {
        "id": experiment.id,
        "name": experiment.name,
        "description": experiment.description,
        "dataset": experiment.dataset_id,
        "status": experiment.status,
        "concurrency": experiment.concurrency,
        "evaluators": experiment.evaluators,
        "variants": VariantSerializer(variants, many=True).data,
        "baseline": experiment.baseline.name if experiment.baseline_id else None,
        "error_code": experiment.error_code,
        "error_message": experiment.error_message,
        "started_at": experiment.started_at,
        "finished_at": experiment.finished_at,
        "created_at": experiment.created_at,
    }
    if detail:
        data["progress"] = selectors.experiment_progress(experiment=experiment)
    return data


def _dataset_body(dataset) -> dict:
    body = DatasetSerializer(dataset).data
    body["item_count"] = getattr(dataset, "item_count", None)
    if body["item_count"] is None:
        body["item_count"] = dataset.items.count()
    return body


# --- datasets ------------------------------------------------------------------------------------------------------


class DatasetListView(APIView):
    pagination_class = PagePagination

    @extend_schema(
        responses=DatasetSerializer(many=True),
        parameters=[OpenApiParameter("name", str, description="Only datasets with this name (all versions).")],
    )
    def get(self, request):
        qs = selectors.datasets_visible_to(request.user)
        if request.query_params.get("name"):
            qs = qs.filter(name=request.query_params["name"])
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response([_dataset_body(d) for d in page])

    @extend_schema(request=DatasetCreateSerializer, responses={201: DatasetSerializer})
    def post(self, request):
        serializer = DatasetCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        dataset = services.dataset_create(
            name=data["name"], description=data.get("description", ""), owner=request.user, items=data.get("items")
        )
        return Response(_dataset_body(dataset), status=status.HTTP_201_CREATED)


class DatasetDetailView(APIView):
    @extend_schema(responses=DatasetSerializer)
    def get(self, request, dataset_id: int):
        return Response(_dataset_body(selectors.dataset_get(user=request.user, dataset_id=dataset_id)))

    @extend_schema(responses={204: None})
    def delete(self, request, dataset_id: int):
        dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
        try:
            services.dataset_delete(dataset=dataset)
        except ProtectedError:
            raise PlatformError(
                "The dataset is used by an experiment; delete the experiment first.", code="CONFLICT", field="dataset"
            ) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class DatasetItemsView(APIView):
    pagination_class = PagePagination

    @extend_schema(responses=DatasetItemSerializer(many=True))
    def get(self, request, dataset_id: int):
        dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(dataset.items.order_by("position"), request, view=self)
        return paginator.get_paginated_response(DatasetItemSerializer(page, many=True).data)

    @extend_schema(request=ItemsAddSerializer, responses={201: DatasetItemSerializer(many=True)})
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
        serializer = ItemsAddSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        items = services.dataset_items_add(dataset=dataset, items=serializer.validated_data["items"])
        return Response(DatasetItemSerializer(items, many=True).data, status=status.HTTP_201_CREATED)


class DatasetImportView(APIView):
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(
        request={"multipart/form-data": ImportSerializer, "application/json": ImportSerializer},
        responses={201: ImportResultSerializer},
        description="Import a CSV or JSONL file. Atomic: any invalid row rejects the whole file with "
        "DATASET_INVALID and details.rows = [{row, field, message}] for every bad row.",
    )
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
        serializer = ImportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        content = data["file"].read() if data.get("file") else data["content"]
        imported = services.dataset_import(dataset=dataset, fmt=data["format"], content=content)
        return Response({"imported": imported, "item_count": dataset.items.count()}, status=status.HTTP_201_CREATED)


class DatasetExportView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("file_format", str, enum=["jsonl", "csv"], description="Default jsonl.")],
        responses={(200, "application/x-ndjson"): OpenApiTypes.STR, (200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request, dataset_id: int):
        dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
        fmt = request.query_params.get("file_format", "jsonl")
        body = selectors.dataset_export(dataset=dataset, fmt=fmt)
        content_type = "text/csv" if fmt == "csv" else "application/x-ndjson"
        response = HttpResponse(body, content_type=f"{content_type}; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{dataset.name}-v{dataset.version}.{fmt}"'
        return response


class DatasetFromTracesView(APIView):
    @extend_schema(request=FromTracesSerializer, responses={201: DatasetItemSerializer(many=True)})
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
        serializer = FromTracesSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        items = services.dataset_items_from_spans(
            dataset=dataset, spans=serializer.validated_data["spans"], user=request.user
        )
        return Response(DatasetItemSerializer(items, many=True).data, status=status.HTTP_201_CREATED)


class DatasetVersionView(APIView):
    @extend_schema(request=VersionCreateSerializer, responses={201: DatasetSerializer})
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
        serializer = VersionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        copy = services.dataset_new_version(dataset=dataset, description=serializer.validated_data.get("description"))
        return Response(_dataset_body(copy), status=status.HTTP_201_CREATED)


# --- experiments ---------------------------------------------------------------------------------------------------


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
        return paginator.get_paginated_response([_experiment_body(e) for e in page])

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
        return Response(_experiment_body(experiment, detail=True), status=status.HTTP_201_CREATED)


class ExperimentDetailView(APIView):
    @extend_schema(responses=ExperimentDetailSerializer)
    def get(self, request, experiment_id: int):
        experiment = selectors.experiment_get(user=request.user, experiment_id=experiment_id)
        return Response(_experiment_body(experiment, detail=True))


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
        return Response(_experiment_body(experiment, detail=True), status=status.HTTP_202_ACCEPTED)


class ExperimentCancelView(APIView):
    @extend_schema(request=None, responses=ExperimentDetailSerializer)
    def post(self, request, experiment_id: int):
        experiment = selectors.experiment_get(user=request.user, experiment_id=experiment_id)
        experiment = services.experiment_cancel(experiment=experiment)
        return Response(_experiment_body(experiment, detail=True))


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
