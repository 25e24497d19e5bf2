"""The observer interface: how the LLM layer and the orchestrator report what they do, without knowing who listens.

Producers (the LLM layer, the orchestrator, tools) emit records to `hub`; sinks (`traces`, `costs`) register an
`Observer` in their `AppConfig.ready()`. Dependencies point one way: producers import this module, never the sinks.

Rules for observers:
- `on_span` / `on_llm_call` run on the caller's hot path, possibly inside an event loop: they must be cheap and
  must not touch the database synchronously; buffer, and write in `flush()`.
- `before_llm_call` is the one place an observer may refuse a call, by raising a `PlatformError`
  (e.g. `BUDGET_EXCEEDED`); the async variant is awaited by async callers.
- An observer that fails is logged, never raised into the call (except the refusal above and ingestion below).
- `flush()` is called at the end of every request and at shutdown; `settle()` (flush and wait for the writes) at
  the end of every task, before the worker acknowledges it, so a worker killed later loses no record.
- `on_ingested_llm_spans` is called by the ingest service (sync, after the spans are stored), once per request
  with the whole batch: it may write to the database, and a failure fails the request (the client's retry is
  idempotent), so no cost record is lost silently.

The hub also holds one `Pricer` (the costs app registers it): `traces` asks it to price LLM spans that arrive
without a cost, without importing `costs`. With no pricer registered, such spans stay unpriced.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from agent_platform.api.errors import PlatformError
from agent_platform.observability.context import Caller

logger = logging.getLogger("agent_platform.observability")


class SpanKind:
    AGENT_RUN = "agent_run"
    LLM = "llm"
    TOOL = "tool"
    RETRIEVAL = "retrieval"
    WORKFLOW_STEP = "workflow_step"
    CUSTOM = "custom"
    CHOICES = (AGENT_RUN, LLM, TOOL, RETRIEVAL, WORKFLOW_STEP, CUSTOM)


@dataclass
class SpanRecord:
    """One finished span (not LLM calls: those arrive as `LLMCallRecord`)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str
    name: str
    started_at: datetime
    ended_at: datetime
    status: str = "ok"  # "ok" | "error" | "cancelled"
    error_code: str | None = None
    error_message: str | None = None
    input: Any = None
    output: Any = None
    attributes: dict[str, Any] = field(default_factory=dict)
    caller: Caller = field(default_factory=Caller)


@dataclass
class LLMCallEstimate:
    """What is known before an attempt: enough to reserve budget (and to record that the attempt is starting)."""

    attempt_id: str
    endpoint: str
    model: str
    provider: str
    estimated_input_tokens: int
    max_output_tokens: int
    caller: Caller = field(default_factory=Caller)
    call_id: str = ""
    trace_id: str = ""
    span_id: str = ""
    started_at: datetime | None = None


@dataclass
class LLMCallRecord:
    """One LLM call attempt (each retry and each fallback is its own record), success or failure."""

    attempt_id: str  # equals the estimate's attempt_id
    call_id: str  # shared by every attempt of one logical call
    trace_id: str
    span_id: str
    parent_span_id: str | None
    endpoint: str
    model: str
    provider: str
    started_at: datetime
    ended_at: datetime
    messages: list[dict[str, Any]]
    parameters: dict[str, Any] = field(default_factory=dict)
    output: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0  # part of input_tokens
    reasoning_tokens: int = 0  # part of output_tokens
    cache_write_tokens: int = 0  # part of input_tokens
    latency_ms: float = 0.0
    time_to_first_token_ms: float | None = None
    stream: bool = False
    status: str = "ok"  # "ok" | "error"
    error_code: str | None = None
    error_message: str | None = None
    attempt: int = 1
    is_fallback: bool = False
    cache_hit: bool = False  # served from the response cache: nothing billed
    billable: bool = True  # False for mock endpoints, cache hits and attempts that never reached the vendor
    caller: Caller = field(default_factory=Caller)

    @property
    def is_billed(self) -> bool:
        """Whether this attempt costs money (a fact of the call, not of the price table): never when served from
        the response cache; the mock provider at its demo price when it answered (so the demo shows costs);
        otherwise as the producer said (`billable`)."""
        if self.cache_hit:
            return False
        if self.provider == "mock":
            return self.status == "ok"
        return self.billable


class Pricer(Protocol):
    """Prices token usage by the price table (implemented by the costs app)."""

    def __call__(
        self,
        *,
        provider: str,
        model: str,
        at: datetime,
        input_tokens: int,
        output_tokens: int,
        cached_tokens: int,
        reasoning_tokens: int,
        cache_write_tokens: int = 0,
        failed: bool = False,
    ) -> Decimal | None:
        """The cost of one call with this usage at `at` (`failed`: an attempt that ended in an error, billed only
        what the vendor bills for it); None when no price matches."""
        ...


def no_price(**_usage: Any) -> None:
    """The pricer while none is registered: LLM spans stay unpriced."""
    return None


class Observer:
    """Base class for sinks; override what you need."""

    name = "observer"

    def before_llm_call(self, estimate: LLMCallEstimate) -> None:
        return None

    async def abefore_llm_call(self, estimate: LLMCallEstimate) -> None:
        return self.before_llm_call(estimate)

    def on_llm_call(self, record: LLMCallRecord) -> dict[str, Any] | None:
        """May return annotations for the caller, e.g. {"cost": Decimal("0.0012")}."""
        return None

    def on_span(self, record: SpanRecord) -> None:
        return None

    def on_ingested_llm_spans(self, spans: list[dict[str, Any]], *, user_id: int | None) -> None:
        """LLM spans sent by outside applications (`/api/v1/ingest/`), already stored, as rows of span column
        values (span_id, trace_id, start_time, provider, model, endpoint, status, *_tokens, cost: None when the
        sender gave none), attributed to `user_id`."""
        return None

    def flush(self) -> None:
        return None

    def settle(self) -> None:
        """Like `flush()`, and return only once what was buffered is written (a task end, before the worker
        acknowledges the task)."""
        self.flush()


class ObserverHub:
    def __init__(self) -> None:
        self._observers: list[Observer] = []
        self.pricer: Pricer = no_price  # the costs app registers the price table in its ready()
        self._lock = threading.Lock()

    @property
    def observers(self) -> tuple[Observer, ...]:
        return tuple(self._observers)

    def register(self, observer: Observer) -> None:
        with self._lock:
            if observer not in self._observers:
                self._observers = [*self._observers, observer]

    def unregister(self, observer: Observer) -> None:
        with self._lock:
            self._observers = [o for o in self._observers if o is not observer]

    def before_llm_call(self, estimate: LLMCallEstimate) -> None:
        for observer in self._observers:
            try:
                observer.before_llm_call(estimate)
            except PlatformError:
                raise
            except Exception:
                logger.exception("observer %s failed in before_llm_call", observer.name)

    async def abefore_llm_call(self, estimate: LLMCallEstimate) -> None:
        for observer in self._observers:
            try:
                await observer.abefore_llm_call(estimate)
            except PlatformError:
                raise
            except Exception:
                logger.exception("observer %s failed in abefore_llm_call", observer.name)

    def emit_llm_call(self, record: LLMCallRecord) -> dict[str, Any]:
        annotations: dict[str, Any] = {}
        for observer in self._observers:
            try:
                result = observer.on_llm_call(record)
            except Exception:
                logger.exception("observer %s failed in on_llm_call", observer.name)
                continue
            if result:
                annotations.update(result)
        return annotations

    def emit_span(self, record: SpanRecord) -> None:
        for observer in self._observers:
            try:
                observer.on_span(record)
            except Exception:
                logger.exception("observer %s failed in on_span", observer.name)

    def emit_ingested_llm_spans(self, spans: list[dict[str, Any]], *, user_id: int | None) -> None:
        """One call per ingest request (not per span). Failures propagate: see the module's rules."""
        if not spans:
            return
        for observer in self._observers:
            observer.on_ingested_llm_spans(spans, user_id=user_id)

    def set_pricer(self, pricer: Pricer | None) -> None:
        """Register the pricer (None: price nothing). A failing pricer raises into the caller: its batch fails and
        is retried rather than being stored unpriced."""
        self.pricer = pricer or no_price

    def flush(self, *, settle: bool = False) -> None:
        """Write what the observers buffered; with `settle`, wait until it is written (see `Observer.settle`)."""
        for observer in self._observers:
            try:
                if settle:
                    getattr(observer, "settle", observer.flush)()  # duck-typed observers may have no settle()
                else:
                    observer.flush()
            except Exception:
                logger.exception("observer %s failed to flush", observer.name)


hub = ObserverHub()

__all__ = ["LLMCallEstimate", "LLMCallRecord", "Observer", "Pricer", "SpanKind", "SpanRecord", "hub"]
