"""The Celery app. Tasks are autodiscovered from every app's `tasks.py`.

Trace context, request id and caller travel in task headers: `before_task_publish` writes them, `task_prerun`
restores them in the worker, `task_postrun` clears the context. Every task flushes its buffered observer records
(spans, LLM calls) before its result is stored, so whoever sees the result can read its trace.

Routes and schedule: the maintenance tasks (the reaper of stale runs, the run dispatch relay, the daily litellm price
sync) go to their own queue, so that a backlog of runs on the default queue cannot starve them; beat schedules them.
A worker consumes both queues (`-Q celery,maintenance`, see `worker_queues`).
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

            hub.flush(settle=True)  # before the worker acknowledges the task: its cost records are stored


app = Celery("agent_platform", task_cls=ObservedTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

REAPER_TASK = "agents.reap_stale_runs"
DISPATCH_RELAY_TASK = "agents.relay_run_dispatch"
PRICE_SYNC_TASK = "costs.import_prices"
# The name of the weekly row costs' migration 0002 put in django_celery_beat's table: the DatabaseScheduler updates a
# row of the same name from this schedule on start, so the daily sync replaces the weekly one instead of doubling it.
PRICE_SYNC_ENTRY = "costs: import prices from litellm"
MAINTENANCE_TASKS = frozenset({REAPER_TASK, DISPATCH_RELAY_TASK, PRICE_SYNC_TASK})


def maintenance_queue_for(default_queue: str, explicit: str = "") -> str:
    """The maintenance queue beside `default_queue`: `maintenance` next to `celery`, else `<default>-maintenance`."""
    if explicit:
        return explicit
    return "maintenance" if default_queue == "celery" else f"{default_queue}-maintenance"


def maintenance_queue() -> str:
    from django.conf import settings

    return maintenance_queue_for(app.conf.task_default_queue, getattr(settings, "CELERY_MAINTENANCE_QUEUE", ""))


def worker_queues() -> str:
    """The queues a worker consumes, as `-Q` takes them: the default queue and the maintenance queue."""
    return f"{app.conf.task_default_queue},{maintenance_queue()}"


def _route(name, args, kwargs, options, task=None, **_kwargs):
    if name in MAINTENANCE_TASKS:
        return {"queue": maintenance_queue()}
    return None


app.conf.task_routes = (_route,)


@app.on_after_configure.connect
def _schedule_maintenance(sender=None, **_kwargs) -> None:
    """Beat: the dispatch relay every ~10 s, the reaper every ~30 s, the litellm price sync daily; a message not
    taken within its interval expires (the next one does its work), so a stopped maintenance worker finds no pile of
    them."""
    from celery.schedules import crontab
    from django.conf import settings

    relay_every = float(getattr(settings, "AGENT_RUN_DISPATCH_RELAY_SECONDS", 10.0))
    reap_every = float(getattr(settings, "AGENT_RUN_REAPER_SECONDS", 30.0))
    sender.conf.beat_schedule = {
        **(sender.conf.beat_schedule or {}),
        "agents-relay-run-dispatch": {
            "task": DISPATCH_RELAY_TASK,
            "schedule": relay_every,
            "options": {"expires": relay_every},
        },
        "agents-reap-stale-runs": {"task": REAPER_TASK, "schedule": reap_every, "options": {"expires": reap_every}},
        PRICE_SYNC_ENTRY: {
            "task": PRICE_SYNC_TASK,
            "schedule": crontab(minute="40", hour="4"),
            "options": {"expires": 23 * 3600},
        },
    }


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


_in_worker = [False]


def in_worker() -> bool:
    """Whether this process runs tasks for a Celery worker (not eager tasks in a web process or a test)."""
    return _in_worker[0]


@signals.worker_process_init.connect  # a prefork pool's child
@signals.worker_init.connect  # the solo and thread pools run tasks in the worker's own process
def _mark_worker(**_kwargs) -> None:
    _in_worker[0] = True


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
