"""API keys and JWT: valid, missing, malformed, revoked and expired credentials."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from agent_platform.accounts.models import ApiKey
from agent_platform.accounts.services import api_key_create, api_key_revoke
from tests.support.api import bearer, code_of

pytestmark = pytest.mark.django_db

KEYS_URL = "/api/v1/auth/keys/"


def test_valid_api_key_authenticates_and_records_use(issued_key):
    assert issued_key.api_key.last_used_at is None
    assert bearer(issued_key.raw_key).get(KEYS_URL).status_code == 200
    issued_key.api_key.refresh_from_db()
    assert issued_key.api_key.last_used_at is not None


def test_key_is_stored_hashed_with_visible_prefix(issued_key):
    row = ApiKey.objects.get(pk=issued_key.api_key.pk)
    assert issued_key.raw_key.startswith(f"ap_{row.prefix}_")
    assert issued_key.raw_key not in (row.key_hash, row.prefix, row.name)
    assert len(row.key_hash) == 64


def test_unknown_api_key_is_rejected(issued_key):
    response = bearer(issued_key.raw_key[:-3] + "xyz").get(KEYS_URL)
    assert response.status_code == 401 and code_of(response) == "AUTH_INVALID_CREDENTIALS"


def test_missing_credentials_are_rejected(api_client):
    response = api_client.get(KEYS_URL)
    assert response.status_code == 401 and code_of(response) == "AUTH_INVALID_CREDENTIALS"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Basic Zm9vOmJhcg==x extra", "Token abc"])
def test_malformed_authorization_header_is_rejected(api_client, header):
    api_client.credentials(HTTP_AUTHORIZATION=header)
    response = api_client.get(KEYS_URL)
    assert response.status_code == 401 and code_of(response) == "AUTH_INVALID_CREDENTIALS"


def test_revoked_api_key_is_rejected(issued_key):
    api_key_revoke(api_key=issued_key.api_key)
    response = bearer(issued_key.raw_key).get(KEYS_URL)
    assert response.status_code == 401 and code_of(response) == "AUTH_TOKEN_BLACKLISTED"


def test_expired_api_key_is_rejected(user):
    issued = api_key_create(user=user, name="old", expires_at=timezone.now() - timedelta(seconds=1))
    response = bearer(issued.raw_key).get(KEYS_URL)
    assert response.status_code == 401 and code_of(response) == "AUTH_TOKEN_EXPIRED"


def test_key_is_shown_once_on_creation_and_revocable_via_api(key_client):
    created = key_client.post(KEYS_URL, {"name": "ci"}, format="json")
    assert created.status_code == 201
    raw = created.json()["key"]
    assert raw.startswith("ap_")
    listed = key_client.get(f"{KEYS_URL}{created.json()['id']}/").json()
    assert "key" not in listed and raw not in str(listed)
    assert bearer(raw).get(KEYS_URL).status_code == 200
    assert key_client.delete(f"{KEYS_URL}{created.json()['id']}/").json()["revoked_at"]
    assert bearer(raw).get(KEYS_URL).status_code == 401


def test_key_creation_validates_name(key_client):
    response = key_client.post(KEYS_URL, {}, format="json")
    assert response.status_code == 422
    assert "name" in response.json()["error"]["details"]["fields"]


def test_users_cannot_see_or_revoke_each_others_keys(key_client, other_user):
    theirs = api_key_create(user=other_user, name="theirs")
    assert key_client.get(f"{KEYS_URL}{theirs.api_key.pk}/").status_code == 404
    assert key_client.delete(f"{KEYS_URL}{theirs.api_key.pk}/").status_code == 404


def test_jwt_obtain_use_refresh_and_revoke(api_client, user):
    tokens = api_client.post(
        "/api/v1/auth/token/", {"username": "alice", "password": "correct-horse-battery"}, format="json"
    ).json()
    assert bearer(tokens["access"]).get(KEYS_URL).status_code == 200
    refreshed = api_client.post("/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json")
    assert refreshed.status_code == 200
    new_refresh = refreshed.json()["refresh"]
    # the rotated-out refresh token is revoked
    again = api_client.post("/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json")
    assert again.status_code == 401 and code_of(again) == "AUTH_TOKEN_BLACKLISTED"
    assert api_client.post("/api/v1/auth/token/revoke/", {"refresh": new_refresh}, format="json").status_code == 200
    revoked = api_client.post("/api/v1/auth/token/refresh/", {"refresh": new_refresh}, format="json")
    assert revoked.status_code == 401 and code_of(revoked) == "AUTH_TOKEN_BLACKLISTED"


def test_jwt_wrong_password_is_rejected(api_client, user):
    response = api_client.post("/api/v1/auth/token/", {"username": "alice", "password": "nope"}, format="json")
    assert response.status_code == 401 and code_of(response) == "AUTH_INVALID_CREDENTIALS"


def test_expired_jwt_is_rejected(user):
    token = AccessToken.for_user(user)
    token.set_exp(from_time=timezone.now() - timedelta(hours=1), lifetime=timedelta(minutes=1))
    response = bearer(str(token)).get(KEYS_URL)
    assert response.status_code == 401 and code_of(response) == "AUTH_TOKEN_EXPIRED"


def test_malformed_jwt_is_rejected():
    response = bearer("eyJhbGciOiJIUzI1NiJ9.not-a-token.x").get(KEYS_URL)
    assert response.status_code == 401 and code_of(response) == "AUTH_INVALID_CREDENTIALS"


def test_jwt_of_revoked_refresh_cannot_mint_access(user, api_client):
    refresh = RefreshToken.for_user(user)
    refresh.blacklist()
    response = api_client.post("/api/v1/auth/token/refresh/", {"refresh": str(refresh)}, format="json")
    assert response.status_code == 401 and code_of(response) == "AUTH_TOKEN_BLACKLISTED"


def test_session_authentication(session_client):
    assert session_client.get(KEYS_URL).status_code == 200


def test_api_key_binds_the_caller_for_downstream_attribution(issued_key, monkeypatch):
    from agent_platform.api import views
    from agent_platform.observability.context import current_caller

    seen = {}
    original = views.api_keys_of_user

    def spy(*, user):
        seen.update(current_caller().as_dict())
        return original(user=user)

    monkeypatch.setattr(views, "api_keys_of_user", spy)
    bearer(issued_key.raw_key).get(KEYS_URL)
    assert seen == {"user_id": issued_key.api_key.user_id, "api_key_id": issued_key.api_key.pk}
