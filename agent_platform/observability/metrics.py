"""Product metrics on `/metrics`: what the platform does (runs, LLM calls, tokens, cost, time to first token, queue,
budgets, re-queued runs), and the scrape view with its bearer-token / network gate.

Counters are fed by `metrics_observer` on the observer hub (registered in `MetricsConfig.ready()`), so no producer
knows about Prometheus. Gauges that describe stored state (queue depth, oldest queued run, budget spend) are read at
scrape time from sources the apps register with `register_scrape_source` (agent_platform imports no app).
With PROMETHEUS_MULTIPROC_DIR set, prometheus_client keeps every process's values in that directory (web processes
and Celery workers alike) and a scrape sums them.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client.core import GaugeMetricFamily

from agent_platform.observability.hooks import LLMCallRecord, Observer, SpanKind, SpanRecord, hub

logger = logging.getLogger("agent_platform.observability")

RUN_STATUS = {"ok": "succeeded", "error": "failed", "cancelled": "cancelled"}

AGENT_RUNS = Counter("agent_platform_agent_runs", "Agent runs finished, by agent and outcome", ["agent", "status"])
AGENT_RUN_DURATION = Histogram(
    "agent_platform_agent_run_duration_seconds",
    "Wall time of finished agent runs",
    ["agent"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
LLM_CALLS = Counter(
    "agent_platform_llm_calls", "LLM call attempts, by endpoint and outcome", ["endpoint", "provider", "status"]
)
LLM_TOKENS = Counter(
    "agent_platform_llm_tokens",
    "Tokens of LLM calls by kind (input, output, cached_read, cache_write, reasoning)",
    ["endpoint", "kind"],
)
LLM_COST = Counter("agent_platform_llm_cost_usd", "Cost of billed LLM calls, priced by the price table", ["endpoint"])
LLM_TIME_TO_FIRST_TOKEN = Histogram(
    "agent_platform_llm_time_to_first_token_seconds",
    "Time to the first streamed token of LLM calls",
    ["endpoint"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
RUNS_REQUEUED = Counter("agent_platform_runs_requeued", "Runs re-queued because their worker stopped responding")

# (record attribute, kind label); a record without an attribute (an older producer) counts nothing for that kind
TOKEN_KINDS = (
    ("input_tokens", "input"),
    ("output_tokens", "output"),
    ("cached_tokens", "cached_read"),
    ("cache_write_tokens", "cache_write"),
    ("reasoning_tokens", "reasoning"),
)


def note_run_requeued(count: int = 1) -> None:
    """Called by the stale-run reaper for each run it re-queues."""
    RUNS_REQUEUED.inc(count)


class MetricsObserver(Observer):
    """Counts spans and LLM calls as they are emitted; prices billed calls in `flush()` (the pricer reads the price
    table, which the hot path must not)."""

    name = "metrics"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._unpriced: list[LLMCallRecord] = []

    def on_span(self, record: SpanRecord) -> None:
        if record.kind != SpanKind.AGENT_RUN:
            return
        agent = str(record.attributes.get("agent_slug") or record.name.removeprefix("agent:"))
        AGENT_RUNS.labels(agent=agent, status=RUN_STATUS.get(record.status, record.status)).inc()
        AGENT_RUN_DURATION.labels(agent=agent).observe(max(0.0, (record.ended_at - record.started_at).total_seconds()))

    def on_llm_call(self, record: LLMCallRecord) -> None:
        LLM_CALLS.labels(endpoint=record.endpoint, provider=record.provider, status=record.status).inc()
        for attribute, kind in TOKEN_KINDS:
            amount = getattr(record, attribute, 0) or 0
            if amount > 0:
                LLM_TOKENS.labels(endpoint=record.endpoint, kind=kind).inc(amount)
        if record.time_to_first_token_ms is not None:
            LLM_TIME_TO_FIRST_TOKEN.labels(endpoint=record.endpoint).observe(record.time_to_first_token_ms / 1000)
        if record.is_billed:
            with self._lock:
                self._unpriced.append(record)

    def flush(self) -> None:
        with self._lock:
            records, self._unpriced = self._unpriced, []
        for record in records:
            cost = hub.pricer(
                provider=record.provider,
                model=record.model,
                at=record.started_at,
                input_tokens=record.input_tokens,
                output_tokens=record.output_tokens,
                cached_tokens=record.cached_tokens,
                reasoning_tokens=record.reasoning_tokens,
                cache_write_tokens=record.cache_write_tokens,
                failed=record.status != "ok",
            )
            if cost is not None and cost > 0:
                LLM_COST.labels(endpoint=record.endpoint).inc(float(cost))


metrics_observer = MetricsObserver()


# --- gauges read at scrape time ---------------------------------------------------------------------------------
@dataclass
class ScrapeGauge:
    """One gauge an app reports at scrape time: `samples` are (labels, value)."""

    name: str
    documentation: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)


ScrapeSource = Callable[[], Iterable[ScrapeGauge]]
_scrape_sources: list[ScrapeSource] = []


def register_scrape_source(source: ScrapeSource) -> None:
    """Apps register what they report at scrape time (in their AppConfig.ready())."""
    if source not in _scrape_sources:
        _scrape_sources.append(source)


def broker_queue_length() -> int | None:
    """Messages waiting in the Celery queue on a Redis broker (every priority list kombu uses); None without one."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://")) or settings.CELERY_TASK_ALWAYS_EAGER:
        return None
    import redis

    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    names = [queue, *(f"{queue}\x06\x16{priority}" for priority in (3, 6, 9))]
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        pipe = client.pipeline()
        for name in names:
            pipe.llen(name)
        return sum(pipe.execute())
    finally:
        client.close()


def _broker_gauges() -> Iterable[ScrapeGauge]:
    length = broker_queue_length()
    if length is not None:
        yield ScrapeGauge("agent_platform_broker_queue_length", "Task messages waiting in the broker", [({}, length)])


class ScrapeCollector:
    """Reads every registered source when scraped; a failing source is logged and left out, never a failed scrape."""

    def collect(self):
        for source in (*_scrape_sources, _broker_gauges):
            try:
                gauges = list(source())
            except Exception:
                logger.exception("metrics source %s failed", getattr(source, "__name__", source))
                continue
            for gauge in gauges:
                labels = sorted({name for sample_labels, _ in gauge.samples for name in sample_labels})
                family = GaugeMetricFamily(gauge.name, gauge.documentation, labels=labels)
                for sample_labels, value in gauge.samples:
                    family.add_metric([str(sample_labels.get(name, "")) for name in labels], float(value))
                yield family


def exposition() -> bytes:
    """The whole text exposition: django_prometheus's and our counters (summed over processes in multiprocess mode)
    followed by the scrape-time gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = DEFAULT_REGISTRY
    scraped = CollectorRegistry()
    scraped.register(ScrapeCollector())
    return generate_latest(registry) + generate_latest(scraped)


# --- the scrape view and its gate -------------------------------------------------------------------------------
def _client_address(request: HttpRequest) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return None


def scrape_allowed(request: HttpRequest) -> bool:
    """Open when neither METRICS_TOKEN nor METRICS_ALLOWED_NETWORKS is set (development); otherwise a matching
    `Authorization: Bearer <METRICS_TOKEN>` or a client address inside METRICS_ALLOWED_NETWORKS lets a scrape in."""
    token = settings.METRICS_TOKEN
    networks = settings.METRICS_ALLOWED_NETWORKS
    if not token and not networks:
        return True
    if token:
        header = request.headers.get("Authorization", "")
        scheme, _, supplied = header.partition(" ")
        if scheme == "Bearer" and secrets.compare_digest(supplied.strip().encode(), token.encode()):
            return True
    address = _client_address(request)
    return address is not None and any(address in ipaddress.ip_network(n, strict=False) for n in networks)


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not scrape_allowed(request):
        response = HttpResponse("Forbidden: a metrics token or an allowed network is required.\n", status=403)
        response["Content-Type"] = "text/plain; charset=utf-8"
        return response
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
