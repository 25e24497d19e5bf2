"""The LLM layer: the one way the platform talks to a model.

Use `agent_platform.llm.client` (`acomplete`, `complete`, `astream`, `count_tokens`, `model_info`); endpoints are
admin-managed (`ModelEndpoint`, `ProviderCredential`), `mock/<name>` works offline with no rows. Modules:
`engine` (the call path: limits, PII, cache, retry, fallback, timeout, records), `registry` (endpoint resolution,
cached in-process), `providers` (litellm, imported lazily), `mock`, `middleware` (custom hooks), `sync` (the sync
wrapper's event loop), `conf` (LLM_* settings).
"""
