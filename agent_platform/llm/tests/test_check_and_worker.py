"""Endpoint checks from the admin and from Celery: eagerly, and on a real worker over HTTP to the fake server."""

from __future__ import annotations

import pytest

from agent_platform.llm.models import ModelEndpoint
from agent_platform.llm.services import endpoint_check, endpoint_create
from agent_platform.llm.tasks import endpoint_check_task
from tests.support.fixtures import create_endpoint_for_fake_server


@pytest.mark.django_db
def test_endpoint_check_reports_success_and_typed_failures(fake_openai, monkeypatch):
    create_endpoint_for_fake_server(fake_openai)
    ok = endpoint_check(name="fake")
    assert ok.ok and ok.reply.startswith("Echo:") and ok.latency_ms is not None

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    endpoint_create(name="claude", model="anthropic/claude-3-5-sonnet-20241022")
    failed = endpoint_check(name="claude")
    assert not failed.ok and failed.error_code == "PROVIDER_NOT_CONFIGURED"
    assert "ANTHROPIC_API_KEY" in failed.message


@pytest.mark.django_db
def test_admin_check_action_and_key_source_column(admin_client, fake_openai, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    create_endpoint_for_fake_server(fake_openai)
    endpoint_create(name="assistant", model="mock/assistant")
    endpoint_create(name="nokey", model="openai/gpt-4o")

    listing = admin_client.get("/admin/llm/modelendpoint/").content.decode()
    assert "credential: fake-key" in listing and "not needed" in listing
    assert "MISSING — set OPENAI_API_KEY" in listing

    ids = list(ModelEndpoint.objects.order_by("name").values_list("pk", flat=True))
    response = admin_client.post(
        "/admin/llm/modelendpoint/", {"action": "check_endpoints", "_selected_action": ids}, follow=True
    )
    text = response.content.decode()
    assert "Endpoint assistant: ok in" in text and "“pong”" in text and "Endpoint fake: ok in" in text
    assert "Endpoint nokey: PROVIDER_NOT_CONFIGURED" in text


@pytest.mark.django_db
def test_the_check_task_runs_eagerly():
    endpoint = endpoint_create(name="assistant", model="mock/assistant")
    result = endpoint_check_task.apply(args=[endpoint.pk]).get()
    assert result["ok"] is True and result["endpoint"] == "assistant"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_calls_the_fake_server_through_litellm(celery_worker, fake_openai):
    endpoint = create_endpoint_for_fake_server(fake_openai)
    result = endpoint_check_task.delay(endpoint.pk).get(timeout=60)
    assert result["ok"] is True, (result, celery_worker.log())
    assert result["reply"] == "Echo: Reply with the single word: pong"
    [request] = fake_openai.requests
    assert request.headers["Authorization"].startswith("Bearer sk-fake-test")  # decrypted in the worker process
