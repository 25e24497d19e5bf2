"""The error envelope, request ids, pagination and throttling: behaviour every API client relies on."""

import re

import pytest
from django.test import override_settings
from django.urls import path

from agent_platform.urls import urlpatterns as project_urlpatterns

pytestmark = pytest.mark.django_db

ENVELOPE_KEYS = {"code", "message", "details", "request_id", "timestamp"}


def assert_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ENVELOPE_KEYS
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == response["X-Request-ID"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", body["error"]["timestamp"])
    return body["error"]


def test_unknown_api_path_is_404_in_envelope(key_client):
    assert_envelope(key_client.get("/api/v1/no-such-thing/"), 404, "NOT_FOUND")


def test_missing_object_is_404_in_envelope(key_client):
    assert_envelope(key_client.get("/api/v1/auth/keys/999999/"), 404, "NOT_FOUND")


def test_wrong_method_is_405_in_envelope(key_client):
    assert_envelope(key_client.put("/api/v1/auth/keys/", {}), 405, "METHOD_NOT_ALLOWED")


def test_no_credentials_is_401_in_envelope(api_client):
    error = assert_envelope(api_client.get("/api/v1/auth/keys/"), 401, "AUTH_INVALID_CREDENTIALS")
    assert "credentials" in error["message"].lower()


@pytest.mark.urls("tests.urls_errors")
def test_permission_denied_is_403_in_envelope(api_client):
    error = assert_envelope(api_client.get("/api/test-errors/forbidden/"), 403, "POLICY_DENIED")
    assert error["message"] == "Only owners may look at this."


@pytest.mark.urls("tests.urls_errors")
def test_throttled_is_429_with_retry_after(api_client):
    response = api_client.get("/api/test-errors/limited/")
    error = assert_envelope(response, 429, "RATE_LIMIT_EXCEEDED")
    assert response["Retry-After"] == "7"
    assert error["details"]["retry_after_seconds"] == 7


@pytest.mark.urls("tests.urls_errors")
def test_unexpected_exception_is_500_in_envelope_without_internals(api_client):
    error = assert_envelope(api_client.get("/api/test-errors/crash/"), 500, "INTERNAL_ERROR")
    assert "secret internals" not in error["message"]


@pytest.mark.urls("tests.urls_errors")
def test_validation_error_names_each_field(api_client):
    response = api_client.post("/api/test-errors/validate/", {"name": "far too long", "count": 0}, format="json")
    error = assert_envelope(response, 422, "VALIDATION_ERROR")
    assert set(error["details"]["fields"]) == {"name", "count"}
    assert "name" in error["message"] and "count" in error["message"]


@pytest.mark.urls("tests.urls_errors")
def test_malformed_json_is_a_parse_error(api_client):
    response = api_client.post("/api/test-errors/validate/", "{not json", content_type="application/json")
    assert_envelope(response, 400, "PARSE_ERROR")


@pytest.mark.urls("tests.urls_errors")
def test_domain_error_keeps_its_code_and_details(api_client):
    error = assert_envelope(api_client.get("/api/test-errors/domain/"), 404, "AGENT_NOT_FOUND")
    assert error["details"] == {"slug": "x"}


def test_request_id_is_generated_when_absent(key_client):
    response = key_client.get("/api/v1/auth/keys/")
    assert re.match(r"^req_[0-9a-f]{24}$", response["X-Request-ID"])


def test_well_formed_request_id_is_accepted(key_client):
    response = key_client.get("/api/v1/auth/keys/", HTTP_X_REQUEST_ID="client-abc-12345")
    assert response["X-Request-ID"] == "client-abc-12345"


def test_malformed_request_id_is_replaced(key_client):
    response = key_client.get("/api/v1/auth/keys/", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert response["X-Request-ID"].startswith("req_")


def test_request_id_on_non_api_responses(client):
    assert client.get("/health/")["X-Request-ID"].startswith("req_")


def test_pagination_caps_page_size(key_client, user):
    from agent_platform.accounts.services import api_key_create

    for i in range(5):
        api_key_create(user=user, name=f"k{i}")
    body = key_client.get("/api/v1/auth/keys/?page_size=2").json()
    assert body["count"] == 6 and len(body["results"]) == 2 and body["next"]
    body = key_client.get("/api/v1/auth/keys/?page_size=100000").json()
    assert len(body["results"]) == 6


def test_throttling_limits_a_key_and_answers_in_envelope(key_client, settings):
    rates = {"user": "3/min", "anon": "3/min"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    statuses = [key_client.get("/api/v1/auth/keys/").status_code for _ in range(4)]
    assert statuses[:3] == [200, 200, 200]
    response = key_client.get("/api/v1/auth/keys/")
    assert_envelope(response, 429, "RATE_LIMIT_EXCEEDED")
    assert int(response["Retry-After"]) > 0


def test_schema_and_docs_are_served(key_client):
    schema = key_client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"openapi" in schema.content
    with override_settings(DEBUG=False):
        assert key_client.get("/api/docs/").status_code == 200


@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
def test_unknown_api_path_is_404_in_envelope_for_every_method_even_without_csrf_token(user, method):
    from rest_framework.test import APIClient

    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(user)
    assert_envelope(getattr(browser, method)("/api/v1/no-such-thing/"), 404, "NOT_FOUND")


def test_session_post_without_csrf_token_is_403_csrf_failed_in_envelope(user):
    from rest_framework.test import APIClient

    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(user)
    error = assert_envelope(browser.post("/api/v1/auth/keys/", {"name": "x"}, format="json"), 403, "CSRF_FAILED")
    assert "CSRF" in error["message"]


def _plain_api_view(request):
    from django.http import JsonResponse

    return JsonResponse({"ok": True})


urlpatterns = [path("api/plain/", _plain_api_view), *project_urlpatterns]


@pytest.mark.urls("tests.test_api_conventions")
def test_csrf_failure_on_a_plain_django_api_view_answers_in_envelope():
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    error = assert_envelope(browser.post("/api/plain/", {"a": "b"}), 403, "CSRF_FAILED")
    assert error["details"]["reason"]


def test_csrf_failure_outside_the_api_keeps_djangos_page():
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post("/admin/login/", {"username": "x", "password": "y"})
    assert response.status_code == 403 and response["Content-Type"].startswith("text/html")
    assert b"CSRF" in response.content
