"""REST API of the traces app: trace list and detail (span tree), batch ingestion for outside applications."""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agent_platform.api.errors import PlatformError, ValidationFailed
from agent_platform.observability.hooks import SpanKind
from traces import selectors
from traces.models import Span, Trace
from traces.queries import TraceFilterSerializer, TraceStatusField

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
MAX_INGEST_ITEMS = 5000


class TraceCursorPagination(CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = ("-start_time", "-id")


class TraceSerializer(serializers.ModelSerializer):
    total_tokens = serializers.IntegerField(read_only=True)
    cost = serializers.DecimalField(max_digits=20, decimal_places=10, coerce_to_string=True, read_only=True)
    status = TraceStatusField(read_only=True)

    class Meta:
        model = Trace
        fields = [
            "trace_id", "name", "user_id", "session_id", "tags", "agent_id", "agent_slug", "run_id", "start_time",
            "end_time", "duration_ms", "status", "span_count", "llm_call_count", "error_count", "input_tokens",
            "output_tokens", "cached_tokens", "reasoning_tokens", "total_tokens", "cost", "source",
        ]  # fmt: skip
        read_only_fields = fields


class SpanSerializer(serializers.ModelSerializer):
    cost = serializers.DecimalField(max_digits=20, decimal_places=10, coerce_to_string=True, allow_null=True)
    depth = serializers.SerializerMethodField(help_text="0 for a root span, its parent's depth + 1 otherwise.")

    class Meta:
        model = Span
        fields = [
            "span_id", "trace_id", "parent_span_id", "depth", "kind", "name", "start_time", "end_time",
            "duration_ms", "status", "error_code", "error_message", "attributes", "input", "output", "model",
            "endpoint", "provider", "prompt_name", "prompt_version", "input_tokens", "output_tokens", "cached_tokens",
            "reasoning_tokens", "cost", "time_to_first_token_ms",
        ]  # fmt: skip
        read_only_fields = fields

    def get_depth(self, obj) -> int:
        return self.context.get("depths", {}).get(obj.span_id, 0)


class TraceDetailSerializer(TraceSerializer):
    spans = serializers.SerializerMethodField(
        help_text="The span tree in depth-first order (children after their parent, by start time), each span with "
        "its `parent_span_id` and `depth`: flat, so that arbitrarily deep trees stay valid JSON."
    )

    class Meta(TraceSerializer.Meta):
        fields = [*TraceSerializer.Meta.fields, "spans"]
        read_only_fields = fields

    @extend_schema_field(SpanSerializer(many=True))
    def get_spans(self, obj) -> list[dict]:
        tree = self.context["tree"]
        depths = {node.span.span_id: node.depth for node in tree.flat}
        return SpanSerializer([node.span for node in tree.flat], many=True, context={"depths": depths}).data


class TraceListView(ListAPIView):
    """Traces, newest first, filtered by user, agent, model, status and time; cursor-paginated."""

    serializer_class = TraceSerializer
    pagination_class = TraceCursorPagination

    def get_queryset(self):
        filters = TraceFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        user_id = data.get("user") if self.request.user.is_staff else None
        return selectors.trace_list(
            user=self.request.user,
            user_id=user_id,
            agent=data.get("agent"),
            model=data.get("model"),
            status=data.get("status"),
            since=data.get("since"),
            until=data.get("until"),
            name=data.get("name"),
        )

    @extend_schema(parameters=[TraceFilterSerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class TraceDetailView(APIView):
    """One trace with its span tree (inputs, outputs, tokens and cost per span)."""

    @extend_schema(responses={200: TraceDetailSerializer, 404: OpenApiResponse(description="TRACE_NOT_FOUND")})
    def get(self, request: Request, trace_id: str) -> Response:
        tree = selectors.trace_tree(user=request.user, trace_id=trace_id)
        return Response(TraceDetailSerializer(tree.trace, context={"tree": tree}).data)


# --- ingestion -----------------------------------------------------------------------------------------------


class IngestTraceSerializer(serializers.Serializer):
    trace_id = serializers.RegexField(HEX32, help_text="32 lowercase hex characters.")
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    session_id = serializers.CharField(max_length=128, required=False, allow_blank=True)
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=50)
    start_time = serializers.DateTimeField(required=False)
    end_time = serializers.DateTimeField(required=False)
    status = TraceStatusField(required=False)


class IngestSpanSerializer(serializers.Serializer):
    trace_id = serializers.RegexField(HEX32, help_text="32 lowercase hex characters.")
    span_id = serializers.RegexField(HEX16, help_text="16 lowercase hex characters; re-sending a span is a no-op.")
    parent_span_id = serializers.RegexField(HEX16, required=False, allow_null=True)
    kind = serializers.ChoiceField(choices=SpanKind.CHOICES, default=SpanKind.CUSTOM)
    name = serializers.CharField(max_length=200)
    start_time = serializers.DateTimeField()
    end_time = serializers.DateTimeField()
    status = TraceStatusField(default="ok")
    error_code = serializers.CharField(max_length=64, required=False, allow_blank=True)
    error_message = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
    attributes = serializers.DictField(required=False)
    input = serializers.JSONField(required=False, allow_null=True)
    output = serializers.JSONField(required=False, allow_null=True)
    model = serializers.CharField(max_length=200, required=False, allow_blank=True)
    provider = serializers.CharField(max_length=64, required=False, allow_blank=True)
    endpoint = serializers.CharField(max_length=100, required=False, allow_blank=True)
    prompt_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    prompt_version = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    input_tokens = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    output_tokens = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    cached_tokens = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    reasoning_tokens = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
    cost = serializers.DecimalField(max_digits=20, decimal_places=10, min_value=0, required=False, allow_null=True)
    time_to_first_token_ms = serializers.FloatField(min_value=0, required=False, allow_null=True)

    def validate(self, attrs):
        if attrs["end_time"] < attrs["start_time"]:
            raise serializers.ValidationError({"end_time": "end_time is before start_time."})
        if attrs.get("parent_span_id") == attrs["span_id"]:
            raise serializers.ValidationError({"parent_span_id": "A span cannot be its own parent."})
        return attrs


class IngestRequestSerializer(serializers.Serializer):
    traces = IngestTraceSerializer(many=True, required=False)
    spans = IngestSpanSerializer(many=True, required=False)


class IngestErrorSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["trace", "span"])
    index = serializers.IntegerField()
    field = serializers.CharField()
    message = serializers.CharField()


class IngestResponseSerializer(serializers.Serializer):
    accepted = serializers.IntegerField(help_text="Items stored (or already stored: ingestion is idempotent).")
    rejected = serializers.IntegerField()
    errors = IngestErrorSerializer(many=True)


def _item_errors(kind: str, index: int, detail: Any, prefix: str = "") -> list[dict[str, Any]]:
    out = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = prefix + ("" if key == "non_field_errors" else str(key))
            out.extend(_item_errors(kind, index, value, f"{name}." if name else ""))
        return out
    messages = detail if isinstance(detail, list) else [detail]
    field = prefix.rstrip(".") or "item"
    for message in messages:
        if isinstance(message, dict | list):
            out.extend(_item_errors(kind, index, message, prefix))
        else:
            out.append({"kind": kind, "index": index, "field": field, "message": str(message)})
    return out


class IngestView(APIView):
    """Batch ingestion of traces and spans from outside applications.

    Every item is validated on its own: valid items are stored even when others are not (status 207 with the
    per-item errors, each naming its index and field); all valid → 200; none valid → 422 `INGEST_INVALID`.
    Idempotent by span id: sending a batch twice stores nothing twice. Items are attributed to the caller.
    """

    @extend_schema(
        request=IngestRequestSerializer,
        responses={
            200: IngestResponseSerializer,
            207: IngestResponseSerializer,
            422: OpenApiResponse(description="INGEST_INVALID (no item was valid) or VALIDATION_ERROR (bad body)"),
        },
    )
    def post(self, request: Request) -> Response:
        from traces.services import spans_ingest

        body = request.data
        if not isinstance(body, dict):
            raise ValidationFailed("The body must be an object with 'traces' and/or 'spans' lists.", field="body")
        unknown = set(body) - {"traces", "spans"}
        if unknown:
            raise ValidationFailed(f"Unknown key(s): {', '.join(sorted(unknown))}.", field=sorted(unknown)[0])
        raw = {k: body.get(k) or [] for k in ("traces", "spans")}
        for key, items in raw.items():
            if not isinstance(items, list):
                raise ValidationFailed(f"'{key}' must be a list.", field=key)
        total = len(raw["traces"]) + len(raw["spans"])
        if total == 0:
            raise ValidationFailed("Nothing to ingest: send 'traces' and/or 'spans'.", field="spans")
        if total > MAX_INGEST_ITEMS:
            raise ValidationFailed(f"At most {MAX_INGEST_ITEMS} items per batch.", field="spans")
        errors: list[dict[str, Any]] = []
        valid: dict[str, list[tuple[int, dict]]] = {"traces": [], "spans": []}
        for key, serializer_class, kind in (
            ("traces", IngestTraceSerializer, "trace"),
            ("spans", IngestSpanSerializer, "span"),
        ):
            for index, item in enumerate(raw[key]):
                if not isinstance(item, dict):
                    errors.append({"kind": kind, "index": index, "field": "item", "message": "Must be an object."})
                    continue
                serializer = serializer_class(data=item)
                if serializer.is_valid():
                    valid[key].append((index, serializer.validated_data))
                else:
                    errors.extend(_item_errors(kind, index, serializer.errors))
        result = spans_ingest(
            user_id=request.user.pk,
            is_staff=request.user.is_staff,
            traces=valid["traces"],
            spans=valid["spans"],
        )
        errors.extend(result.errors)
        errors.sort(key=lambda e: (e["kind"] != "trace", e["index"]))
        rejected = len({(e["kind"], e["index"]) for e in errors})
        if result.accepted == 0:
            raise PlatformError(
                "No item in the batch was valid.",
                code="INGEST_INVALID",
                details={"accepted": 0, "rejected": rejected, "errors": errors},
            )
        payload = {"accepted": result.accepted, "rejected": rejected, "errors": errors}
        return Response(payload, status=status.HTTP_207_MULTI_STATUS if errors else status.HTTP_200_OK)
