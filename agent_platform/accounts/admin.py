from django import forms
from django.contrib import admin, messages
from simple_history.admin import SimpleHistoryAdmin

from agent_platform.accounts.models import ApiKey, Team
from agent_platform.accounts.services import api_key_create, api_key_revoke


class ApiKeyCreateForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["user", "team", "name", "expires_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "team", "masked", "created_at", "last_used_at", "expires_at", "revoked_at"]
    list_filter = ["revoked_at", "team"]
    search_fields = ["name", "prefix", "user__username"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    @admin.display(description="key")
    def masked(self, obj: ApiKey) -> str:
        return f"ap_{obj.prefix}_…"

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user", "team", "name", "expires_at"]
        return ["user", "team", "name", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = api_key_create(
            user=form.cleaned_data["user"],
            name=form.cleaned_data["name"],
            expires_at=form.cleaned_data.get("expires_at"),
            team=form.cleaned_data.get("team"),
        )
        obj.pk = issued.api_key.pk
        messages.warning(request, f"New API key (shown once, copy it now): {issued.raw_key}")

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        for api_key in queryset:
            api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {queryset.count()} key(s).")


@admin.register(Team)
class TeamAdmin(SimpleHistoryAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]
    filter_horizontal = ["members"]
