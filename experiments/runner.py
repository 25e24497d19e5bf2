"""Execute an experiment: every pending (variant, item) pair through the normal LLM layer, at most `concurrency`
in flight, then the evaluators; results stored as they finish.

Shape: one run = one Celery task (`experiments.tasks.run_experiment`) holding a run token (on the embedded default:
a background thread, `services.lifecycle`). It drives an asyncio loop through `async_to_sync`, so every
database call goes back to the task's own thread and connection:

- a feeder claims pending rows in batches with a conditional update (`results_claim`) ahead of the workers and
  renders each row's prompt through the prompt store (a split label resolves per item, deterministically);
- `concurrency` workers call `agent_platform.llm.client.acomplete` (bounded also per endpoint per process by
  `EXPERIMENTS_ENDPOINT_CONCURRENCY`), each call inside `bind_caller(user_id=<owner>, team_id=..., experiment_id=...,
  experiment_item_id=<result id>, prompt_name=..., prompt_version=..., ab_variant=<variant>)` (so it is traced,
  priced and budgeted like any call) in a trace of its own, then run the evaluators;
- a writer stores finished rows as soon as they finish (group commit: while one write runs the next batch
  gathers), beats the heartbeat every `HEARTBEAT_SECONDS` and notices a cancel or a newer start;
- the observers' buffers (traces, costs) are flushed every `HUB_FLUSH_SECONDS` from a thread of their own.

A finished row is never claimed again, so a resumed run (after a worker died: `experiment_start` once the heartbeat
is stale, or the `experiments.resume_stale` beat task) executes only what was not stored — at most the calls in
flight when the worker died. `BUDGET_EXCEEDED` from a call stops the run cleanly: in-flight calls finish and are
stored, unstarted rows stay pending, the experiment becomes `stopped_budget`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync, sync_to_async

from agent_platform.api.errors import PlatformError
from experiments import services
from experiments.evaluators import ConfiguredEvaluator, EvaluationInput, arun_evaluator, build_evaluators
from experiments.models import Experiment, ExperimentResult, ExperimentStatus, ResultStatus
from experiments.prompting import experiment_readers

if TYPE_CHECKING:
    from prompts.selectors import PromptReaders

logger = logging.getLogger("experiments.runner")

HEARTBEAT_SECONDS = 0.25
HUB_FLUSH_SECONDS = 2.0


def endpoint_concurrency() -> int:
    from django.conf import settings

    return settings.EXPERIMENTS_ENDPOINT_CONCURRENCY


class EndpointLimiter:
    """At most `limit` calls in flight per endpoint in this process, across every run and event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    async def acquire(self, endpoint: str, limit: int) -> None:
        delay = 0.001
        while True:
            with self._lock:
                if self._counts.get(endpoint, 0) < limit:
                    self._counts[endpoint] = self._counts.get(endpoint, 0) + 1
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def release(self, endpoint: str) -> None:
        with self._lock:
            self._counts[endpoint] = max(0, self._counts.get(endpoint, 0) - 1)

    def in_flight(self, endpoint: str) -> int:
        return self._counts.get(endpoint, 0)


endpoint_limiter = EndpointLimiter()


@dataclass
class VariantPlan:
    id: int
    name: str
    endpoint: str
    params: dict[str, Any]
    prompt_name: str
    prompt_version: int | None
    prompt_label: str


@dataclass
class Job:
    result_id: int
    variant: VariantPlan
    item_position: int
    item_input: Any
    expected: Any
    messages: list[dict[str, Any]] | None = None
    prompt_version: int | None = None
    error_code: str = ""
    error_message: str = ""


@dataclass
class RunState:
    stop_reason: str | None = None  # "cancelled" | "budget" | "superseded"
    stop_message: str = ""
    finished: list[dict[str, Any]] = field(default_factory=list)
    unrun: list[int] = field(default_factory=list)
    stored: int = 0


def _load_variants(experiment: Experiment) -> dict[int, VariantPlan]:
    return {
        v.id: VariantPlan(
            id=v.id,
            name=v.name,
            endpoint=v.endpoint,
            params=dict(v.params or {}),
            prompt_name=v.prompt_name,
            prompt_version=v.prompt_version,
            prompt_label=v.prompt_label,
        )
        for v in experiment.variants.all()
    }


def _flush_hub() -> None:
    from agent_platform.observability.hooks import hub

    hub.flush()


def _flush_hub_and_close() -> None:
    from django.db import connection

    try:
        _flush_hub()
    finally:
        connection.close()


def _separate_flush_thread() -> bool:
    """Observers may flush from another thread (another connection) except on an in-memory SQLite database (tests),
    where a second connection cannot see uncommitted rows and tables lock without waiting."""
    from django.db import connection

    return not (connection.vendor == "sqlite" and connection.is_in_memory_db())


class _NoSpan:
    trace_id = ""

    def set_error(self, **_kwargs: Any) -> None:
        return None

    def set_output(self, _output: Any) -> None:
        return None


@contextmanager
def _no_span() -> Iterator[_NoSpan]:
    yield _NoSpan()


def build_messages(
    variant: VariantPlan, item_input: Any, item_messages: Any, *, readers: PromptReaders, item_key: str | None = None
) -> tuple[list[dict], int | None]:
    """The messages a variant sends for an item: its prompt rendered with the item's variables (read as `readers`,
    the experiment's owner and team), then the item's own chat messages. Raises PlatformError (PROMPT_*) when the
    prompt does not render."""
    messages: list[dict[str, Any]] = []
    version = variant.prompt_version
    if variant.prompt_name:
        from experiments.prompting import render_messages

        rendered, _name, version = render_messages(
            name=variant.prompt_name,
            variables=item_input if isinstance(item_input, dict) else {},
            label=variant.prompt_label or None,
            version=variant.prompt_version,
            stickiness_key=item_key,
            readers=readers,
        )
        messages.extend(rendered)
    if item_messages:
        messages.extend(dict(m) for m in item_messages)
    if not messages:
        raise PlatformError(
            "the variant has no prompt and the item has no messages", code="VALIDATION_ERROR", field="prompt_name"
        )
    return messages, version


class Runner:
    def __init__(self, *, experiment: Experiment, run_token: str) -> None:
        self.experiment_id = experiment.pk
        self.experiment_name = experiment.name
        self.run_token = run_token
        self.owner_id = experiment.owner_id
        self.team_id = experiment.team_id
        self.prompt_readers = experiment_readers(owner_id=self.owner_id, team_id=self.team_id)
        self.concurrency = max(1, int(experiment.concurrency))
        self.variants = _load_variants(experiment)
        self.evaluators: list[ConfiguredEvaluator] = build_evaluators(experiment.evaluators)
        self.state = RunState()
        self._new_result = asyncio.Event()
        self.endpoint_limit = endpoint_concurrency()
        self.judged = any(c.evaluator.uses_llm for c in self.evaluators)

    def endpoint_names(self) -> set[str]:
        """The model endpoints this run calls: its variants' and its LLM judges'."""
        names = {v.endpoint for v in self.variants.values()}
        names.update(str(c.evaluator.config.get("endpoint") or "") for c in self.evaluators if c.evaluator.uses_llm)
        return names - {""}

    # --- database side (runs in the task's thread) ---------------------------------------------------------

    def _claim_jobs(self, limit: int) -> list[Job]:
        ids = services.results_claim(experiment_id=self.experiment_id, run_token=self.run_token, limit=limit)
        if not ids:
            return []
        rows = ExperimentResult.objects.filter(id__in=ids).select_related("item").order_by("id")
        jobs = []
        for row in rows:
            variant = self.variants[row.variant_id]
            job = Job(
                result_id=row.id,
                variant=variant,
                item_position=row.item.position,
                item_input=row.item.input,
                expected=row.item.expected,
            )
            try:
                job.messages, job.prompt_version = build_messages(
                    variant,
                    row.item.input,
                    row.item.messages,
                    readers=self.prompt_readers,
                    item_key=f"item:{row.item_id}",
                )
            except PlatformError as exc:
                job.error_code, job.error_message = exc.code, exc.message
            jobs.append(job)
        return jobs

    def _store(self, finished: list[dict[str, Any]], *, beat: bool, flush_hub: bool) -> str | None:
        if finished:
            self.state.stored += services.results_store(run_token=self.run_token, finished=finished)
        status = None
        if beat:
            status = services.experiment_heartbeat(experiment_id=self.experiment_id, run_token=self.run_token)
        if flush_hub:
            _flush_hub()
        return status

    # --- async side ----------------------------------------------------------------------------------------------

    async def arun(self) -> RunState:
        queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=max(self.concurrency * 4, 64))
        workers = [asyncio.create_task(self._worker(queue)) for _ in range(self.concurrency)]
        writer_done = asyncio.Event()
        writer = asyncio.create_task(self._writer(writer_done))
        flusher = asyncio.create_task(self._hub_flusher(writer_done)) if _separate_flush_thread() else None
        try:
            await self._feed(queue)
        finally:
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers, return_exceptions=True)
            writer_done.set()
            await writer
            if flusher is not None:
                await flusher
        return self.state

    async def _hub_flusher(self, done: asyncio.Event) -> None:
        """Write the observers' buffered spans and cost records every HUB_FLUSH_SECONDS from a thread of its own,
        so the claims and result writes on the run's thread never wait behind them."""
        flush = sync_to_async(_flush_hub_and_close, thread_sensitive=False)
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=HUB_FLUSH_SECONDS)
            if not done.is_set():
                await flush()

    async def _feed(self, queue: asyncio.Queue) -> None:
        claim = sync_to_async(self._claim_jobs, thread_sensitive=True)
        batch = max(self.concurrency * 2, 32)  # the queue holds twice that: claims run ahead of the workers
        while self.state.stop_reason is None:
            jobs = await claim(batch)
            if not jobs:
                return
            for index, job in enumerate(jobs):
                if self.state.stop_reason is not None:
                    self.state.unrun.extend(j.result_id for j in jobs[index:])
                    return
                await queue.put(job)

    async def _writer(self, done: asyncio.Event) -> None:
        """Group commit: store whatever has finished as soon as anything has (while one store runs, the next batch
        gathers), so a result is durable milliseconds after its call returns and a killed worker loses (and a
        resumed run repeats) almost nothing; beat the heartbeat and check for a cancel every HEARTBEAT_SECONDS."""
        store = sync_to_async(self._store, thread_sensitive=True)
        last_hub_flush = last_beat = time.monotonic()
        while True:
            final = done.is_set()
            if not final and not self.state.finished:
                waiter = asyncio.ensure_future(self._new_result.wait())
                stopper = asyncio.ensure_future(done.wait())
                await asyncio.wait({waiter, stopper}, timeout=HEARTBEAT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                final = done.is_set()
            self._new_result.clear()
            batch, self.state.finished = self.state.finished, []
            now = time.monotonic()
            beat = final or now - last_beat >= HEARTBEAT_SECONDS
            # the final flush runs here; periodic ones too unless _hub_flusher does them from its own thread
            flush_hub = final or (not _separate_flush_thread() and now - last_hub_flush >= HUB_FLUSH_SECONDS)
            if batch or beat or flush_hub:
                status = await store(batch, beat=beat, flush_hub=flush_hub)
                if beat:
                    last_beat = now
                    if status != ExperimentStatus.RUNNING and self.state.stop_reason is None:
                        self.state.stop_reason = "cancelled" if status == ExperimentStatus.CANCELLED else "superseded"
                if flush_hub:
                    last_hub_flush = now
            if final:
                return

    async def _worker(self, queue: asyncio.Queue) -> None:
        while True:
            job = await queue.get()
            if job is None:
                return
            if self.state.stop_reason is not None:
                self.state.unrun.append(job.result_id)
                continue
            try:
                outcome = await self._execute(job)
            except Exception as exc:  # never lose a row to a bug: record it as failed
                logger.exception("experiment %s: result %s failed unexpectedly", self.experiment_id, job.result_id)
                outcome = self._failed(job, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")
            if outcome is None:
                self.state.unrun.append(job.result_id)
            else:
                self.state.finished.append(outcome)
                self._new_result.set()

    def _failed(self, job: Job, code: str, message: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": job.result_id,
            "status": ResultStatus.FAILED,
            "output": "",
            "error_code": code,
            "error_message": message[:2000],
            "scores": {},
            "prompt_version": job.prompt_version,
            **extra,
        }

    def _stop_for_budget(self, exc: PlatformError) -> None:
        if self.state.stop_reason is None:
            self.state.stop_reason = "budget"
            self.state.stop_message = exc.message

    async def _execute(self, job: Job) -> dict[str, Any] | None:
        from agent_platform.llm.client import acomplete
        from agent_platform.observability.context import bind_caller, use_trace
        from agent_platform.observability.hooks import SpanKind
        from agent_platform.observability.spans import start_span

        if job.error_code:
            return self._failed(job, job.error_code, job.error_message)
        variant = job.variant
        caller = {
            "user_id": self.owner_id,  # budgets of the experiment's owner and team apply to its calls
            "team_id": self.team_id,
            "experiment_id": self.experiment_id,
            "experiment_item_id": job.result_id,
            "prompt_name": variant.prompt_name or None,
            "prompt_version": job.prompt_version,
            "ab_variant": variant.name,
        }
        await endpoint_limiter.acquire(variant.endpoint, self.endpoint_limit)
        try:
            # One trace per execution. With an LLM judge, a parent span groups the call and the judge's call;
            # otherwise the LLM call's own span is the trace (attributed through the Caller), one span fewer.
            span_cm = (
                start_span(
                    kind=SpanKind.WORKFLOW_STEP,
                    name=f"experiment {self.experiment_name}: {variant.name} #{job.item_position}",
                    attributes={
                        "experiment_id": self.experiment_id,
                        "result_id": job.result_id,
                        "variant": variant.name,
                        "item_position": job.item_position,
                    },
                )
                if self.judged
                else _no_span()
            )
            with bind_caller(**caller), use_trace(None), span_cm as span:
                started = time.perf_counter()
                try:
                    response = await acomplete(endpoint=variant.endpoint, messages=job.messages, params=variant.params)
                except PlatformError as exc:
                    if exc.code == "BUDGET_EXCEEDED":
                        self._stop_for_budget(exc)
                        span.set_error(code=exc.code, message=exc.message, status="cancelled")
                        return None
                    span.set_error(code=exc.code, message=exc.message)
                    return self._failed(
                        job,
                        exc.code,
                        exc.message,
                        latency_ms=(time.perf_counter() - started) * 1000,
                        trace_id=span.trace_id,
                    )
                span.set_output(response.content)
                data = EvaluationInput(
                    output=response.content or "",
                    expected=job.expected,
                    input=job.item_input,
                    latency_ms=response.latency_ms,
                    cost=response.cost,
                    tokens=response.usage.total_tokens,
                    metadata={"variant": variant.name, "endpoint": response.endpoint},
                )
                scores: dict[str, Any] = {}
                for configured in self.evaluators:
                    try:
                        scores[configured.key] = await arun_evaluator(configured, data)
                    except PlatformError as exc:  # a budget refusal of a judge call: keep the paid output
                        self._stop_for_budget(exc)
                        scores[configured.key] = {
                            "score": None,
                            "passed": False,
                            "reason": exc.message,
                            "error_code": exc.code,
                        }
                return {
                    "id": job.result_id,
                    "status": ResultStatus.COMPLETED,
                    "output": response.content or "",
                    "latency_ms": float(response.latency_ms),
                    "input_tokens": int(response.usage.input_tokens),
                    "output_tokens": int(response.usage.output_tokens),
                    "cost": None if response.cost is None else Decimal(str(response.cost)),
                    "error_code": "",
                    "error_message": "",
                    "scores": scores,
                    "prompt_version": job.prompt_version,
                    "trace_id": (response.trace_id or span.trace_id or "")[:32],
                    "span_id": (response.span_id or "")[:16],
                    "call_id": (response.call_id or "")[:64],
                }
        finally:
            endpoint_limiter.release(variant.endpoint)


def run_experiment(*, experiment_id: int, run_token: str) -> str:
    """Run (or resume) an experiment for this run token; returns the final status (or "skipped" when the token
    is no longer current: cancelled before it began, or superseded by a newer start)."""
    if not services.experiment_mark_running(experiment_id=experiment_id, run_token=run_token):
        return "skipped"
    from agent_platform.llm.client import provider_libraries_load

    experiment = Experiment.objects.get(pk=experiment_id)
    try:
        runner = Runner(experiment=experiment, run_token=run_token)
        provider_libraries_load(endpoints=runner.endpoint_names())  # not within a call's timeout, nor on the loop
        state = async_to_sync(runner.arun)()
    except Exception as exc:
        logger.exception("experiment %s failed", experiment_id)
        code = exc.code if isinstance(exc, PlatformError) else "INTERNAL_ERROR"
        message = exc.message if isinstance(exc, PlatformError) else f"{type(exc).__name__}: {exc}"
        services.results_release(
            result_ids=list(
                ExperimentResult.objects.filter(
                    experiment_id=experiment_id, claim_token=run_token, status=ResultStatus.RUNNING
                ).values_list("id", flat=True)
            ),
            run_token=run_token,
        )
        services.experiment_finish(
            experiment_id=experiment_id,
            run_token=run_token,
            status=ExperimentStatus.FAILED,
            error_code=code,
            error_message=message,
        )
        return ExperimentStatus.FAILED
    services.results_release(result_ids=state.unrun, run_token=run_token)
    if state.stop_reason == "budget":
        services.experiment_finish(
            experiment_id=experiment_id,
            run_token=run_token,
            status=ExperimentStatus.STOPPED_BUDGET,
            error_code="BUDGET_EXCEEDED",
            error_message=state.stop_message,
        )
        return ExperimentStatus.STOPPED_BUDGET
    if state.stop_reason is not None:
        return Experiment.objects.filter(pk=experiment_id).values_list("status", flat=True).first() or "skipped"
    services.experiment_finish(experiment_id=experiment_id, run_token=run_token, status=ExperimentStatus.COMPLETED)
    return ExperimentStatus.COMPLETED
