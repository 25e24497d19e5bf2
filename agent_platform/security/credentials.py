"""Where a provider's API key comes from: an admin-managed credential, else the provider's environment variable."""

from __future__ import annotations

import os

# litellm provider prefix -> environment variables litellm reads for it (first is the one we name in messages).
PROVIDER_ENV_VARS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "text-completion-openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "azure": ("AZURE_API_KEY", "AZURE_OPENAI_API_KEY"),
    "azure_ai": ("AZURE_AI_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "bedrock": ("AWS_ACCESS_KEY_ID",),
    "vertex_ai": ("GOOGLE_APPLICATION_CREDENTIALS", "VERTEXAI_CREDENTIALS"),
    "groq": ("GROQ_API_KEY",),
    "cohere": ("COHERE_API_KEY",),
    "cohere_chat": ("COHERE_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "together_ai": ("TOGETHERAI_API_KEY", "TOGETHER_API_KEY"),
    "openrouter": ("OPENROUTER_API_KEY",),
    "fireworks_ai": ("FIREWORKS_AI_API_KEY", "FIREWORKS_API_KEY"),
    "perplexity": ("PERPLEXITYAI_API_KEY",),
    "xai": ("XAI_API_KEY",),
    "huggingface": ("HUGGINGFACE_API_KEY", "HF_TOKEN"),
    "replicate": ("REPLICATE_API_KEY",),
    "deepinfra": ("DEEPINFRA_API_KEY",),
    "anyscale": ("ANYSCALE_API_KEY",),
    "cerebras": ("CEREBRAS_API_KEY",),
}

# Providers that work without any key (local servers; the mock).
KEYLESS_PROVIDERS = frozenset({"mock", "ollama", "ollama_chat", "hosted_vllm", "lm_studio", "llamafile", "vllm"})

# Providers whose credentials litellm reads from the environment itself (not a single api_key value).
AMBIENT_PROVIDERS = frozenset({"bedrock", "sagemaker", "vertex_ai"})


def env_var_names(provider: str) -> tuple[str, ...]:
    return PROVIDER_ENV_VARS.get(provider, (f"{provider.upper().replace('-', '_')}_API_KEY",))


def env_api_key(provider: str) -> str | None:
    for name in env_var_names(provider):
        value = os.environ.get(name)
        if value:
            return value
    return None


def not_configured_message(*, endpoint: str, model: str, provider: str) -> str:
    names = env_var_names(provider)
    return (
        f"Model endpoint '{endpoint}' ({model}) has no API key for provider '{provider}'. "
        f"Set the {names[0]} environment variable, or add a provider credential in the admin "
        "(LLM endpoints and credentials → Provider credentials) and attach it to the endpoint."
    )
