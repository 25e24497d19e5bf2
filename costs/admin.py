"""Admin: the price table (with history), cost records (unpriced filter, recompute by date range or selection),
budgets, alerts."""

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Max, Min
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from simple_history.admin import SimpleHistoryAdmin

from agent_platform.api.errors import ValidationFailed
from costs import services
from costs.models import Budget, BudgetAlert, CostRecord, Price, UsageDaily


@admin.register(Price)
class PriceAdmin(SimpleHistoryAdmin):
    list_display = [
        "provider", "model", "input_per_million", "output_per_million", "cached_input_per_million",
        "cache_write_per_million", "reasoning_per_million", "per_request", "bills_failed_requests", "currency",
        "effective_from", "source",
    ]  # fmt: skip
    list_filter = ["source", "provider", "currency", "bills_failed_requests"]
    search_fields = ["provider", "model"]

    def save_model(self, request, obj, form, change) -> None:
        if change and obj.source == Price.Source.LITELLM and form.changed_data:
            obj.source = Price.Source.MANUAL  # edited by hand: imports leave it alone from now on
        services.price_save(price=obj)

    def delete_model(self, request, obj) -> None:
        services.price_delete(price=obj)


@admin.register(CostRecord)
class CostRecordAdmin(admin.ModelAdmin):
    list_display = ["created_at", "provider", "model", "status", "error_code", "input_tokens", "output_tokens",
                    "cost", "unpriced", "user_id", "agent_slug", "trace_id"]  # fmt: skip
    list_filter = ["unpriced", "status", "error_code", "provider"]
    search_fields = ["model", "trace_id", "span_id", "run_id", "attempt_id"]
    date_hierarchy = "created_at"
    actions = ["recompute_costs"]
    show_full_result_count = False
    readonly_fields = [f.name for f in CostRecord._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Recompute costs for the date range of the selected records")
    def recompute_costs(self, request, queryset) -> None:
        bounds = queryset.aggregate(start=Min("created_at"), end=Max("created_at"))
        if bounds["start"] is None:
            return
        result = services.cost_records_recompute(start=bounds["start"], end=bounds["end"] + timedelta(microseconds=1))
        self.message_user(
            request,
            f"Recomputed {result['records']} records from {bounds['start']:%Y-%m-%d %H:%M} to "
            f"{bounds['end']:%Y-%m-%d %H:%M}: {result['changed']} changed.",
            messages.SUCCESS,
        )

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("recompute/", wrap(self.recompute_view), name="costs_costrecord_recompute"),
            *super().get_urls(),
        ]

    def recompute_view(self, request: HttpRequest) -> HttpResponse:
        """A date range (and optional filters) to reprice, through the same service as the API and the command."""
        if not self.has_change_permission(request):  # it rewrites records
            raise PermissionDenied
        form = RecomputeForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                result = services.cost_records_recompute(
                    start=data["start"], end=data["end"], provider=data["provider"] or None,
                    model=data["model"] or None, agent=data["agent"] or None,
                )  # fmt: skip
            except ValidationFailed as exc:
                form.add_error(exc.details.get("field"), exc.message)
            else:
                self.message_user(
                    request,
                    f"Recomputed {result['records']} records from {data['start']:%Y-%m-%d %H:%M} to "
                    f"{data['end']:%Y-%m-%d %H:%M}: {result['changed']} changed, {result['days']} days' rollups "
                    "rebuilt.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:costs_costrecord_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Recompute costs for a date range",
            "form": form,
        }
        return TemplateResponse(request, "admin/costs/costrecord/recompute.html", context)


class RecomputeForm(forms.Form):
    start = forms.DateTimeField(help_text="Inclusive, UTC: YYYY-MM-DD or YYYY-MM-DD HH:MM.")
    end = forms.DateTimeField(help_text="Exclusive, UTC.")
    provider = forms.CharField(required=False, max_length=64)
    model = forms.CharField(required=False, max_length=200, help_text="Exact model name.")
    agent = forms.CharField(required=False, max_length=100, help_text="Agent id or slug.")


@admin.register(Budget)
class BudgetAdmin(SimpleHistoryAdmin):
    list_display = ["name", "scope", "scope_id", "period", "limit", "currency", "enforcement", "spent", "reserved",
                    "is_active"]  # fmt: skip
    list_filter = ["scope", "period", "enforcement", "is_active"]
    search_fields = ["name"]
    readonly_fields = ["spent", "reserved", "period_start"]

    def save_model(self, request, obj, form, change) -> None:
        services.budget_save(budget=obj)

    def delete_model(self, request, obj) -> None:
        services.budget_delete(budget=obj)

    def delete_queryset(self, request, queryset) -> None:
        services.budgets_delete(budgets=queryset)


@admin.register(BudgetAlert)
class BudgetAlertAdmin(admin.ModelAdmin):
    list_display = ["budget", "threshold", "spent", "limit", "period_start", "created_at", "email_sent",
                    "webhook_status"]  # fmt: skip
    list_filter = ["threshold", "email_sent"]
    readonly_fields = [f.name for f in BudgetAlert._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(UsageDaily)
class UsageDailyAdmin(admin.ModelAdmin):
    list_display = ["day", "provider", "model", "user_id", "agent_id", "calls", "cost"]
    list_filter = ["provider"]
    date_hierarchy = "day"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
