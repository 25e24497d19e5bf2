"""Dashboard pages: the trace list (filters, paginated) and a trace's waterfall."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import render

from agent_platform.api.errors import PlatformError
from traces import selectors
from traces.models import Trace
from traces.queries import TraceFilterSerializer


@login_required
def trace_list(request):
    filters = TraceFilterSerializer(data={k: v for k, v in request.GET.items() if v and k != "page"})
    errors = {}
    data = {}
    if filters.is_valid():
        data = filters.validated_data
    else:
        errors = {k: " ".join(str(m) for m in v) for k, v in filters.errors.items()}
    qs = selectors.trace_list(
        user=request.user,
        user_id=data.get("user") if request.user.is_staff else None,
        agent=data.get("agent"),
        model=data.get("model"),
        status=data.get("status"),
        since=data.get("since"),
        until=data.get("until"),
        name=data.get("name"),
    )
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "traces/list.html",
        {
            "page": page,
            "filters": request.GET,
            "errors": errors,
            "statuses": Trace.Status.values,
            "query": query.urlencode(),
        },
    )


@login_required
def trace_detail(request, trace_id: str):
    try:
        tree = selectors.trace_tree(user=request.user, trace_id=trace_id)
    except PlatformError as exc:
        raise Http404(exc.message) from exc
    for node in tree.flat:
        span = node.span
        node.input_json = _pretty(span.input)
        node.output_json = _pretty(span.output)
        node.attributes_json = _pretty(span.attributes) if span.attributes else ""
    return render(request, "traces/detail.html", {"tree": tree, "trace": tree.trace})


def _pretty(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
