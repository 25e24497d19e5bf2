"""`/api/v1/models/` and the endpoint admin."""

from __future__ import annotations

import pytest

from agent_platform.llm.models import ModelEndpoint
from agent_platform.llm.services import credential_create, endpoint_create

pytestmark = pytest.mark.django_db


def test_models_list_shows_context_window_and_prices_but_no_keys(key_client):
    credential = credential_create(name="openai", provider="openai", api_key="sk-secret-abcdefghijklmnop-1234")
    endpoint_create(name="gpt4o", model="openai/gpt-4o", credential=credential)
    endpoint_create(name="assistant", model="mock/assistant", description="Demo")
    endpoint_create(name="old", model="openai/gpt-4o-mini", enabled=False)

    response = key_client.get("/api/v1/models/")
    assert response.status_code == 200
    body = response.json()
    rows = {row["name"]: row for row in body["results"]}
    assert set(rows) == {"gpt4o", "assistant", "old"}
    assert rows["gpt4o"]["context_window"] == 128000 and rows["gpt4o"]["provider"] == "openai"
    assert float(rows["gpt4o"]["input_price_per_million"]) > 0
    assert rows["assistant"]["provider"] == "mock" and rows["assistant"]["input_price_per_million"] is None
    assert "sk-secret" not in response.content.decode()

    enabled = key_client.get("/api/v1/models/?enabled=true").json()["results"]
    assert {r["name"] for r in enabled} == {"gpt4o", "assistant"}
    assert {r["name"] for r in key_client.get("/api/v1/models/?provider=mock").json()["results"]} == {"assistant"}
    bad = key_client.get("/api/v1/models/?enabled=maybe")
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "VALIDATION_ERROR"


def test_model_detail_including_implicit_mocks_and_unknown_names(key_client):
    endpoint_create(name="assistant", model="mock/assistant")
    assert key_client.get("/api/v1/models/assistant/").json()["model"] == "mock/assistant"
    assert key_client.get("/api/v1/models/mock/anything/").json()["provider"] == "mock"
    missing = key_client.get("/api/v1/models/nope/")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "MODEL_NOT_FOUND"


def test_models_need_authentication(api_client):
    assert api_client.get("/api/v1/models/").status_code == 401


def test_endpoint_validation_names_the_field():
    from agent_platform.api.errors import PlatformError

    with pytest.raises(PlatformError) as caught:
        endpoint_create(name="loop", model="mock/x", fallbacks=["loop"])
    assert caught.value.code == "VALIDATION_ERROR" and caught.value.details["field"] == "fallbacks"
    with pytest.raises(PlatformError) as caught:
        endpoint_create(name="a", model="mock/x", fallbacks=["ghost"])
    assert "ghost" in caught.value.message
    with pytest.raises(PlatformError) as caught:
        endpoint_create(name="keyed", model="mock/x", default_params={"api_key": "sk-x", "temperature": 0})
    assert caught.value.details["field"] == "default_params" and "sk-x" not in caught.value.message
    with pytest.raises(PlatformError) as caught:
        endpoint_create(name="bad name!", model="mock/x")
    assert caught.value.details["field"] == "name"
    assert not ModelEndpoint.objects.exists()


def test_admin_endpoint_pages_and_history(admin_client):
    endpoint_create(name="backup", model="mock/backup")
    response = admin_client.post(
        "/admin/llm/modelendpoint/add/",
        {
            "name": "main",
            "model": "openai/gpt-4o",
            "provider": "",
            "description": "",
            "enabled": "on",
            "api_base": "",
            "credential": "",
            "timeout_seconds": "30",
            "max_retries": "2",
            "fallbacks": '["backup"]',
            "default_params": '{"temperature": 0}',
            "supports_tools": "on",
            "context_window": "",
            "max_output_tokens": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    main = ModelEndpoint.objects.get(name="main")
    assert main.provider == "openai" and main.fallbacks == ["backup"]
    listing = admin_client.get("/admin/llm/modelendpoint/").content.decode()
    assert "main" in listing and "backup" in listing
    assert admin_client.get(f"/admin/llm/modelendpoint/{main.pk}/history/").status_code == 200
    assert main.history.count() == 1
