"""Admin-managed model endpoints and the encrypted provider credentials they use."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import models
from simple_history.models import HistoricalRecords

from agent_platform.llm.conf import RESERVED_PARAMS
from agent_platform.security.crypto import decrypt_secret, encrypt_secret, mask_secret

ENDPOINT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$")


class ProviderCredential(models.Model):
    """A provider API key, encrypted at rest (Fernet). The plaintext never leaves `get_api_key()`."""

    name = models.CharField(max_length=100, unique=True)
    provider = models.CharField(max_length=50, help_text="litellm provider, e.g. openai, anthropic, gemini, azure")
    encrypted_api_key = models.TextField(editable=False)
    key_hint = models.CharField(max_length=20, blank=True, editable=False, help_text="Masked form for display")
    extra = models.JSONField(
        default=dict, blank=True, help_text="Extra non-secret settings, e.g. api_version for Azure, aws_region_name"
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The ciphertext is kept out of the history: old copies would outlive key rotation.
    history = HistoricalRecords(excluded_fields=["encrypted_api_key"])

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider}, {self.key_hint or 'no key'})"

    def set_api_key(self, raw: str) -> None:
        self.encrypted_api_key = encrypt_secret(raw)
        self.key_hint = mask_secret(raw)

    def get_api_key(self) -> str:
        return decrypt_secret(self.encrypted_api_key) if self.encrypted_api_key else ""


class ModelEndpoint(models.Model):
    """A named model: a litellm model string plus where and how to call it."""

    name = models.CharField(max_length=128, unique=True, help_text="What callers use, e.g. 'assistant' or 'gpt-4o'")
    model = models.CharField(max_length=200, help_text="litellm model string, e.g. openai/gpt-4o, mock/assistant")
    provider = models.CharField(max_length=50, blank=True, help_text="Derived from the model string when blank")
    api_base = models.URLField(max_length=500, blank=True, help_text="For OpenAI-compatible servers (vLLM, Ollama)")
    credential = models.ForeignKey(
        ProviderCredential, null=True, blank=True, on_delete=models.PROTECT, related_name="endpoints"
    )
    default_params = models.JSONField(
        default=dict, blank=True, help_text='Default parameters, e.g. {"temperature": 0, "max_tokens": 1024}'
    )
    timeout_seconds = models.FloatField(default=60.0, help_text="Per attempt")
    max_retries = models.PositiveSmallIntegerField(default=2, help_text="Retries of retryable errors per endpoint")
    fallbacks = models.JSONField(
        default=list, blank=True, help_text="Ordered names of other endpoints to try when this one fails"
    )
    cache_enabled = models.BooleanField(
        default=False, help_text="Cache identical deterministic (temperature 0) requests"
    )
    context_window = models.PositiveIntegerField(null=True, blank=True, help_text="Overrides the known value")
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True, help_text="Overrides the known value")
    supports_tools = models.BooleanField(default=True)
    enabled = models.BooleanField(default=True)
    description = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} → {self.model}"

    def save(self, *args, **kwargs) -> None:
        if not self.provider and self.model:
            from agent_platform.llm.registry import provider_for_model

            self.provider = provider_for_model(self.model)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        from agent_platform.llm.registry import provider_for_model

        errors: dict[str, str] = {}
        if not ENDPOINT_NAME_RE.match(self.name or ""):
            errors["name"] = "Use letters, digits and . _ : / @ - (at most 128 characters)."
        if not (self.model or "").strip():
            errors["model"] = "A litellm model string is required, e.g. openai/gpt-4o."
        if not isinstance(self.default_params, dict):
            errors["default_params"] = "Must be a JSON object."
        else:
            reserved = sorted(RESERVED_PARAMS.intersection(self.default_params))
            if reserved:
                errors["default_params"] = f"Set these elsewhere, not as parameters: {', '.join(reserved)}."
        if not isinstance(self.fallbacks, list) or not all(isinstance(f, str) and f for f in self.fallbacks):
            errors["fallbacks"] = "Must be a JSON list of endpoint names."
        elif self.name in self.fallbacks:
            errors["fallbacks"] = "An endpoint cannot fall back to itself."
        else:
            known = set(ModelEndpoint.objects.filter(name__in=self.fallbacks).values_list("name", flat=True))
            missing = [f for f in self.fallbacks if f not in known and not f.startswith("mock/")]
            if missing:
                errors["fallbacks"] = f"Unknown endpoint(s): {', '.join(missing)}."
        if self.timeout_seconds is not None and self.timeout_seconds <= 0:
            errors["timeout_seconds"] = "Must be positive."
        if not errors and not self.provider:
            self.provider = provider_for_model(self.model)
        if self.credential_id and self.provider and self.credential and self.credential.provider != self.provider:
            errors["credential"] = (
                f"The credential is for '{self.credential.provider}' but this endpoint uses '{self.provider}'."
            )
        if errors:
            raise ValidationError(errors)
