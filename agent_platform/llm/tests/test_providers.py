"""Provider plumbing without a network: model strings, vendor-specific credentials, error mapping."""

from __future__ import annotations

import httpx
import pytest

from agent_platform.llm.errors import InputTooLarge, LLMAPIError, LLMRateLimited, LLMTimeout
from agent_platform.llm.providers import LiteLLMProvider, litellm_module, map_litellm_error
from agent_platform.llm.registry import ResolvedEndpoint, provider_for_model


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("openai/gpt-4o", "openai"),
        ("gpt-4o-mini", "openai"),
        ("claude-3-5-sonnet-20241022", "anthropic"),
        ("anthropic/claude-3-haiku-20240307", "anthropic"),
        ("gemini/gemini-1.5-pro", "gemini"),
        ("azure/my-deployment", "azure"),
        ("bedrock/anthropic.claude-3-sonnet-20240229-v1:0", "bedrock"),
        ("mistral/mistral-large-latest", "mistral"),
        ("ollama/llama3", "ollama"),
        ("hosted_vllm/meta-llama/Llama-3-8B", "hosted_vllm"),
        ("mock/assistant", "mock"),
        ("something-unknown", "unknown"),
    ],
)
def test_provider_from_model_string(model, provider):
    assert provider_for_model(model) == provider


def _kwargs(provider: str, model: str, extra=None, api_base=None, key="secret-key-123"):
    endpoint = ResolvedEndpoint(name="e", model=model, provider=provider, extra=extra or {}, api_base=api_base)
    return LiteLLMProvider._kwargs(endpoint, key, [{"role": "user", "content": "x"}], None, {"temperature": 0}, 5.0)


def test_vendor_specific_credentials_and_settings():
    azure = _kwargs("azure", "azure/gpt4o-deploy", {"api_version": "2024-06-01"}, "https://x.openai.azure.com")
    assert azure["api_key"] == "secret-key-123" and azure["api_version"] == "2024-06-01"
    assert azure["api_base"] == "https://x.openai.azure.com"
    bedrock = _kwargs("bedrock", "bedrock/x", {"aws_access_key_id": "AKIA...", "aws_region_name": "eu-west-1"})
    assert bedrock["aws_secret_access_key"] == "secret-key-123" and "api_key" not in bedrock
    assert bedrock["aws_region_name"] == "eu-west-1"
    vertex = _kwargs("vertex_ai", "vertex_ai/gemini-1.5-pro", key='{"type": "service_account"}')
    assert vertex["vertex_credentials"].startswith("{")
    plain = _kwargs("openai", "openai/gpt-4o")
    assert (plain["num_retries"], plain["max_retries"], plain["temperature"]) == (0, 0, 0)
    assert "api_base" not in plain and "tools" not in plain


def test_litellm_errors_map_to_typed_errors_without_the_key():
    lib = litellm_module()
    endpoint = ResolvedEndpoint(name="e", model="openai/gpt-4o", provider="openai")
    request = httpx.Request("POST", "http://x")
    key = "sk-very-secret-key-0000000000"

    def mapped(exc):
        return map_litellm_error(exc, endpoint=endpoint, api_key=key)

    response = httpx.Response(429, headers={"retry-after": "7"}, request=request)
    limited = mapped(lib.RateLimitError(f"slow down {key}", "openai", "gpt-4o", response=response))
    assert isinstance(limited, LLMRateLimited) and limited.retry_after == 7.0 and key not in limited.message
    assert isinstance(mapped(lib.Timeout("t", "gpt-4o", "openai")), LLMTimeout)
    window = mapped(lib.ContextWindowExceededError("too long", "gpt-4o", "openai"))
    assert isinstance(window, InputTooLarge)
    auth = mapped(lib.AuthenticationError(f"bad key {key}", "openai", "gpt-4o"))
    assert isinstance(auth, LLMAPIError) and not auth.retryable and auth.fallback and key not in auth.message
    bad = mapped(lib.BadRequestError("nope", "gpt-4o", "openai"))
    assert not bad.retryable and not bad.fallback
    server = mapped(lib.InternalServerError("boom", "openai", "gpt-4o"))
    assert server.retryable and server.code == "LLM_API_ERROR"


@pytest.mark.django_db(transaction=True)
async def test_a_registered_provider_serves_its_prefix(llm_records):
    from asgiref.sync import sync_to_async

    from agent_platform.llm.client import acomplete
    from agent_platform.llm.providers import Provider, ProviderResult, register_provider, unregister_provider
    from agent_platform.llm.services import endpoint_create
    from agent_platform.llm.types import LLMUsage

    class Gateway(Provider):
        name = "gateway"

        async def complete(self, *, endpoint, api_key, messages, tools, params, timeout):
            return ProviderResult("from the gateway", [], "stop", LLMUsage(3, 4), model=endpoint.model)

    register_provider("ollama", Gateway())
    try:
        await sync_to_async(endpoint_create)(name="local", model="ollama/llama3", api_base="http://127.0.0.1:9")
        response = await acomplete(endpoint="local", messages=[{"role": "user", "content": "x"}])
    finally:
        unregister_provider("ollama")
    assert response.content == "from the gateway" and response.usage.output_tokens == 4
    assert llm_records.records[0].provider == "ollama"


def test_django_start_up_does_not_import_litellm():
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'agent_platform.settings');"
        "import django; django.setup();"
        "import agent_platform.urls, agent_platform.llm.client, agent_platform.llm.admin, agent_platform.llm.mock;"
        "print('litellm' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr[-2000:]
