"""The LLM layer's public value types: one response type for every provider."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, exactly as the model produced it (may be invalid JSON)

    def as_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass
class LLMUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0  # part of input_tokens
    reasoning_tokens: int = 0  # part of output_tokens
    cache_write_tokens: int = 0  # part of input_tokens (Anthropic's cache_creation_input_tokens)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class LLMResponse:
    content: str
    tool_calls: list[ToolCall]
    model: str  # litellm model string actually used
    endpoint: str  # endpoint name actually used (after fallback)
    provider: str
    finish_reason: str | None
    usage: LLMUsage
    latency_ms: float
    time_to_first_token_ms: float | None
    cost: Decimal | None  # of every attempt of the call (observers' annotations: costs app); None if unpriced/unknown
    call_id: str
    trace_id: str | None
    span_id: str | None  # the span of the successful attempt
    metadata: dict = field(default_factory=dict)  # provider metadata (response id, cache_hit, attempts, ...)

    def as_message(self) -> dict[str, Any]:
        """The assistant message to append to a conversation (OpenAI format)."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content or None}
        if self.tool_calls:
            message["tool_calls"] = [tc.as_openai() for tc in self.tool_calls]
        return message


@dataclass
class StreamChunk:
    delta: str = ""  # text delta
    tool_calls: list[ToolCall] | None = None  # complete tool calls, yielded once when known
    response: LLMResponse | None = None  # set on the LAST chunk only: the full response


@dataclass(frozen=True)
class ModelInfo:
    name: str  # endpoint name
    model: str  # litellm model string
    provider: str
    context_window: int | None
    max_output_tokens: int | None
    input_price_per_million: Decimal | None = None
    output_price_per_million: Decimal | None = None
    supports_tools: bool = True
    supports_streaming: bool = True
    enabled: bool = True
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


__all__ = ["LLMResponse", "LLMUsage", "ModelInfo", "StreamChunk", "ToolCall"]
