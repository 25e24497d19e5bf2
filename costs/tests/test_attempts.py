"""Costs that reconcile: failed attempts recorded and billed only what the vendor bills, a call's (and a run's) cost
equal to its records, insert and budget settlement in one transaction, budgets failing closed, cost per token kind.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection

from agent_platform.api.errors import PlatformError
from agent_platform.observability.context import bind_caller
from agent_platform.observability.hooks import hub
from costs.models import Budget, CostRecord, Price
from costs.services import budget_save, cost_record_build, cost_records_write
from tests.support.fixtures import create_endpoint_for_fake_server
from tests.support.sinks import llm_record

pytestmark = pytest.mark.django_db(transaction=True)
MESSAGES = [{"role": "user", "content": "Hello there, how are you today?"}]


def _fake_price(**fields) -> Price:
    values = {"input_per_million": Decimal("1"), "output_per_million": Decimal("2"), "per_request": Decimal("0.01")}
    values.update(fields)
    return Price.objects.create(
        provider="", model="fake-model", effective_from=datetime(2000, 1, 1, tzinfo=UTC), **values
    )


def _flush() -> None:
    hub.flush()
    from costs.observer import observer

    observer.buffer.wait()


def _records_total(**filters) -> Decimal:
    return sum((r.cost for r in CostRecord.objects.filter(**filters)), Decimal(0))


def _break_budget_updates() -> None:
    """A real database fault: every UPDATE of a budget row fails (as a locked or unreachable database would)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE OR REPLACE FUNCTION costs_test_refuse() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'database is locked'; END; $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER costs_test_refuse BEFORE UPDATE ON costs_budget "
                "FOR EACH ROW EXECUTE FUNCTION costs_test_refuse()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER costs_test_refuse BEFORE UPDATE ON costs_budget "
                "BEGIN SELECT RAISE(ABORT, 'database is locked'); END"
            )


def _mend_budget_updates() -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("DROP TRIGGER IF EXISTS costs_test_refuse ON costs_budget")
        else:
            cursor.execute("DROP TRIGGER IF EXISTS costs_test_refuse")


@pytest.fixture
def fake_endpoint(fake_openai):
    create_endpoint_for_fake_server(fake_openai, name="fake", max_retries=2)
    return fake_openai


# --- failed attempts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["500", "429"])
def test_a_failed_attempt_is_recorded_with_its_error_and_costs_nothing_then_the_retry_is_billed(fake_endpoint, fault):
    from agent_platform.llm.client import complete

    _fake_price()
    fake_endpoint.enqueue(fault=fault)
    response = complete(endpoint="fake", messages=MESSAGES)
    hub.flush()
    failed, ok = CostRecord.objects.order_by("attempt_id")
    assert (failed.status, failed.error_code) == ("error", "LLM_API_ERROR" if fault == "500" else "LLM_RATE_LIMITED")
    assert failed.cost == 0 and failed.request_cost == 0 and failed.call_id == ok.call_id
    assert ok.status == "ok" and ok.error_code == "" and ok.cost > Decimal("0.01")
    assert response.cost == _records_total() == ok.cost
    from traces.models import Trace

    assert Trace.objects.get(trace_id=ok.trace_id).cost == response.cost  # the trace prices attempts alike


def test_a_price_that_bills_failed_requests_charges_the_per_request_price_for_each_failure(fake_endpoint):
    from agent_platform.llm.client import complete

    _fake_price(bills_failed_requests=True)
    fake_endpoint.enqueue(fault="500")
    fake_endpoint.enqueue(fault="500")
    response = complete(endpoint="fake", messages=MESSAGES)
    hub.flush()
    failed = CostRecord.objects.filter(status="error")
    assert failed.count() == 2 and {r.cost for r in failed} == {Decimal("0.01")}
    assert response.cost == _records_total()
    from traces.models import Trace

    assert Trace.objects.get(trace_id=failed[0].trace_id).cost == response.cost


def test_a_call_that_fails_on_every_attempt_is_refused_and_its_records_cost_nothing(fake_endpoint):
    from agent_platform.llm.client import complete

    _fake_price()
    for _ in range(3):
        fake_endpoint.enqueue(fault="503")
    with pytest.raises(PlatformError) as exc:
        complete(endpoint="fake", messages=MESSAGES)
    hub.flush()
    assert exc.value.code == "LLM_API_ERROR"
    assert CostRecord.objects.filter(status="error").count() == 3 and _records_total() == 0


async def test_a_stream_cut_by_the_vendor_is_a_failed_attempt_recorded_unbilled(fake_endpoint):
    from asgiref.sync import sync_to_async

    from agent_platform.llm.client import astream

    await sync_to_async(_fake_price)()
    fake_endpoint.enqueue(content="one two three four five six", fault="drop")
    with pytest.raises(PlatformError):
        async for _chunk in astream(endpoint="fake", messages=MESSAGES):
            pass
    await sync_to_async(_flush)()
    record = await CostRecord.objects.aget()
    assert record.status == "error" and record.error_code and record.cost == 0


def test_a_failed_attempt_with_reported_usage_is_billed_by_its_tokens_only(user):
    _fake_price()
    with bind_caller(user_id=user.pk):
        hub.emit_llm_call(
            llm_record(model="fake-model", provider="openai", status="error", input_tokens=1000, output_tokens=500)
        )
    hub.flush()
    record = CostRecord.objects.get()
    assert record.error_code == "LLM_API_ERROR"
    assert (record.input_cost, record.output_cost, record.request_cost) == (
        Decimal("0.001"),
        Decimal("0.001"),
        Decimal(0),
    )
    assert record.cost == Decimal("0.002")


def test_failed_attempts_are_not_charged_to_budgets_and_count_as_errors_in_rollups(fake_endpoint, user):
    from agent_platform.llm.client import complete
    from costs.services import usage_rollup_build

    _fake_price()
    budget = budget_save(budget=Budget(name="soft", scope="user", scope_id=user.pk, limit=Decimal("10")))
    fake_endpoint.enqueue(fault="500")
    with bind_caller(user_id=user.pk):
        complete(endpoint="fake", messages=MESSAGES)
    hub.flush()
    budget.refresh_from_db()
    assert budget.spent == _records_total() == CostRecord.objects.get(status="ok").cost
    day = CostRecord.objects.first().created_at.astimezone(UTC).date()
    usage_rollup_build(day=day)
    from costs.models import UsageDaily

    row = UsageDaily.objects.get(day=day)
    assert (row.calls, row.errors, row.cost) == (2, 1, budget.spent)


def test_a_run_with_a_failed_attempt_then_a_success_costs_the_sum_of_its_records(fake_endpoint, user):
    from agents.services import agent_create, run_create, run_execute

    _fake_price(bills_failed_requests=True)
    agent = agent_create(
        data={"slug": "helper", "name": "Helper", "model_endpoint": "fake", "system_prompt_text": "Be brief."}
    )
    fake_endpoint.enqueue(fault="500")
    fake_endpoint.enqueue(content="All good.")
    run = run_create(agent=agent, input="Hello", user=user)
    run_execute(run_id=run.id)
    hub.flush()
    run.refresh_from_db()
    records = CostRecord.objects.filter(run_id=str(run.id))
    assert [r.status for r in records.order_by("attempt_id")] == ["error", "ok"]
    assert run.status == "succeeded" and run.cost == _records_total(run_id=str(run.id)) > Decimal("0.02")


# --- one transaction, charged once -------------------------------------------------------------------------------


def test_a_record_written_twice_is_stored_and_charged_once(user):
    budget = budget_save(budget=Budget(name="soft", scope="user", scope_id=user.pk, limit=Decimal("10")))
    with bind_caller(user_id=user.pk):
        record = llm_record()
    assert cost_records_write(records=[cost_record_build(record)]) == 1
    assert cost_records_write(records=[cost_record_build(record)]) == 0
    budget.refresh_from_db()
    assert CostRecord.objects.count() == 1 and budget.spent == CostRecord.objects.get().cost > 0


def test_a_failed_settlement_rolls_the_insert_back_and_the_next_flush_stores_and_charges_once(user):
    budget = budget_save(budget=Budget(name="soft", scope="user", scope_id=user.pk, limit=Decimal("10")))
    with bind_caller(user_id=user.pk):
        hub.emit_llm_call(llm_record())
    _break_budget_updates()
    try:
        hub.flush()  # the write fails: the buffer keeps the record
        assert not CostRecord.objects.exists()
    finally:
        _mend_budget_updates()
    hub.flush()
    budget.refresh_from_db()
    assert CostRecord.objects.count() == 1 and budget.spent == CostRecord.objects.get().cost > 0


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="SQLite serializes writers anyway")
def test_two_concurrent_flushes_of_one_attempt_charge_it_once(user):
    from django.db import close_old_connections

    budget = budget_save(budget=Budget(name="soft", scope="user", scope_id=user.pk, limit=Decimal("10")))
    with bind_caller(user_id=user.pk):
        record = llm_record()
    barrier = threading.Barrier(4)
    inserted: list[int] = []

    def flush() -> None:
        try:
            barrier.wait()
            inserted.append(cost_records_write(records=[cost_record_build(record)]))
        finally:
            close_old_connections()

    threads = [threading.Thread(target=flush) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    budget.refresh_from_db()
    assert sorted(inserted) == [0, 0, 0, 1]
    assert CostRecord.objects.count() == 1 and budget.spent == CostRecord.objects.get().cost


# --- budgets fail closed -------------------------------------------------------------------------------------------


def test_a_budget_check_that_errors_refuses_the_call(user):
    from agent_platform.llm.client import complete

    budget_save(budget=Budget(name="hard", scope="user", scope_id=user.pk, limit=Decimal("10"), enforcement="hard"))
    _break_budget_updates()
    try:
        with bind_caller(user_id=user.pk), pytest.raises(PlatformError) as exc:
            complete(endpoint="mock/demo", messages=MESSAGES)
    finally:
        _mend_budget_updates()
    assert exc.value.code == "BUDGET_CHECK_FAILED" and exc.value.headers.get("Retry-After")
    hub.flush()
    assert not CostRecord.objects.exists()
    with bind_caller(user_id=user.pk):
        assert complete(endpoint="mock/demo", messages=MESSAGES).content  # the database is back: calls go through


async def test_in_an_event_loop_a_budget_check_that_errors_refuses_the_call(user):
    from asgiref.sync import sync_to_async

    from agent_platform.llm.client import acomplete

    await sync_to_async(budget_save)(
        budget=Budget(name="hard", scope="user", scope_id=user.pk, limit=Decimal("10"), enforcement="hard")
    )
    await sync_to_async(_break_budget_updates)()
    try:
        with bind_caller(user_id=user.pk), pytest.raises(PlatformError) as exc:
            await acomplete(endpoint="mock/demo", messages=MESSAGES)
    finally:
        await sync_to_async(_mend_budget_updates)()
    assert exc.value.code == "BUDGET_CHECK_FAILED"


# --- cost per token kind ---------------------------------------------------------------------------------------------


def test_each_record_keeps_its_cost_per_token_kind_and_cache_writes_have_their_own_price(fake_endpoint):
    from agent_platform.llm.client import complete

    _fake_price(
        per_request=Decimal(0),
        cached_input_per_million=Decimal("0.1"),
        cache_write_per_million=Decimal("1.25"),
        reasoning_per_million=Decimal("4"),
    )
    # as litellm reports Anthropic's usage: prompt_tokens counts cache reads and cache writes too
    fake_endpoint.enqueue(
        content="ok",
        usage={
            "prompt_tokens": 1_000_000,
            "completion_tokens": 300_000,
            "prompt_tokens_details": {"cached_tokens": 200_000},
            "cache_creation_input_tokens": 400_000,
            "completion_tokens_details": {"reasoning_tokens": 100_000},
        },
    )
    response = complete(endpoint="fake", messages=MESSAGES)
    hub.flush()
    record = CostRecord.objects.get()
    assert (record.cached_tokens, record.cache_write_tokens, record.reasoning_tokens) == (200_000, 400_000, 100_000)
    assert record.input_cost == Decimal("0.4")  # 400k plain input tokens at 1
    assert record.cached_read_cost == Decimal("0.02")
    assert record.cache_write_cost == Decimal("0.5")
    assert record.output_cost == Decimal("0.4")  # 200k plain output tokens at 2
    assert record.reasoning_cost == Decimal("0.4")
    parts = [record.input_cost, record.output_cost, record.cached_read_cost, record.cache_write_cost]
    assert record.cost == sum(parts) + record.reasoning_cost + record.request_cost == response.cost


def test_the_litellm_import_maps_the_cache_write_price():
    from costs.services import prices_import_litellm

    prices_import_litellm(
        cost_map={
            "claude-x": {
                "litellm_provider": "anthropic",
                "input_cost_per_token": 3e-06,
                "output_cost_per_token": 1.5e-05,
                "cache_creation_input_token_cost": 3.75e-06,
                "cache_read_input_token_cost": 3e-07,
            }
        }
    )
    price = Price.objects.get(model="claude-x")
    assert price.cache_write_per_million == Decimal("3.75") and price.cached_input_per_million == Decimal("0.3")


# --- durable before the task is acknowledged -----------------------------------------------------------------------


async def test_a_task_end_waits_for_cost_records_already_handed_to_the_writer_thread(user):
    from asgiref.sync import sync_to_async

    from costs.observer import observer

    with bind_caller(user_id=user.pk):
        for _ in range(3):
            hub.emit_llm_call(llm_record())
    observer.flush()  # inside the loop: the batch goes to the background writer
    assert not len(observer.buffer)
    await sync_to_async(hub.flush)(settle=True)  # what a task does before its worker acknowledges it
    assert await CostRecord.objects.acount() == 3


@pytest.mark.worker
def test_through_a_worker_a_run_with_a_failed_attempt_is_recorded_and_costed_before_the_task_is_done(
    celery_worker, fake_openai, user
):
    import uuid

    from agents.services import agent_create, run_start

    _fake_price(bills_failed_requests=True)
    name = f"fake-{uuid.uuid4().hex[:8]}"  # a fresh endpoint name: the worker caches endpoints by name
    create_endpoint_for_fake_server(fake_openai, name=name)
    agent = agent_create(data={"slug": "helper", "name": "Helper", "model_endpoint": name, "system_prompt_text": "Hi"})
    fake_openai.enqueue(fault="500")
    fake_openai.enqueue(content="All good.")
    run = run_start(agent=agent, input="Hello", user=user, wait=True, wait_seconds=60)
    assert run.status == "succeeded", (run.status, run.error_code, celery_worker.log())
    celery_worker.wait_idle()  # the task is done (acknowledged): its records must be stored by now
    records = CostRecord.objects.filter(run_id=str(run.id))
    assert records.count() == len(fake_openai.requests) == 2
    assert run.cost == _records_total(run_id=str(run.id)) > Decimal("0.02")


@pytest.fixture
def own_worker(settings):
    """A real worker on this test's own queue (the session's shared worker must not take the task), which the test
    may kill."""
    import uuid

    from agent_platform.celery import app
    from tests.support.worker import CeleryWorker, worker_environment

    if not (settings.USING_POSTGRES and settings.REDIS_URL):
        pytest.skip("needs PostgreSQL (DATABASE_URL) and Redis (REDIS_URL): a real worker shares the test database")
    previous = app.conf.task_default_queue
    queue = f"{previous}-costs-{uuid.uuid4().hex[:6]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = app.conf.task_default_queue = queue
    worker = CeleryWorker(env=worker_environment(CELERY_QUEUE=queue), concurrency=1)
    worker.start()
    yield worker
    worker.stop()
    app.conf.task_default_queue = previous


def _wait_until(predicate, *, what: str, log, timeout: float = 60.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{log()}")


@pytest.mark.worker
def test_a_worker_killed_mid_call_leaves_one_record_per_vendor_request(own_worker, fake_openai, user):
    import uuid

    from agents.services import agent_create, run_start

    _fake_price(bills_failed_requests=True)
    name = f"fake-{uuid.uuid4().hex[:8]}"
    create_endpoint_for_fake_server(fake_openai, name=name, timeout_seconds=120)
    agent = agent_create(data={"slug": "helper", "name": "Helper", "model_endpoint": name, "system_prompt_text": "Hi"})
    fake_openai.enqueue(fault="500")  # the first attempt fails (billed its per-request price)...
    fake_openai.enqueue(fault="hang")  # ...and the worker dies during the retry
    run = run_start(agent=agent, input="Hello", user=user)
    records = CostRecord.objects.filter(run_id=str(run.id))
    _wait_until(lambda: len(fake_openai.requests) == 2, what="the retry to reach the vendor", log=own_worker.log)
    _wait_until(lambda: records.filter(status="error").exists(), what="the failed attempt", log=own_worker.log)
    own_worker.kill()
    assert records.count() == len(fake_openai.requests) == 2
    assert sorted(records.values_list("status", flat=True)) == ["error", "started"]
    assert records.get(status="error").cost == Decimal("0.01")


def _estimate_for(record):
    from agent_platform.observability.hooks import LLMCallEstimate

    return LLMCallEstimate(
        attempt_id=record.attempt_id,
        endpoint=record.endpoint,
        model=record.model,
        provider=record.provider,
        estimated_input_tokens=100,
        max_output_tokens=50,
        caller=record.caller,
        call_id=record.call_id,
        trace_id=record.trace_id,
        span_id=record.span_id,
        started_at=record.started_at,
    )


def test_an_attempt_stored_as_started_is_completed_and_charged_once_when_it_ends(user):
    from costs.services import cost_record_start

    budget = budget_save(budget=Budget(name="soft", scope="user", scope_id=user.pk, limit=Decimal("10")))
    with bind_caller(user_id=user.pk, run_id="run-1"):
        record = llm_record()
    assert cost_record_start(estimate=_estimate_for(record))
    started = CostRecord.objects.get()
    assert (started.status, started.cost, started.run_id, started.user_id) == ("started", 0, "run-1", user.pk)
    assert cost_records_write(records=[cost_record_build(record)]) == 1
    assert cost_records_write(records=[cost_record_build(record)]) == 0  # a second flush: neither stored nor charged
    stored = CostRecord.objects.get()
    budget.refresh_from_db()
    assert stored.pk == started.pk and stored.status == "ok" and stored.cost > 0 and budget.spent == stored.cost


def test_an_attempt_stored_as_started_that_never_reached_the_vendor_leaves_no_record(user):
    from costs.services import cost_record_start

    with bind_caller(user_id=user.pk):
        record = llm_record(billable=False, status="error")
    cost_record_start(estimate=_estimate_for(record))
    hub.emit_llm_call(record)
    hub.flush()
    assert not CostRecord.objects.exists()
