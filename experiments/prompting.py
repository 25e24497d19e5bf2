"""The one place the experiments app talks to the prompt store: render a prompt into chat messages, as the people
an experiment acts for."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prompts.selectors import PromptReaders


def experiment_readers(*, owner_id: int | None, team_id: int | None) -> PromptReaders:
    """Who sees what an experiment renders: its owner and its team (its results are shown to both). Each must be
    allowed to read a prompt the experiment uses; with neither, shared prompts only."""
    from prompts.selectors import PromptReaders

    return PromptReaders.of(user_ids=(owner_id,), team_ids=(team_id,))


def caller_readers() -> PromptReaders:
    """The readers of the current Caller (user and team the work is attributed to): an LLM judge renders its rubric
    prompt as the experiment run (or live report) it grades for. Nothing bound: shared prompts only."""
    from agent_platform.observability.context import current_caller

    caller = current_caller()
    return experiment_readers(owner_id=caller.user_id, team_id=caller.team_id)


def prompt_check_readable(*, name: str, readers: PromptReaders) -> None:
    """PROMPT_NOT_FOUND (as for a prompt that does not exist) unless every one of `readers` may read `name`."""
    from prompts.selectors import prompt_require_readable

    prompt_require_readable(name=name, readers=readers)


def render_messages(
    *,
    name: str,
    variables: dict[str, Any],
    readers: PromptReaders,
    label: str | None = None,
    version: int | None = None,
    stickiness_key: str | None = None,
) -> tuple[list[dict[str, Any]], str, int | None]:
    """(messages, prompt name, resolved version) of prompt `name` rendered with `variables`.

    `readers` (required: there is no "render as the platform" here) must all be allowed to read the prompt, else
    PROMPT_NOT_FOUND before anything renders — a failed item never shows another team's prompt or its variables.
    A text prompt becomes one user message; a chat prompt keeps its messages. A label with a live A/B split
    resolves by `stickiness_key` (experiments pass the item, so a re-run picks the same version)."""
    from prompts.selectors import render_prompt

    rendered = render_prompt(
        name, variables, label=label, version=version, stickiness_key=stickiness_key, readers=readers
    )
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
