"""Server-rendered pages: the agents list and the chat page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import render

from agent_platform.api.errors import PlatformError
from agents import selectors
from agents.rendering import render_markdown


@login_required
def agent_list(request):
    category = request.GET.get("category") or ""
    search = request.GET.get("q") or ""
    qs = selectors.agent_catalog(user=request.user, category=category or None, search=search or None)
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "agents/list.html",
        {
            "page": page,
            "category": category,
            "search": search,
            "categories": selectors.agent_categories(user=request.user),
        },
    )


@login_required
def chat(request, agent_slug: str):
    try:
        agent = selectors.agent_get(slug=agent_slug, user=request.user)
    except PlatformError:
        raise Http404("No such agent") from None
    conversation = None
    if request.GET.get("c"):
        try:
            conversation = selectors.conversation_get(conversation_id=request.GET["c"], user=request.user)
        except PlatformError:
            raise Http404("No such conversation") from None
        if conversation.agent_id != agent.id:
            raise Http404("No such conversation")
    elif not request.GET.get("new"):
        conversation = selectors.conversation_latest(user=request.user, agent=agent)
    history = []
    if conversation is not None:
        for message in selectors.conversation_messages(conversation=conversation):
            history.append(
                {
                    "role": message.role,
                    "content": message.content,
                    "html": render_markdown(message.content) if message.role == "assistant" else "",
                    "run": message.run,
                }
            )
    return render(
        request,
        "agents/chat.html",
        {"agent": agent, "conversation": conversation, "history": history},
    )
