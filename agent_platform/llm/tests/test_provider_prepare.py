"""A cold litellm import (3 s here, far more under load) must not count against the first call's timeout."""

import time

import pytest

from agent_platform.llm import providers
from agent_platform.llm.client import acomplete
from tests.support.fixtures import create_endpoint_for_fake_server

pytestmark = pytest.mark.django_db(transaction=True)


async def test_first_call_loads_litellm_before_its_timeout_starts(fake_openai, monkeypatch):
    from asgiref.sync import sync_to_async

    await sync_to_async(create_endpoint_for_fake_server)(fake_openai, name="cold", timeout_seconds=0.5, max_retries=0)
    real_loader = providers.litellm_module
    loads = []

    def slow_cold_import():
        if providers._litellm is None:
            loads.append(1)
            time.sleep(1.0)  # longer than the call's whole timeout
        return real_loader()

    monkeypatch.setattr(providers, "_litellm", None)
    monkeypatch.setattr(providers, "litellm_module", slow_cold_import)
    response = await acomplete(endpoint="cold", messages=[{"role": "user", "content": "hello"}])
    assert response.content and loads == [1]
    assert response.latency_ms < 500
