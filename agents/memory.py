"""Short-term memory: the conversation's messages, trimmed to what fits the model's context window.

Trimming drops the oldest messages first, keeps the system prompt and always keeps the newest message (the user's
input); a tool result is never kept without the assistant message that asked for it.
"""

from __future__ import annotations

import logging
from typing import Any

from agent_platform.llm import client as llm

logger = logging.getLogger("agents.memory")

DEFAULT_CONTEXT_WINDOW = 8192
DEFAULT_OUTPUT_RESERVE = 1024


def context_budget(*, endpoint: str, memory: dict[str, Any], parameters: dict[str, Any]) -> int:
    """Tokens available for the prompt: the window (or the agent's own cap) minus room for the answer."""
    try:
        info = llm.model_info(endpoint=endpoint)
        window = info.context_window or DEFAULT_CONTEXT_WINDOW
        max_output = info.max_output_tokens
    except Exception:  # an unknown endpoint fails later, at the call, with its own code
        window, max_output = DEFAULT_CONTEXT_WINDOW, None
    cap = memory.get("max_context_tokens")
    if isinstance(cap, int) and cap > 0:
        window = min(window, cap)
    reserve = parameters.get("max_tokens") or max_output or DEFAULT_OUTPUT_RESERVE
    reserve = min(int(reserve), window // 4)
    return max(window - reserve, 1)


def _count(endpoint: str, messages: list[dict[str, Any]]) -> int:
    try:
        return llm.count_tokens(endpoint=endpoint, messages=messages)
    except Exception:  # fall back to a conservative estimate rather than failing the run
        return sum(len(str(m.get("content") or "")) // 3 + 4 for m in messages)


def _upper_bound(messages: list[dict[str, Any]]) -> int:
    total = 0
    for message in messages:
        total += 8 + len(str(message.get("content") or "").encode())
        for call in message.get("tool_calls") or ():
            total += len(str(call).encode())
    return total


def trim_messages(
    *, endpoint: str, system: dict[str, Any] | None, messages: list[dict[str, Any]], budget: int
) -> list[dict[str, Any]]:
    """The newest messages that fit `budget` tokens together with `system` (not included in the result)."""
    if not messages:
        return []
    # A token covers at least one byte of UTF-8 for byte-level tokenizers (BPE, SentencePiece with byte fallback):
    # when the bytes (plus a per-message allowance) fit, everything fits and no tokenizer needs to run.
    if _upper_bound([system, *messages] if system else messages) <= budget:
        return messages
    fixed = _count(endpoint, [system]) if system else 0
    sizes = [_count(endpoint, [m]) for m in messages]
    total = fixed + sum(sizes)
    start = 0
    while total > budget and start < len(messages) - 1:
        total -= sizes[start]
        start += 1
    # never begin with tool results whose assistant message was dropped
    while start < len(messages) - 1 and messages[start].get("role") == "tool":
        start += 1
    if start:
        logger.info("trimmed %d of %d messages to fit %d tokens", start, len(messages), budget)
    return messages[start:]
