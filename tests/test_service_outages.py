"""A service a request needs being down (cache, broker, database) is a 503 SERVICE_UNAVAILABLE naming the service,
with Retry-After, on every way a request is answered: DRF views, plain API views, pages, and middleware."""

import pytest
from django.test import Client

from tests.test_api_conventions import assert_envelope

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.urls_outages")]

FAULT_SERVICES = [
    ("cache", "cache"),
    ("cache-timeout", "cache"),
    ("broker", "broker"),
    ("database", "database"),
    ("database-closed", "database"),
]


def assert_unavailable(response, service: str) -> dict:
    error = assert_envelope(response, 503, "SERVICE_UNAVAILABLE")
    assert error["details"]["service"] == service
    assert int(response["Retry-After"]) > 0
    assert error["details"]["retry_after_seconds"] == int(response["Retry-After"])
    assert service in error["message"]
    return error


@pytest.mark.parametrize("fault,service", FAULT_SERVICES)
def test_a_drf_view_whose_service_is_down_answers_503_naming_it(api_client, fault, service):
    assert_unavailable(api_client.get(f"/api/test-outages/drf/{fault}/"), service)


@pytest.mark.parametrize("fault,service", FAULT_SERVICES)
def test_a_plain_api_view_whose_service_is_down_answers_503_in_the_envelope(fault, service):
    assert_unavailable(Client().get(f"/api/test-outages/plain/{fault}/"), service)


def test_retry_after_follows_the_setting(api_client, settings):
    settings.SERVICE_RETRY_AFTER_SECONDS = 17
    response = api_client.get("/api/test-outages/drf/database/")
    assert_unavailable(response, "database")
    assert response["Retry-After"] == "17"


@pytest.mark.parametrize("fault,service", [("cache", "cache"), ("database", "database")])
def test_a_page_whose_service_is_down_answers_a_503_page_with_retry_after(fault, service):
    response = Client().get(f"/test-outages/page/{fault}/")
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert int(response["Retry-After"]) > 0
    assert f"The {service} is not answering" in response.content.decode()


@pytest.mark.parametrize("fault,service", [("database", "database"), ("cache", "cache"), ("broker", "broker")])
def test_a_middleware_whose_service_is_down_answers_503_not_500(settings, fault, service):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.urls_outages.FailInMiddleware"]
    client = Client(raise_request_exception=False)  # as a real server: the 500 handler answers
    assert_unavailable(client.get(f"/api/v1/agents/?middleware_fault={fault}"), service)
    page = client.get(f"/dashboard/traces/?middleware_fault={fault}")
    assert page.status_code == 503 and int(page["Retry-After"]) > 0


def test_other_errors_escaping_a_middleware_stay_a_500_in_the_envelope_under_the_api(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.urls_outages.FailInMiddleware"]
    client = Client(raise_request_exception=False)
    response = client.get("/api/v1/agents/?middleware_fault=unknown")  # a KeyError in the middleware
    assert_envelope(response, 500, "INTERNAL_ERROR")
    assert client.get("/dashboard/traces/?middleware_fault=unknown").status_code == 500


def test_sessions_live_in_the_database_not_only_in_the_cache(settings):
    # A cache-only session engine would log everyone out (or fail every page) while Redis is down.
    assert settings.SESSION_ENGINE in (
        "django.contrib.sessions.backends.db",
        "django.contrib.sessions.backends.cached_db",
    )
