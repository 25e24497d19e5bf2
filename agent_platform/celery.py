"""The Celery app. Tasks are autodiscovered from every app's `tasks.py`.

Trace context, request id and caller travel in task headers: `before_task_publish` writes them, `task_prerun`
restores them in the worker, `task_postrun` clears the context. Every task flushes its buffered observer records
(spans, LLM calls) before its result is stored, so whoever sees the result can read its trace.
"""

import os

from celery import Celery, Task, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agent_platform.settings")


class ObservedTask(Task):
    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        finally:
            from agent_platform.observability.hooks import hub

            hub.flush()


app = Celery("agent_platform", task_cls=ObservedTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

_TOKENS_ATTR = "_agent_platform_context_tokens"


@signals.before_task_publish.connect
def _inject_context(headers=None, **_kwargs) -> None:
    from agent_platform.observability.context import inject_headers

    if headers is not None:
        headers.update(inject_headers())


@signals.task_prerun.connect
def _restore_context(task=None, **_kwargs) -> None:
    from agent_platform.observability import context

    request = task.request if task is not None else None
    headers = dict(getattr(request, "headers", None) or {})
    # Celery exposes custom headers both in request.headers and as request attributes, depending on protocol.
    for name in (context.HEADER_TRACEPARENT, context.HEADER_REQUEST_ID, context.HEADER_CALLER):
        if name not in headers and getattr(request, name, None) is not None:
            headers[name] = getattr(request, name)
    if not headers or getattr(request, "is_eager", False):
        return  # eager tasks run inside the caller's context already
    trace, request_id, caller = context.extract_headers(headers)
    tokens = (context.set_trace(trace), context.set_request_id(request_id), context.set_caller(caller))
    setattr(task, _TOKENS_ATTR, tokens)


@signals.task_postrun.connect
def _clear_context(task=None, **_kwargs) -> None:
    from agent_platform.observability import context

    tokens = getattr(task, _TOKENS_ATTR, None)
    if tokens:
        trace_token, request_token, caller_token = tokens
        context.reset_caller(caller_token)
        context.reset_request_id(request_token)
        context.reset_trace(trace_token)
        setattr(task, _TOKENS_ATTR, None)


@signals.task_prerun.connect
@signals.task_postrun.connect
def _close_old_connections(task=None, **_kwargs) -> None:
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


@signals.worker_shutdown.connect
def _flush_on_shutdown(**_kwargs) -> None:
    from agent_platform.observability.hooks import hub

    hub.flush()


@app.task(name="agent_platform.ping")
def ping() -> dict:
    """A task that proves a worker runs: returns what the worker sees of its platform and context."""
    import platform as stdlib_platform

    from agent_platform.observability.context import current_caller, current_request_id, current_trace

    trace = current_trace()
    return {
        "system": stdlib_platform.system(),
        "trace_id": trace.trace_id if trace else None,
        "parent_span_id": trace.span_id if trace else None,
        "request_id": current_request_id(),
        "caller": current_caller().as_dict(),
    }
