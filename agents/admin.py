from django import forms
from django.contrib import admin, messages
from simple_history.admin import SimpleHistoryAdmin

from agent_platform.api.errors import PlatformError
from agents import services
from agents.models import AgentDefinition, Conversation, Message, Run, RunEvent
from agents.tools.registry import registry as tool_registry


class AgentDefinitionForm(forms.ModelForm):
    class Meta:
        model = AgentDefinition
        exclude = ()  # noqa: DJ006 - every field is editable here

    def clean_tools(self):
        tools = self.cleaned_data.get("tools") or []
        if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
            raise forms.ValidationError("A list of tool names.")
        unknown = [t for t in tools if not tool_registry.has(t)]
        if unknown:
            raise forms.ValidationError(
                f"Unknown tool(s): {', '.join(unknown)}. Registered: {', '.join(tool_registry.names())}."
            )
        return tools


@admin.register(AgentDefinition)
class AgentDefinitionAdmin(SimpleHistoryAdmin):
    form = AgentDefinitionForm
    list_display = ["slug", "name", "category", "model_endpoint", "mode", "enabled", "owner", "team", "updated_at"]
    list_filter = ["enabled", "category", "mode", "pii_mask"]
    search_fields = ["slug", "name", "description"]
    actions = ["check_health"]

    @admin.action(description="Check health (endpoint reachable and credentialed)")
    def check_health(self, request, queryset):
        for agent in queryset[:50]:
            result = services.agent_health(agent=agent)
            level = messages.SUCCESS if result.get("healthy") else messages.ERROR
            detail = result.get("error", {}).get("message", "") if not result.get("healthy") else "healthy"
            self.message_user(request, f"{agent.slug}: {detail}", level)


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    readonly_fields = ("role", "content", "run", "created_at")
    fields = readonly_fields
    can_delete = False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["id", "agent", "user", "title", "updated_at"]
    list_filter = ["agent"]
    search_fields = ["title", "user__username"]
    inlines = [MessageInline]


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["id", "agent", "user", "status", "error_code", "total_tokens", "cost", "attempts", "created_at"]
    list_filter = ["status", "error_code", "agent"]
    search_fields = ["id", "trace_id", "input"]
    readonly_fields = [f.name for f in Run._meta.fields]
    actions = ["cancel_runs"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Cancel the selected runs")
    def cancel_runs(self, request, queryset):
        for run in queryset:
            try:
                services.run_cancel(run=run)
            except PlatformError as exc:
                self.message_user(request, f"{run.id}: {exc.message}", messages.WARNING)


@admin.register(RunEvent)
class RunEventAdmin(admin.ModelAdmin):
    list_display = ["run", "seq", "type", "created_at"]
    list_filter = ["type"]
    readonly_fields = ["run", "seq", "type", "data", "created_at"]

    def has_add_permission(self, request):
        return False
