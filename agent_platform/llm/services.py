"""Writes for endpoints and credentials (keyword-only, validated, atomic)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from agent_platform.api.errors import PlatformError, ValidationFailed
from agent_platform.llm.models import ModelEndpoint, ProviderCredential
from agent_platform.security.crypto import CredentialDecryptError, encrypted_with_newest_key, reencrypt_secret

logger = logging.getLogger("agent_platform.llm")


def _validated(instance) -> None:
    try:
        instance.full_clean()
    except ValidationError as exc:
        fields = {name: [str(m) for m in messages] for name, messages in exc.message_dict.items()}
        first = next(iter(fields), "non_field_errors")
        raise ValidationFailed(
            "Invalid input. " + "; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items()),
            field=first,
            details={"fields": fields},
        ) from None


@transaction.atomic
def credential_create(
    *, name: str, provider: str, api_key: str, extra: dict[str, Any] | None = None, enabled: bool = True
) -> ProviderCredential:
    if not api_key or not api_key.strip():
        raise ValidationFailed("api_key: a key is required.", field="api_key")
    credential = ProviderCredential(name=name, provider=provider, extra=extra or {}, enabled=enabled)
    credential.set_api_key(api_key.strip())
    _validated(credential)
    credential.save()
    return credential


@dataclass(frozen=True)
class RotationResult:
    total: int
    reencrypted: int
    already_current: int
    failed: list[str]


def credentials_rotate(*, dry_run: bool = False) -> RotationResult:
    """Re-encrypt every stored credential with the newest key of CREDENTIALS_ENCRYPTION_KEYS."""
    reencrypted = current = 0
    failed: list[str] = []
    credentials = list(ProviderCredential.objects.order_by("pk"))
    for credential in credentials:
        if not credential.encrypted_api_key:
            current += 1
            continue
        if encrypted_with_newest_key(credential.encrypted_api_key):
            current += 1
            continue
        try:
            token = reencrypt_secret(credential.encrypted_api_key)
        except CredentialDecryptError:
            failed.append(credential.name)
            logger.error("credential %s cannot be decrypted with any configured key", credential.name)
            continue
        if not dry_run:
            with transaction.atomic():
                # A queryset update: no history row with old ciphertext, no signal storm per row.
                ProviderCredential.objects.filter(pk=credential.pk).update(encrypted_api_key=token)
        reencrypted += 1
    if reencrypted and not dry_run:
        from agent_platform.llm.registry import registry

        registry.invalidate()
    return RotationResult(len(credentials), reencrypted, current, failed)


_ENDPOINT_FIELDS = {
    "model",
    "provider",
    "api_base",
    "credential",
    "default_params",
    "timeout_seconds",
    "max_retries",
    "fallbacks",
    "cache_enabled",
    "context_window",
    "max_output_tokens",
    "supports_tools",
    "enabled",
    "description",
}


@transaction.atomic
def endpoint_create(
    *,
    name: str,
    model: str,
    provider: str = "",
    api_base: str = "",
    credential: ProviderCredential | None = None,
    default_params: dict[str, Any] | None = None,
    timeout_seconds: float = 60.0,
    max_retries: int = 2,
    fallbacks: list[str] | None = None,
    cache_enabled: bool = False,
    context_window: int | None = None,
    max_output_tokens: int | None = None,
    supports_tools: bool = True,
    enabled: bool = True,
    description: str = "",
) -> ModelEndpoint:
    endpoint = ModelEndpoint(
        name=name,
        model=model,
        provider=provider,
        api_base=api_base,
        credential=credential,
        default_params=default_params or {},
        timeout_seconds=timeout_seconds,
        max_retries=max_retries,
        fallbacks=fallbacks or [],
        cache_enabled=cache_enabled,
        context_window=context_window,
        max_output_tokens=max_output_tokens,
        supports_tools=supports_tools,
        enabled=enabled,
        description=description,
    )
    _validated(endpoint)
    endpoint.save()
    return endpoint


@transaction.atomic
def endpoint_update(*, endpoint: ModelEndpoint, **changes: Any) -> ModelEndpoint:
    unknown = set(changes) - _ENDPOINT_FIELDS
    if unknown:
        raise ValidationFailed(f"Unknown endpoint fields: {', '.join(sorted(unknown))}.", field=sorted(unknown)[0])
    for name, value in changes.items():
        setattr(endpoint, name, value)
    _validated(endpoint)
    endpoint.save()
    return endpoint


@dataclass(frozen=True)
class EndpointCheck:
    endpoint: str
    ok: bool
    latency_ms: float | None = None
    model: str | None = None
    reply: str | None = None
    error_code: str | None = None
    message: str | None = None


def endpoint_check(*, name: str, timeout: float = 30.0) -> EndpointCheck:
    """One tiny real call through the whole path (recorded and priced like any other), for the admin and ops."""
    from agent_platform.llm.client import complete

    try:
        response = complete(
            endpoint=name,
            messages=[{"role": "user", "content": "Reply with the single word: pong"}],
            params={"max_tokens": 5},
            use_cache=False,
            timeout=timeout,
        )
    except PlatformError as exc:
        return EndpointCheck(endpoint=name, ok=False, error_code=exc.code, message=exc.message)
    return EndpointCheck(
        endpoint=name,
        ok=True,
        latency_ms=round(response.latency_ms, 1),
        model=response.model,
        reply=(response.content or "")[:100],
    )
