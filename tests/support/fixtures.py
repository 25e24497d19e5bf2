"""Shared pytest fixtures for anything that calls a model (registered from the root conftest).

- `fake_openai`: a started `FakeOpenAIServer` (real HTTP on 127.0.0.1), stopped after the test;
- `create_endpoint_for_fake_server(server, name="fake", **fields)`: a credential and an endpoint pointing at it;
- `llm_records`: a test observer collecting every `LLMCallRecord` (and estimate) emitted during the test;
- `mock_llm`: `mock_provider_for`, with every mock reset after the test.
Every test starts with an empty endpoint cache and fresh mocks (autouse), so rolled-back rows never leak, and every
database test has the mock provider's demo price (autouse `_mock_price`): a transactional test's flush removes it,
and a hard budget refuses a model with no price (`PRICE_UNKNOWN`).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

from tests.support.fake_openai import FakeOpenAIServer
from tests.support.sinks import _mock_price  # noqa: F401 - autouse, for every app's tests

FAKE_API_KEY = "sk-fake-test-0123456789abcdefXYZ"

# Retries back off for milliseconds, not seconds, in tests (tests of the backoff itself override the setting).
os.environ.setdefault("LLM_RETRY_BASE_DELAY", "0.01")
os.environ.setdefault("LLM_RETRY_MAX_DELAY", "0.05")


def create_endpoint_for_fake_server(
    server: FakeOpenAIServer,
    name: str = "fake",
    *,
    api_key: str = FAKE_API_KEY,
    model: str | None = None,
    credential_name: str | None = None,
    **fields: Any,
):
    """A `ModelEndpoint` (plus an encrypted `ProviderCredential`) that reaches `server` through litellm."""
    from agent_platform.llm.models import ProviderCredential
    from agent_platform.llm.services import credential_create, endpoint_create

    credential_name = credential_name or f"{name}-key"
    credential = ProviderCredential.objects.filter(name=credential_name).first() or credential_create(
        name=credential_name, provider="openai", api_key=api_key
    )
    fields.setdefault("max_retries", 2)
    fields.setdefault("timeout_seconds", 10)
    return endpoint_create(
        name=name,
        model=model or f"openai/{server.model}",
        api_base=server.base_url,
        credential=credential,
        **fields,
    )


class RecordingObserver:
    """An observer for tests: keeps every record, estimate and span it receives."""

    name = "test-recorder"

    def __init__(self) -> None:
        self.records: list = []
        self.estimates: list = []
        self.spans: list = []
        self.flushes = 0

    def before_llm_call(self, estimate) -> None:
        self.estimates.append(estimate)

    async def abefore_llm_call(self, estimate) -> None:
        self.estimates.append(estimate)

    def on_llm_call(self, record):
        self.records.append(record)
        return None

    def on_span(self, record) -> None:
        self.spans.append(record)

    def flush(self) -> None:
        self.flushes += 1

    def by_call(self, call_id: str) -> list:
        return [r for r in self.records if r.call_id == call_id]

    def clear(self) -> None:
        self.records.clear()
        self.estimates.clear()
        self.spans.clear()


@pytest.fixture
def fake_openai():
    server = FakeOpenAIServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def llm_records():
    from agent_platform.observability.hooks import hub

    observer = RecordingObserver()
    hub.register(observer)
    yield observer
    hub.unregister(observer)


@pytest.fixture
def mock_llm():
    from agent_platform.llm.mock import mock_provider_for

    return mock_provider_for


@pytest.fixture(autouse=True)
def _llm_isolation():
    """Fresh endpoint cache and mocks for every test; fast LLM retries in tests."""
    if "agent_platform.llm.registry" in sys.modules:
        sys.modules["agent_platform.llm.registry"].registry.invalidate(broadcast=False)
    yield
    if "agent_platform.llm.registry" in sys.modules:
        sys.modules["agent_platform.llm.registry"].registry.invalidate(broadcast=False)
    if "agent_platform.llm.mock" in sys.modules:
        sys.modules["agent_platform.llm.mock"].reset_all_mocks()
