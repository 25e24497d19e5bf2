"""The one place the experiments app talks to the prompt store: render a prompt into chat messages."""

from __future__ import annotations

from typing import Any


def render_messages(
    *,
    name: str,
    variables: dict[str, Any],
    label: str | None = None,
    version: int | None = None,
    stickiness_key: str | None = None,
) -> tuple[list[dict[str, Any]], str, int | None]:
    """(messages, prompt name, resolved version) of prompt `name` rendered with `variables`.

    A text prompt becomes one user message; a chat prompt keeps its messages. A label with a live A/B split
    resolves by `stickiness_key` (experiments pass the item, so a re-run picks the same version)."""
    from prompts.services import render_prompt

    rendered = render_prompt(name, variables, label=label, version=version, stickiness_key=stickiness_key)
    messages = getattr(rendered, "messages", None)
    if not messages:
        text = getattr(rendered, "text", None)
        if text is None:
            text = getattr(rendered, "content", "")
        messages = [{"role": "user", "content": text}]
    resolved = getattr(rendered, "version", None)
    if not isinstance(resolved, int):
        resolved = getattr(resolved, "number", None) or getattr(rendered, "version_number", None) or version
    return [dict(m) for m in messages], getattr(rendered, "name", name) or name, resolved
