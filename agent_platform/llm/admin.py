"""Admin for model endpoints and provider credentials. Keys are write-only: shown masked, never echoed back."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from simple_history.admin import SimpleHistoryAdmin

from agent_platform.llm.models import ModelEndpoint, ProviderCredential
from agent_platform.llm.services import endpoint_check
from agent_platform.security.credentials import AMBIENT_PROVIDERS, KEYLESS_PROVIDERS, env_api_key, env_var_names


class ProviderCredentialForm(forms.ModelForm):
    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted. Leave blank to keep the current key.",
    )

    class Meta:
        model = ProviderCredential
        fields = ["name", "provider", "api_key", "extra", "enabled"]

    def clean(self):
        cleaned = super().clean() or {}
        if not self.instance.pk and not cleaned.get("api_key"):
            self.add_error("api_key", "An API key is required for a new credential.")
        return cleaned

    def save(self, commit: bool = True):
        credential = super().save(commit=False)
        if self.cleaned_data.get("api_key"):
            credential.set_api_key(self.cleaned_data["api_key"])
        if commit:
            credential.save()
        return credential


@admin.register(ProviderCredential)
class ProviderCredentialAdmin(SimpleHistoryAdmin):
    form = ProviderCredentialForm
    list_display = ["name", "provider", "masked_key", "enabled", "endpoint_count", "updated_at"]
    list_filter = ["provider", "enabled"]
    search_fields = ["name", "provider"]
    readonly_fields = ["masked_key", "created_at", "updated_at"]
    fields = ["name", "provider", "api_key", "masked_key", "extra", "enabled", "created_at", "updated_at"]

    @admin.display(description="Key")
    def masked_key(self, obj: ProviderCredential) -> str:
        return obj.key_hint or "—"

    @admin.display(description="Endpoints")
    def endpoint_count(self, obj: ProviderCredential) -> int:
        return obj.endpoints.count()


@admin.register(ModelEndpoint)
class ModelEndpointAdmin(SimpleHistoryAdmin):
    list_display = [
        "name",
        "model",
        "provider",
        "key_source",
        "enabled",
        "fallback_list",
        "cache_enabled",
        "updated_at",
    ]
    list_filter = ["provider", "enabled", "cache_enabled"]
    search_fields = ["name", "model", "description"]
    list_select_related = ["credential"]
    autocomplete_fields = ["credential"]
    readonly_fields = ["created_at", "updated_at"]
    actions = ["check_endpoints"]
    fieldsets = [
        (None, {"fields": ["name", "model", "provider", "description", "enabled"]}),
        ("Connection", {"fields": ["api_base", "credential", "timeout_seconds", "max_retries", "fallbacks"]}),
        ("Behaviour", {"fields": ["default_params", "cache_enabled", "supports_tools"]}),
        ("Limits", {"fields": ["context_window", "max_output_tokens"]}),
        ("Dates", {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="Fallbacks")
    def fallback_list(self, obj: ModelEndpoint) -> str:
        return " → ".join(obj.fallbacks or []) or "—"

    @admin.display(description="Key")
    def key_source(self, obj: ModelEndpoint) -> str:
        """Where the key comes from (never the key itself)."""
        provider = obj.provider
        if provider in KEYLESS_PROVIDERS:
            return "not needed"
        credential = obj.credential
        if credential is not None and credential.enabled:
            return f"credential: {credential.name} ({credential.key_hint})"
        if env_api_key(provider):
            return f"env: {env_var_names(provider)[0]}"
        if provider in AMBIENT_PROVIDERS:
            return "provider environment"
        return f"MISSING — set {env_var_names(provider)[0]} or attach a credential"

    @admin.action(description="Check selected endpoints with a tiny real call")
    def check_endpoints(self, request, queryset) -> None:
        for endpoint in queryset:
            result = endpoint_check(name=endpoint.name, timeout=min(endpoint.timeout_seconds, 30))
            if result.ok:
                self.message_user(
                    request,
                    f"Endpoint {result.endpoint}: ok in {result.latency_ms} ms — “{result.reply}”",
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request, f"Endpoint {result.endpoint}: {result.error_code} — {result.message}", messages.ERROR
                )
