"""Credentials: encrypted at rest, masked in the admin, rotatable, env-var fallback."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection

from agent_platform.llm.models import ProviderCredential
from agent_platform.llm.services import credential_create, credentials_rotate
from agent_platform.security import crypto
from agent_platform.security.credentials import env_api_key, not_configured_message

SECRET = "sk-live-ThisIsAVerySecretKey-1234567890"


def raw_rows() -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, encrypted_api_key, key_hint FROM llm_providercredential ORDER BY name")
        return cursor.fetchall()


def raw_history() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM llm_historicalprovidercredential")
        return repr(cursor.fetchall())


@pytest.mark.django_db
def test_keys_are_encrypted_at_rest_and_readable_through_the_model():
    credential_create(name="openai-main", provider="openai", api_key=SECRET)
    [(name, stored, hint)] = raw_rows()

    assert SECRET not in stored and "ThisIsAVerySecretKey" not in stored
    assert stored.startswith("gAAAA")  # a Fernet token
    assert hint == "sk-…7890"
    assert SECRET not in raw_history() and "gAAAA" not in raw_history()  # ciphertext is kept out of history
    assert ProviderCredential.objects.get(name=name).get_api_key() == SECRET
    assert SECRET not in repr(ProviderCredential.objects.get(name=name))


@pytest.mark.django_db
def test_rotation_reencrypts_with_the_newest_key_and_old_keys_can_then_go(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CREDENTIALS_ENCRYPTION_KEYS = [old]
    credential_create(name="a", provider="openai", api_key=SECRET)
    credential_create(name="b", provider="anthropic", api_key="sk-ant-another-secret-000000000")
    before = dict((n, t) for n, t, _ in raw_rows())

    settings.CREDENTIALS_ENCRYPTION_KEYS = [new, old]  # new key first; the old one still decrypts
    assert ProviderCredential.objects.get(name="a").get_api_key() == SECRET
    call_command("rotate_credentials", "--dry-run")
    assert dict((n, t) for n, t, _ in raw_rows()) == before

    result = credentials_rotate()
    assert (result.total, result.reencrypted, result.failed) == (2, 2, [])
    after = dict((n, t) for n, t, _ in raw_rows())
    assert all(after[n] != before[n] for n in before)

    settings.CREDENTIALS_ENCRYPTION_KEYS = [new]  # the old key is gone
    assert ProviderCredential.objects.get(name="a").get_api_key() == SECRET
    assert credentials_rotate().already_current == 2


@pytest.mark.django_db
def test_rotation_reports_credentials_no_key_can_read(settings):
    settings.CREDENTIALS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    credential_create(name="lost", provider="openai", api_key=SECRET)
    settings.CREDENTIALS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError, match="lost"):
        call_command("rotate_credentials")
    with pytest.raises(crypto.CredentialDecryptError) as caught:
        ProviderCredential.objects.get(name="lost").get_api_key()
    assert SECRET not in str(caught.value)


def test_development_derives_a_key_and_production_requires_one(settings):
    settings.CREDENTIALS_ENCRYPTION_KEYS = []
    token = crypto.encrypt_secret("hello")
    assert crypto.decrypt_secret(token) == "hello"
    assert crypto.configured_keys() == (crypto.derive_development_key(settings.SECRET_KEY),)
    settings.PRODUCTION = True
    with pytest.raises(ImproperlyConfigured):
        crypto.encrypt_secret("x")


def test_an_invalid_key_is_a_clear_configuration_error(settings):
    settings.CREDENTIALS_ENCRYPTION_KEYS = ["not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured, match="key #1"):
        crypto.encrypt_secret("x")


def test_masking_never_reveals_the_secret():
    assert crypto.mask_secret(SECRET) == "sk-…7890"
    assert crypto.mask_secret("short") == "••••••••"
    assert crypto.mask_secret("") == ""


def test_env_fallback_and_the_not_configured_message(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env")
    assert env_api_key("anthropic") == "sk-ant-env"
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    assert env_api_key("mistral") is None
    message = not_configured_message(endpoint="m", model="mistral/mistral-large-latest", provider="mistral")
    assert "MISTRAL_API_KEY" in message and "Provider credentials" in message


@pytest.mark.django_db
def test_admin_shows_keys_masked_and_stores_new_ones_encrypted(admin_client):
    response = admin_client.post(
        "/admin/llm/providercredential/add/",
        {"name": "from-admin", "provider": "openai", "api_key": SECRET, "extra": "{}", "enabled": "on"},
    )
    assert response.status_code == 302, response.content[:2000]
    [(_name, stored, hint)] = raw_rows()
    assert SECRET not in stored and hint == "sk-…7890"

    listing = admin_client.get("/admin/llm/providercredential/").content.decode()
    change = admin_client.get(f"/admin/llm/providercredential/{ProviderCredential.objects.get().pk}/change/")
    assert "sk-…7890" in listing and SECRET not in listing
    assert SECRET not in change.content.decode() and stored not in change.content.decode()

    # Saving without a new key keeps the old one.
    pk = ProviderCredential.objects.get().pk
    admin_client.post(
        f"/admin/llm/providercredential/{pk}/change/",
        {"name": "from-admin", "provider": "openai", "api_key": "", "extra": "{}", "enabled": "on"},
    )
    assert ProviderCredential.objects.get().get_api_key() == SECRET
