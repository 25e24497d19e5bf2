from django.contrib import admin

from traces.models import Span, Trace


@admin.register(Trace)
class TraceAdmin(admin.ModelAdmin):
    list_display = ["trace_id", "name", "status", "start_time", "duration_ms", "span_count", "cost", "user_id"]
    list_filter = ["status", "source"]
    search_fields = ["trace_id", "name", "session_id", "agent_slug"]
    date_hierarchy = "start_time"
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Span)
class SpanAdmin(admin.ModelAdmin):
    list_display = ["span_id", "trace_id", "kind", "name", "status", "start_time", "duration_ms", "model", "cost"]
    list_filter = ["kind", "status"]
    search_fields = ["span_id", "trace_id", "name", "model"]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
