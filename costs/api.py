"""REST API of the costs app: usage reports, the price table (read), budgets, recomputing costs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TypedDict

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import generics, permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agent_platform.api.errors import PlatformError, ValidationFailed
from costs import selectors, services
from costs.models import Budget, Price
from costs.queries import UsageQuerySerializer, usage_report_for
from costs.validation import validate_recompute_range


class _MoneyField(TypedDict):
    """How an amount of money is serialized (typed, so that `**MONEY_FIELD` type-checks)."""

    max_digits: int
    decimal_places: int
    coerce_to_string: bool


MONEY_FIELD: _MoneyField = {"max_digits": 20, "decimal_places": 10, "coerce_to_string": True}


# --- usage -----------------------------------------------------------------------------------------------------


class UsageRowSerializer(serializers.Serializer):
    key = serializers.JSONField(help_text="The group value (model name, user id, ...), or the bucket.")
    calls = serializers.IntegerField()
    errors = serializers.IntegerField()  # type: ignore[assignment]  # DRF's metaclass moves fields off the class
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cached_tokens = serializers.IntegerField()
    reasoning_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(**MONEY_FIELD)


class UsageSeriesRowSerializer(UsageRowSerializer):
    bucket = serializers.CharField(help_text="Day (YYYY-MM-DD) or hour (ISO 8601, UTC).")


class UsageTotalsSerializer(UsageRowSerializer):
    key = None  # type: ignore[assignment]  # the totals have no group key: DRF drops a field set to None


class UsageReportSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    group_by = serializers.CharField()
    bucket = serializers.CharField()
    currency = serializers.CharField()
    totals = UsageTotalsSerializer()
    groups = UsageRowSerializer(many=True)
    series = UsageSeriesRowSerializer(many=True)


class UsageView(APIView):
    """Usage and cost totals with a time series, grouped by provider, model, agent, user, API key, team, or only
    by time. Non-staff users see their own usage."""

    @extend_schema(parameters=[UsageQuerySerializer], responses=UsageReportSerializer)
    def get(self, request: Request) -> Response:
        report = usage_report_for(request.user, request.query_params)
        payload = {
            "start": report.start,
            "end": report.end,
            "group_by": report.group_by,
            "bucket": report.bucket,
            "currency": "USD",
            "totals": report.totals,
            "groups": report.groups,
            "series": report.series,
        }
        return Response(UsageReportSerializer(payload).data)


# --- prices ------------------------------------------------------------------------------------------------------


class PriceSerializer(serializers.ModelSerializer):
    input_per_million = serializers.DecimalField(**MONEY_FIELD)
    output_per_million = serializers.DecimalField(**MONEY_FIELD)
    cached_input_per_million = serializers.DecimalField(**MONEY_FIELD, allow_null=True)
    cache_write_per_million = serializers.DecimalField(**MONEY_FIELD, allow_null=True)
    reasoning_per_million = serializers.DecimalField(**MONEY_FIELD, allow_null=True)
    per_request = serializers.DecimalField(**MONEY_FIELD)
    is_pattern = serializers.BooleanField(read_only=True)

    class Meta:
        model = Price
        fields = [
            "id", "provider", "model", "is_pattern", "input_per_million", "output_per_million",
            "cached_input_per_million", "cache_write_per_million", "reasoning_per_million", "per_request",
            "bills_failed_requests", "currency", "effective_from", "source", "notes", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields


class PriceFilterSerializer(serializers.Serializer):
    provider = serializers.CharField(required=False)
    model = serializers.CharField(required=False, help_text="Substring of the model name or pattern.")


class PriceListView(generics.ListAPIView):
    """The price table (managed in the admin; imported from litellm's bundled cost map)."""

    serializer_class = PriceSerializer

    def get_queryset(self):
        filters = PriceFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return selectors.price_list(**filters.validated_data)

    @extend_schema(parameters=[PriceFilterSerializer])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


# --- budgets -----------------------------------------------------------------------------------------------------


class BudgetSerializer(serializers.ModelSerializer):
    limit = serializers.DecimalField(max_digits=20, decimal_places=10, min_value=0, coerce_to_string=True)
    spent = serializers.DecimalField(**MONEY_FIELD, read_only=True)
    reserved = serializers.DecimalField(**MONEY_FIELD, read_only=True)
    percent_used = serializers.FloatField(read_only=True)
    thresholds = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=1000), required=False, max_length=10
    )

    class Meta:
        model = Budget
        fields = [
            "id", "name", "scope", "scope_id", "period", "limit", "currency", "enforcement", "thresholds",
            "period_start", "spent", "reserved", "percent_used", "alert_emails", "webhook_url", "is_active",
            "created_at",
        ]  # fmt: skip
        read_only_fields = ["id", "period_start", "spent", "reserved", "percent_used", "created_at"]


class IsStaffOrReadOnly(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return request.method in permissions.SAFE_METHODS or bool(request.user and request.user.is_staff)


class BudgetListView(generics.ListCreateAPIView):
    """Budgets: everyone lists the budgets that apply to them (their user, API keys, teams); staff list all and
    create them."""

    serializer_class = BudgetSerializer
    permission_classes = [permissions.IsAuthenticated, IsStaffOrReadOnly]

    def get_queryset(self):
        return selectors.budgets_visible_to(self.request.user).order_by("name", "id")

    def perform_create(self, serializer) -> None:
        serializer.instance = services.budget_save(budget=Budget(**serializer.validated_data))


class BudgetDetailView(generics.RetrieveUpdateDestroyAPIView):
    """One budget (staff may change or delete it)."""

    serializer_class = BudgetSerializer
    permission_classes = [permissions.IsAuthenticated, IsStaffOrReadOnly]

    def get_queryset(self):
        return selectors.budgets_visible_to(self.request.user)

    def get_object(self):
        budget = self.get_queryset().filter(pk=self.kwargs["pk"]).first()
        if budget is None:
            raise PlatformError("No such budget.", code="NOT_FOUND", field="id")
        self.check_object_permissions(self.request, budget)
        return budget

    def perform_update(self, serializer) -> None:
        budget = serializer.instance
        for key, value in serializer.validated_data.items():
            setattr(budget, key, value)
        services.budget_save(budget=budget)

    def perform_destroy(self, instance) -> None:
        services.budget_delete(budget=instance)


# --- recompute ---------------------------------------------------------------------------------------------------


class RecomputeSerializer(serializers.Serializer):
    start = serializers.DateTimeField(help_text="Inclusive (ISO 8601; a date means its midnight UTC).")
    end = serializers.DateTimeField(help_text="Exclusive (ISO 8601).")
    provider = serializers.CharField(required=False, max_length=64, help_text="Only this provider's records.")
    model = serializers.CharField(required=False, max_length=200, help_text="Only this model's records (exact).")
    agent = serializers.CharField(required=False, max_length=100, help_text="Only this agent's records (id or slug).")

    def validate(self, attrs: dict) -> dict:
        try:
            validate_recompute_range(start=attrs["start"], end=attrs["end"])
        except ValidationFailed as exc:  # reported like the field errors above: details.fields.<name>
            raise serializers.ValidationError({exc.details["field"]: [exc.message]}) from exc
        return attrs


class RecomputeResultSerializer(serializers.Serializer):
    records = serializers.IntegerField(help_text="Cost records in the range that match the filters.")
    changed = serializers.IntegerField(help_text="Records whose price, cost or unpriced flag changed.")
    days = serializers.IntegerField(help_text="UTC days whose rollups were rebuilt.")


class RecomputeView(APIView):
    """Reprice the cost records of a date range (optionally one provider, model or agent) with the price table as
    it is now, and rebuild the affected daily rollups; budgets are not re-charged. Staff only."""

    permission_classes = [permissions.IsAdminUser]

    @extend_schema(request=RecomputeSerializer, responses=RecomputeResultSerializer)
    def post(self, request: Request) -> Response:
        query = RecomputeSerializer(data=request.data)
        query.is_valid(raise_exception=True)
        result = services.cost_records_recompute(**query.validated_data)
        return Response(RecomputeResultSerializer(result).data)


def default_range() -> tuple[datetime, datetime]:
    end = timezone.now().astimezone(UTC)
    return end - timedelta(days=30), end
