"""Rendering a stored or unsaved version with variables, and binding the result to the Caller for LLM spans."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from agent_platform.accounts.types import Actor
from agent_platform.observability.context import Caller, bind_caller
from prompts.models import (
    Prompt,
)
from prompts.sandbox import (
    RenderBudget,
    RenderLimits,
    bind_variables,
    default_limits,
    render_source,
)
from prompts.selectors.access import PromptReaders
from prompts.selectors.fetch import get_prompt, get_prompt_cached
from prompts.selectors.versions import PromptVersion
from prompts.validation import validate_content


@dataclass(frozen=True)
class RenderedPrompt:
    name: str
    version: int
    label: str | None
    template_type: str
    text: str | None
    messages: list[dict[str, str]] | None
    model_endpoint: str
    params: dict[str, Any]
    ab_variant: str | None = None

    def caller_fields(self) -> dict[str, Any]:
        return {"prompt_name": self.name, "prompt_version": self.version, "ab_variant": self.ab_variant}


def render_version(
    prompt_version: PromptVersion, variables: dict[str, Any] | None, *, limits: RenderLimits | None = None
) -> RenderedPrompt:
    """Render one version with `variables` (checked against its schema)."""
    pv = prompt_version.with_compiled()
    context = bind_variables(pv.variables, variables)
    templates = pv.compiled or ()
    budget = RenderBudget(limits or default_limits())
    if pv.template_type == Prompt.TemplateType.CHAT:
        messages = [
            {
                "role": m["role"],
                "content": render_source(
                    m["content"], context, where={"message_index": i}, template=templates[i], budget=budget
                ),
            }
            for i, m in enumerate(pv.messages)
        ]
        text = None
    else:
        text = render_source(pv.text, context, template=templates[0], budget=budget)
        messages = None
    return RenderedPrompt(
        name=pv.name,
        version=pv.version,
        label=pv.label,
        template_type=pv.template_type,
        text=text,
        messages=messages,
        model_endpoint=pv.model_endpoint,
        params=dict(pv.params),
        ab_variant=pv.ab_variant,
    )


def render_prompt(
    name: str,
    variables: dict[str, Any] | None = None,
    *,
    label: str | None = None,
    version: int | None = None,
    stickiness_key: str | None = None,
    user: Actor = None,
    readers: PromptReaders | None = None,
) -> RenderedPrompt:
    """Fetch (cached; default: the production label, else latest) and render. Agents and experiments call this,
    then bind the result to the Caller (`use_prompt`) around their LLM call, so the span records name and version.

    Whoever will see the result must be allowed to read the prompt: the API passes its caller (`user`), an agent
    run or experiment the people it acts for (`readers`); otherwise PROMPT_NOT_FOUND, before anything is rendered
    (so a failed render never names the variables of a prompt the caller may not read)."""
    pv = get_prompt(name=name, version=version, label=label, stickiness_key=stickiness_key, user=user, readers=readers)
    return render_version(pv, variables)


def render_preview(
    *,
    template_type: str,
    text: str = "",
    messages: list[dict[str, str]] | None = None,
    variables_schema: list[dict[str, Any]] | None = None,
    variables: dict[str, Any] | None = None,
    name: str = "preview",
) -> RenderedPrompt:
    """Render unsaved content (admin preview): validated exactly like a save, never stored."""
    content = validate_content(
        template_type=template_type,
        text=text,
        messages=messages,
        variables=variables_schema,
        variables_given=variables_schema is not None,
    )
    pv = PromptVersion(
        name=name,
        version=0,
        template_type=content["template_type"],
        text=content["text"],
        messages=content["messages"],
        variables=content["variables"],
        model_endpoint="",
        params={},
    )
    return render_version(pv, variables)


async def arender_prompt(
    name: str,
    variables: dict[str, Any] | None = None,
    *,
    label: str | None = None,
    version: int | None = None,
    stickiness_key: str | None = None,
    user: Actor = None,
    readers: PromptReaders | None = None,
) -> RenderedPrompt:
    """`render_prompt` for async callers: served straight from the cache when warm; a miss (database) runs in a
    worker thread. With a `user` or `readers` the access check reads the database, so it runs there too. The render
    itself always runs in a worker thread (of the shared pool, not the one thread that serializes database work): it
    may take up to PROMPT_RENDER_TIMEOUT_MS, and the event loop keeps serving other requests meanwhile."""
    from asgiref.sync import sync_to_async

    checked = user is not None or readers is not None
    pv = None if checked else get_prompt_cached(name=name, version=version, label=label, stickiness_key=stickiness_key)
    if pv is None:
        pv = await sync_to_async(get_prompt, thread_sensitive=True)(
            name=name, version=version, label=label, stickiness_key=stickiness_key, user=user, readers=readers
        )
    return await sync_to_async(render_version, thread_sensitive=False)(pv, variables)


@contextmanager
def use_prompt(rendered: RenderedPrompt) -> Iterator[Caller]:
    """Bind the prompt's name, version and A/B variant to the Caller, so every LLM span inside records them:

    rendered = render_prompt("assistant-system", {"user_name": "Ada"})
    with use_prompt(rendered):
        llm.complete(...)
    """
    with bind_caller(**rendered.caller_fields()) as caller:
        yield caller
