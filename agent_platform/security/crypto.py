"""Encryption at rest for provider credentials: MultiFernet over `CREDENTIALS_ENCRYPTION_KEYS`.

Keys are comma-separated Fernet keys, NEWEST FIRST: the first encrypts, every key decrypts, so a new key can be
put in front while old ciphertexts still read; `manage.py rotate_credentials` then re-encrypts everything with the
newest key, after which the old keys can be removed. In development, when no key is set, one is derived from
`SECRET_KEY`; production refuses to start without explicit keys (settings).
Generate a key: `python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`.
"""

from __future__ import annotations

import base64
import hashlib
import threading

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

_lock = threading.Lock()
_cached: tuple[tuple[str, ...], MultiFernet] | None = None


class CredentialDecryptError(Exception):
    """A stored secret could not be decrypted with any configured key (the message never contains the secret)."""


def derive_development_key(secret_key: str) -> str:
    digest = hashlib.sha256(b"agent-platform/credentials/v1:" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def configured_keys() -> tuple[str, ...]:
    keys = tuple(k.strip() for k in (getattr(settings, "CREDENTIALS_ENCRYPTION_KEYS", None) or []) if k.strip())
    if keys:
        return keys
    if getattr(settings, "PRODUCTION", False):
        raise ImproperlyConfigured("CREDENTIALS_ENCRYPTION_KEYS is not set (required in production).")
    return (derive_development_key(settings.SECRET_KEY),)


def _fernet() -> MultiFernet:
    global _cached
    keys = configured_keys()
    cached = _cached
    if cached is not None and cached[0] == keys:
        return cached[1]
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.encode()))
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(
                f"CREDENTIALS_ENCRYPTION_KEYS: key #{position} is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes)."
            ) from exc
    multi = MultiFernet(fernets)
    with _lock:
        _cached = (keys, multi)
    return multi


@receiver(setting_changed)
def _reset(setting: str, **kwargs) -> None:
    global _cached
    if setting in {"CREDENTIALS_ENCRYPTION_KEYS", "SECRET_KEY"}:
        _cached = None


def encrypt_secret(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt_secret(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise CredentialDecryptError(
            "A stored credential cannot be decrypted with the configured CREDENTIALS_ENCRYPTION_KEYS "
            "(was a key removed before `manage.py rotate_credentials` ran?)."
        ) from exc


def reencrypt_secret(token: str) -> str:
    """The same secret encrypted with the newest key (MultiFernet.rotate)."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise CredentialDecryptError("A stored credential cannot be decrypted with the configured keys.") from exc


def encrypted_with_newest_key(token: str) -> bool:
    keys = configured_keys()
    try:
        Fernet(keys[0].encode()).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def mask_secret(secret: str | None) -> str:
    """A display form that never reveals the secret: a short prefix hint and the last 4 characters."""
    if not secret:
        return ""
    if len(secret) <= 8:
        return "•" * 8
    prefix = secret[:3] if secret[:3].isalpha() or secret.startswith("sk-") else ""
    return f"{prefix}…{secret[-4:]}"
