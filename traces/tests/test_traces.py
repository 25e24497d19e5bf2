from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from agent_platform.observability.context import bind_caller
from agent_platform.observability.hooks import SpanKind, hub
from agent_platform.observability.spans import start_span
from tests.support.sinks import llm_record
from traces.models import Span, Trace
from traces.observer import observer

pytestmark = pytest.mark.django_db


def run_agent_with_tool(user_id: int | None = None, agent_id: int = 3, fail_tool: bool = False) -> str:
    """What the orchestrator does: an agent-run span, an LLM call in it, a tool span with a nested LLM call."""
    with (
        bind_caller(user_id=user_id, agent_id=agent_id, agent_slug="helper", run_id="run-1"),
        start_span(kind=SpanKind.AGENT_RUN, name="run helper", input={"q": "2+2"}) as run,
    ):
        hub.emit_llm_call(llm_record(input_tokens=1000, output_tokens=200))
        try:
            with start_span(kind=SpanKind.TOOL, name="tool calculator", input={"expression": "2+2"}) as tool:
                hub.emit_llm_call(llm_record(input_tokens=10, output_tokens=5))
                if fail_tool:
                    raise RuntimeError("calculator exploded")
                tool.set_output({"result": 4})
        except RuntimeError:
            pass
        run.set_output({"answer": "4"})
    return run.trace_id


def test_run_becomes_one_trace_with_nested_llm_and_tool_spans(user):
    trace_id = run_agent_with_tool(user_id=user.pk)
    assert Span.objects.count() == 0, "nothing is written on the hot path"
    hub.flush()

    trace = Trace.objects.get(trace_id=trace_id)
    stored = list(Span.objects.filter(trace_id=trace_id))
    assert len(stored) == 4
    run = next(s for s in stored if s.kind == SpanKind.AGENT_RUN)
    tool = next(s for s in stored if s.kind == SpanKind.TOOL)
    llms = sorted((s for s in stored if s.kind == SpanKind.LLM), key=lambda s: s.input_tokens)
    assert run.parent_span_id is None
    assert tool.parent_span_id == run.span_id
    assert llms[1].parent_span_id == run.span_id  # the agent's own call
    assert llms[0].parent_span_id == tool.span_id  # the call made inside the tool
    assert tool.output == {"result": 4} and run.input == {"q": "2+2"}
    assert llms[1].input == [{"role": "user", "content": "What is 2+2?"}]
    assert llms[1].output["content"] == "4"
    # the demo price of the mock provider: 0.50 / 1.50 per million
    assert llms[1].cost == Decimal("0.0008")
    assert trace.name == "run helper"
    assert trace.user_id == user.pk and trace.agent_id == 3 and trace.agent_slug == "helper"
    assert trace.span_count == 4 and trace.llm_call_count == 2
    assert trace.input_tokens == 1010 and trace.output_tokens == 205
    assert trace.cost == llms[0].cost + llms[1].cost
    assert trace.status == "ok"


def test_without_a_pricer_llm_spans_are_stored_unpriced(monkeypatch):
    monkeypatch.setattr(hub, "pricer", hub.pricer)  # restored after the test
    hub.set_pricer(None)  # e.g. a deployment without the costs app
    with start_span(kind=SpanKind.AGENT_RUN, name="run") as run:
        hub.emit_llm_call(llm_record())
    hub.flush()
    llm = Span.objects.get(trace_id=run.trace_id, kind=SpanKind.LLM)
    assert llm.cost is None and llm.input_tokens == 100
    assert Trace.objects.get(trace_id=run.trace_id).cost == 0


def test_failed_tool_marks_span_and_trace_totals_count_errors(user):
    trace_id = run_agent_with_tool(user_id=user.pk, fail_tool=True)
    hub.flush()
    tool = Span.objects.get(trace_id=trace_id, kind=SpanKind.TOOL)
    assert tool.status == "error" and tool.error_code == "INTERNAL_ERROR"
    assert "calculator exploded" in tool.error_message
    trace = Trace.objects.get(trace_id=trace_id)
    assert trace.error_count == 1
    assert trace.status == "ok"  # the run itself recovered


def test_spans_flushed_in_two_batches_update_the_same_trace(user):
    with start_span(kind=SpanKind.WORKFLOW_STEP, name="outer") as outer:
        with start_span(kind=SpanKind.CUSTOM, name="first"):
            pass
        hub.flush()  # e.g. the buffer filled up mid-run
        assert Trace.objects.get(trace_id=outer.trace_id).span_count == 1
        with start_span(kind=SpanKind.CUSTOM, name="second"):
            pass
    hub.flush()
    trace = Trace.objects.get(trace_id=outer.trace_id)
    assert trace.span_count == 3 and trace.name == "outer"


def test_full_buffer_flushes_itself():
    observer.buffer.max_items = 5
    try:
        for i in range(12):
            with start_span(kind=SpanKind.CUSTOM, name=f"s{i}"):
                pass
        assert Span.objects.count() == 10
        assert len(observer.buffer) == 2
    finally:
        observer.buffer.max_items = 1000
    hub.flush()
    assert Span.objects.count() == 12


def test_failed_write_keeps_items_and_the_buffer_stays_bounded(monkeypatch):
    from agent_platform.observability.buffer import BatchBuffer

    written = []

    def broken(items):
        raise RuntimeError("database down")

    buffer = BatchBuffer("t", broken, max_items=1000, hard_cap=5)
    for i in range(3):
        buffer.add(i)
    buffer.flush()
    assert len(buffer) == 3  # kept for the next flush
    for i in range(3, 8):
        buffer.add(i)
    buffer.flush()
    assert len(buffer) == 5 and buffer.dropped == 3
    buffer.writer = written.extend
    buffer.flush()
    assert written == [3, 4, 5, 6, 7]


@pytest.mark.django_db(transaction=True)
async def test_flush_inside_an_event_loop_writes_in_a_background_thread():
    from asgiref.sync import sync_to_async

    with start_span(kind=SpanKind.AGENT_RUN, name="async run") as run:
        await asyncio.sleep(0)
    hub.flush()  # must not touch the ORM in this (event-loop) thread
    await sync_to_async(observer.buffer.wait)()
    from costs.observer import observer as cost_observer

    await sync_to_async(cost_observer.buffer.wait)()
    assert await Span.objects.filter(trace_id=run.trace_id).acount() == 1
    assert (await Trace.objects.aget(trace_id=run.trace_id)).name == "async run"


def test_unserializable_input_is_stored_as_text():
    class Thing:
        def __str__(self):
            return "a thing"

    with start_span(kind=SpanKind.CUSTOM, name="odd", input={"obj": Thing()}) as span:
        pass
    hub.flush()
    assert Span.objects.get(span_id=span.span_id).input == {"obj": "a thing"}


def test_retention_deletes_old_traces_in_batches(settings):
    from traces.services import spans_write, traces_purge

    old = datetime.now(UTC) - timedelta(days=40)
    new = datetime.now(UTC) - timedelta(days=1)
    spans = []
    for i, start in enumerate([old] * 5 + [new] * 2):
        spans.append(
            Span(
                span_id=f"{i:016x}",
                trace_id=f"{i:032x}",
                kind="custom",
                name="x",
                start_time=start,
                end_time=start + timedelta(seconds=1),
            )
        )
    spans_write(spans=spans)
    settings.TRACE_RETENTION_DAYS = 30
    assert traces_purge(batch_size=2) == 5
    assert Trace.objects.count() == 2 and Span.objects.count() == 2


def test_retention_is_scheduled_by_beat():
    import importlib

    from django.apps import apps
    from django_celery_beat.models import PeriodicTask

    # the data migration ran for the test database; run it again (tables may have been flushed by a
    # transactional test) to prove it is idempotent
    migration = importlib.import_module("traces.migrations.0002_retention_schedule")
    migration.create_schedule(apps, None)
    migration.create_schedule(apps, None)
    task = PeriodicTask.objects.get(task="traces.purge_expired")
    assert task.enabled and task.crontab is not None


def test_purge_task_runs():
    from traces.tasks import purge_expired

    assert purge_expired.apply(kwargs={"older_than_days": 30}).get() == {"deleted_traces": 0}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_span_in_request_and_span_in_real_celery_task_share_one_trace(celery_worker, user):
    """A span opened in the web process and a span opened by a task in a real worker process end up in one
    trace, the task's span a child of the span that sent it. The worker stores its spans before the task's result,
    so whoever has the result can read the trace."""
    from traces.tasks import purge_expired

    with bind_caller(user_id=user.pk), start_span(kind=SpanKind.WORKFLOW_STEP, name="request span") as parent:
        result = purge_expired.delay(older_than_days=3650)
        assert result.get(timeout=30) == {"deleted_traces": 0}
        child = Span.objects.filter(trace_id=parent.trace_id, name="traces.purge_expired").first()
    hub.flush()
    assert child is not None, celery_worker.log()
    assert child.parent_span_id == parent.span_id
    assert child.user_id == user.pk
    trace = Trace.objects.get(trace_id=parent.trace_id)
    assert trace.span_count == 2 and trace.name == "request span"


def test_credentials_in_call_parameters_never_reach_a_span():
    record = llm_record()
    record.parameters = {"temperature": 0.2, "api_key": "sk-live-123", "Authorization": "Bearer x", "max_tokens": 9}
    hub.emit_llm_call(record)
    hub.flush()
    stored = Span.objects.get(span_id=record.span_id)
    assert stored.attributes["parameters"] == {"temperature": 0.2, "max_tokens": 9}
    assert "sk-live-123" not in str(stored.attributes)


def test_drain_at_exit_writes_what_is_buffered():
    with start_span(kind=SpanKind.CUSTOM, name="last words") as span:
        pass
    assert len(observer.buffer) == 1
    observer.drain()  # registered with atexit in TracesConfig.ready()
    assert Span.objects.filter(span_id=span.span_id).exists()


@pytest.mark.django_db(transaction=True)
def test_a_periodic_flusher_writes_what_nobody_flushed():
    import time

    from agent_platform.observability.buffer import BatchBuffer

    written: list = []
    buffer = BatchBuffer("t", written.extend, max_items=1000)
    buffer.flush_seconds = 0.05
    buffer.add("a")
    buffer.add("b")
    deadline = time.monotonic() + 5
    while not written and time.monotonic() < deadline:
        time.sleep(0.02)
    assert written == ["a", "b"] and len(buffer) == 0
