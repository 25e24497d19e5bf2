"""Cache, PII masking on the wire, credentials from env, endpoint resolution and the observer contract."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agent_platform.api.errors import PlatformError
from agent_platform.llm.client import acomplete, astream, complete, model_info
from agent_platform.llm.errors import ModelDisabled, ModelNotFound, ProviderNotConfigured
from agent_platform.observability.hooks import Observer, hub
from tests.support.fixtures import create_endpoint_for_fake_server

pytestmark = pytest.mark.django_db(transaction=True)

USER = [{"role": "user", "content": "What is the capital of France?"}]


async def endpoint(server, name="fake", **fields):
    return await sync_to_async(create_endpoint_for_fake_server)(server, name, **fields)


# --- response cache ----------------------------------------------------------------------------------------


async def test_identical_deterministic_requests_are_served_from_the_cache(fake_openai, llm_records):
    await endpoint(fake_openai, cache_enabled=True, default_params={"temperature": 0})
    first = await acomplete(endpoint="fake", messages=USER)
    second = await acomplete(endpoint="fake", messages=USER)

    assert len(fake_openai.requests) == 1
    assert second.content == first.content and second.usage == first.usage
    assert first.metadata["cache_hit"] is False and second.metadata["cache_hit"] is True
    assert [(r.cache_hit, r.billable) for r in llm_records.records] == [(False, True), (True, False)]


async def test_a_different_request_misses_the_cache(fake_openai):
    await endpoint(fake_openai, cache_enabled=True, default_params={"temperature": 0})
    await acomplete(endpoint="fake", messages=USER)
    other = await acomplete(endpoint="fake", messages=[{"role": "user", "content": "And of Spain?"}])
    assert other.metadata["cache_hit"] is False and len(fake_openai.requests) == 2


async def test_sampling_temperature_is_not_cached_unless_asked(fake_openai):
    await endpoint(fake_openai, cache_enabled=True)
    await acomplete(endpoint="fake", messages=USER, params={"temperature": 0.7})
    await acomplete(endpoint="fake", messages=USER, params={"temperature": 0.7})
    assert len(fake_openai.requests) == 2

    await acomplete(endpoint="fake", messages=USER, params={"temperature": 0.7}, use_cache=True)
    hit = await acomplete(endpoint="fake", messages=USER, params={"temperature": 0.7}, use_cache=True)
    assert hit.metadata["cache_hit"] is True and len(fake_openai.requests) == 3


async def test_use_cache_false_and_streams_bypass_the_cache(fake_openai):
    await endpoint(fake_openai, cache_enabled=True, default_params={"temperature": 0})
    await acomplete(endpoint="fake", messages=USER)
    await acomplete(endpoint="fake", messages=USER, use_cache=False)
    [chunk async for chunk in astream(endpoint="fake", messages=USER)]
    assert len(fake_openai.requests) == 3


# --- PII -----------------------------------------------------------------------------------------------------


async def test_pii_is_masked_on_the_wire_and_restored_for_the_caller(fake_openai, llm_records):
    await endpoint(fake_openai)
    text = "Write to jane.doe@example.com or call +44 20 7946 0958 about card 4111 1111 1111 1111"
    response = await acomplete(endpoint="fake", messages=[{"role": "user", "content": text}], pii_mask=True)

    sent = fake_openai.requests[0].messages[0]["content"]
    assert "jane.doe@example.com" not in sent and "4111" not in sent and "7946" not in sent
    assert "<EMAIL_1>" in sent and "<PHONE_1>" in sent and "<CREDIT_CARD_1>" in sent
    assert response.content == f"Echo: {text}"  # the echo of placeholders, de-anonymised
    [record] = llm_records.records
    assert "jane.doe@example.com" not in str(record.messages) and "jane.doe" not in (record.output or "")


async def test_pii_placeholders_split_across_stream_chunks_are_restored(fake_openai):
    await endpoint(fake_openai)
    fake_openai.enqueue(content="Mail <EMAIL_1> today")  # streamed word by word: "<EMAIL_1> " is one piece
    chunks = [
        c
        async for c in astream(
            endpoint="fake", messages=[{"role": "user", "content": "mail bob@example.org"}], pii_mask=True
        )
    ]
    assert "".join(c.delta for c in chunks) == "Mail bob@example.org today"
    assert chunks[-1].response.content == "Mail bob@example.org today"
    assert "bob@example.org" not in str(fake_openai.requests[0].messages)


async def test_without_pii_mask_the_text_goes_out_unchanged(fake_openai):
    await endpoint(fake_openai)
    await acomplete(endpoint="fake", messages=[{"role": "user", "content": "jane@example.com"}])
    assert fake_openai.requests[0].messages[0]["content"] == "jane@example.com"


# --- credentials -------------------------------------------------------------------------------------------


async def test_a_real_model_without_a_key_is_not_configured(monkeypatch, llm_records):
    from agent_platform.llm.services import endpoint_create

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    await sync_to_async(endpoint_create)(name="gpt", model="openai/gpt-4o-mini")
    with pytest.raises(ProviderNotConfigured) as caught:
        await acomplete(endpoint="gpt", messages=USER)
    assert caught.value.code == "PROVIDER_NOT_CONFIGURED"
    assert "OPENAI_API_KEY" in caught.value.message and "admin" in caught.value.message
    assert llm_records.records == []  # nothing was attempted


async def test_the_environment_variable_is_the_fallback_key(fake_openai, monkeypatch):
    from agent_platform.llm.services import endpoint_create

    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-000000000000000001")
    await sync_to_async(endpoint_create)(name="envkey", model="openai/fake-model", api_base=fake_openai.base_url)
    response = await acomplete(endpoint="envkey", messages=USER)
    assert response.content.startswith("Echo:")
    assert fake_openai.requests[0].headers["Authorization"] == "Bearer sk-from-env-000000000000000001"


# --- resolution ----------------------------------------------------------------------------------------------


async def test_unknown_and_disabled_endpoints(fake_openai):
    with pytest.raises(ModelNotFound) as caught:
        await acomplete(endpoint="no-such-model", messages=USER)
    assert caught.value.code == "MODEL_NOT_FOUND" and caught.value.status == 404
    await endpoint(fake_openai, enabled=False)
    with pytest.raises(ModelDisabled):
        await acomplete(endpoint="fake", messages=USER)
    assert fake_openai.requests == []


async def test_bad_messages_are_a_validation_error_naming_the_field():
    for messages, field in (([], "messages"), ([{"content": "no role"}], "messages[0].role")):
        with pytest.raises(PlatformError) as caught:
            await acomplete(endpoint="mock/x", messages=messages)
        assert caught.value.code == "VALIDATION_ERROR" and caught.value.details["field"] == field
    with pytest.raises(PlatformError) as caught:
        await acomplete(endpoint="mock/x", messages=USER, params={"api_key": "x"})
    assert caught.value.details["field"] == "params"


@pytest.mark.django_db(transaction=False)
def test_endpoint_resolution_is_cached_and_invalidated_on_save(fake_openai):
    from agent_platform.llm.services import endpoint_update

    row = create_endpoint_for_fake_server(fake_openai)
    complete(endpoint="fake", messages=USER)
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            complete(endpoint="fake", messages=USER)
    assert len(queries) == 0  # no database query per call once resolved

    endpoint_update(endpoint=row, enabled=False)
    with pytest.raises(ModelDisabled):
        complete(endpoint="fake", messages=USER)


@pytest.mark.django_db(transaction=False)
def test_model_info_reports_known_context_window_and_prices():
    from agent_platform.llm.services import endpoint_create

    endpoint_create(name="gpt4o", model="openai/gpt-4o")
    info = model_info(endpoint="gpt4o")
    assert info.provider == "openai" and info.context_window == 128000
    assert info.input_price_per_million is not None and info.output_price_per_million is not None
    mock = model_info(endpoint="mock/anything")
    assert mock.provider == "mock" and mock.context_window


# --- observers -------------------------------------------------------------------------------------------------


class Exploding(Observer):
    name = "exploding"

    def on_llm_call(self, record):
        raise RuntimeError("observer bug")


class Refusing(Observer):
    name = "refusing"

    def before_llm_call(self, estimate):
        raise PlatformError("Budget exhausted", code="BUDGET_EXCEEDED")


async def test_a_failing_observer_is_logged_not_raised(fake_openai, llm_records, caplog):
    await endpoint(fake_openai)
    broken = Exploding()
    hub.register(broken)
    try:
        response = await acomplete(endpoint="fake", messages=USER)
    finally:
        hub.unregister(broken)
    assert response.content.startswith("Echo:")
    assert len(llm_records.records) == 1
    assert any("exploding" in r.getMessage() for r in caplog.records)


async def test_an_observer_refusal_stops_the_call_before_the_vendor(fake_openai, llm_records):
    await endpoint(fake_openai)
    refusing = Refusing()
    hub.register(refusing)
    try:
        with pytest.raises(PlatformError) as caught:
            await acomplete(endpoint="fake", messages=USER)
    finally:
        hub.unregister(refusing)
    assert caught.value.code == "BUDGET_EXCEEDED"
    assert fake_openai.requests == []
    [record] = llm_records.records
    assert record.error_code == "BUDGET_EXCEEDED" and record.billable is False


async def test_the_estimate_precedes_each_attempt(fake_openai, llm_records):
    await endpoint(fake_openai, default_params={"max_tokens": 77})
    fake_openai.enqueue(fault="500")
    await acomplete(endpoint="fake", messages=USER)
    assert [e.attempt_id for e in llm_records.estimates] == [r.attempt_id for r in llm_records.records]
    assert all(e.max_output_tokens == 77 and e.estimated_input_tokens > 0 for e in llm_records.estimates)


def test_other_processes_see_endpoint_changes_after_the_commit(settings):
    from agent_platform.llm.registry import EndpointRegistry
    from agent_platform.llm.services import endpoint_create, endpoint_update

    settings.LLM_ENDPOINT_CACHE_SECONDS = 0  # check the shared version on every lookup
    other = EndpointRegistry()  # stands in for another process: its own in-process cache
    row = endpoint_create(name="shared", model="mock/a")
    assert other.resolve("shared").model == "mock/a"
    endpoint_update(endpoint=row, model="mock/b")
    assert other.resolve("shared").model == "mock/b"
