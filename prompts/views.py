"""Dashboard pages: `/dashboard/prompts/` (the store) and `/dashboard/prompts/<name>/` (one prompt's versions)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render

from agent_platform.api.errors import PlatformError
from prompts import selectors


@login_required
def prompt_list(request):
    search = request.GET.get("q", "").strip()
    tag = request.GET.get("tag", "").strip()
    prompts = selectors.prompt_list(user=request.user, search=search or None, tag=tag or None)
    return render(request, "prompts/list.html", {"prompts": prompts, "q": search, "tag": tag})


@login_required
def prompt_detail(request, name: str):
    try:
        prompt = selectors.prompt_by_name(name=name, user=request.user)
    except PlatformError:
        raise Http404("No such prompt") from None
    versions = selectors.list_versions(name=name)
    labels = selectors.label_list(name=name)
    by_version: dict[int, list[str]] = {}
    for label in labels:
        by_version.setdefault(label.version, []).append(label.name)
    diff = None
    if len(versions) > 1:
        diff = selectors.compare_versions(name=name, v1=versions[1].version, v2=versions[0].version)
    # ---------------------------------------------------------------------------------------------------------------
    # TRAFFIC / COST / SCORES PER VERSION: filled in later from the traces and costs apps (their selectors, grouped
    # by the spans' prompt_name + prompt_version). This app must not import them; the integration passes a dict
    # {version: {"calls": int, "cost": Decimal, "score": float}} into `usage_by_version` here.
    usage_by_version: dict[int, dict] = {}
    # ---------------------------------------------------------------------------------------------------------------
    rows = [
        {"v": v, "labels": by_version.get(v.version, []), "usage": usage_by_version.get(v.version)} for v in versions
    ]
    return render(
        request,
        "prompts/detail.html",
        {
            "prompt": prompt,
            "rows": rows,
            "labels": labels,
            "current": versions[0] if versions else None,
            "diff": diff,
            "moves": selectors.label_moves(name=name)[:20],
            "usage_pending": not usage_by_version,
        },
    )
