"""Traces and spans, in the OpenTelemetry shape.

A `Trace` is the summary of one request or run (totals aggregated from its spans); `Span` rows reference their
trace by `trace_id` (a plain indexed column, not a ForeignKey: spans arrive in batches, possibly before the trace
row, from several processes and from outside applications). Ids of users, agents and runs are plain values.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TypedDict

from django.db import models

from agent_platform.observability.hooks import SpanKind


class _Money(TypedDict):
    """How an amount of money is stored (typed, so that `**MONEY` type-checks)."""

    max_digits: int
    decimal_places: int


MONEY: _Money = {"max_digits": 20, "decimal_places": 10}


class Trace(models.Model):
    class Status(models.TextChoices):
        OK = "ok"
        ERROR = "error"
        CANCELLED = "cancelled"

    trace_id = models.CharField(max_length=32, unique=True)
    name = models.CharField(max_length=200, blank=True)
    user_id = models.BigIntegerField(null=True, blank=True)
    api_key_id = models.BigIntegerField(null=True, blank=True)
    session_id = models.CharField(max_length=128, blank=True)
    tags = models.JSONField(default=list, blank=True)
    agent_id = models.BigIntegerField(null=True, blank=True)
    agent_slug = models.CharField(max_length=100, blank=True)
    run_id = models.CharField(max_length=64, blank=True)
    start_time = models.DateTimeField()
    end_time = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OK)
    span_count = models.PositiveIntegerField(default=0)
    llm_call_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(**MONEY, default=Decimal(0))
    source = models.CharField(max_length=16, default="platform", help_text="platform or ingest")

    class Meta:
        ordering = ["-start_time"]
        indexes = [
            models.Index(fields=["-start_time"], name="trace_start_idx"),
            models.Index(fields=["user_id", "-start_time"], name="trace_user_start_idx"),
            models.Index(fields=["agent_id", "-start_time"], name="trace_agent_start_idx"),
            models.Index(fields=["status", "-start_time"], name="trace_status_start_idx"),
            models.Index(fields=["-duration_ms"], name="trace_duration_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name or 'trace'} {self.trace_id}"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Span(models.Model):
    KIND_CHOICES = [(k, k.replace("_", " ")) for k in SpanKind.CHOICES]

    span_id = models.CharField(max_length=16, unique=True)
    trace_id = models.CharField(max_length=32)
    parent_span_id = models.CharField(max_length=16, null=True, blank=True)  # noqa: DJ001 - NULL marks a root span
    kind = models.CharField(max_length=16, choices=KIND_CHOICES, default=SpanKind.CUSTOM)
    name = models.CharField(max_length=200)
    start_time = models.DateTimeField()
    end_time = models.DateTimeField()
    duration_ms = models.FloatField(default=0)
    status = models.CharField(max_length=16, default="ok")
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    input = models.JSONField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    user_id = models.BigIntegerField(null=True, blank=True)
    agent_id = models.BigIntegerField(null=True, blank=True)
    run_id = models.CharField(max_length=64, blank=True)
    # LLM generation spans
    model = models.CharField(max_length=200, blank=True)
    endpoint = models.CharField(max_length=100, blank=True)
    provider = models.CharField(max_length=64, blank=True)
    prompt_name = models.CharField(max_length=200, blank=True)
    prompt_version = models.PositiveIntegerField(null=True, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(**MONEY, null=True, blank=True)
    time_to_first_token_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["start_time"]
        indexes = [
            models.Index(fields=["trace_id", "start_time"], name="span_trace_start_idx"),
            models.Index(fields=["model", "trace_id"], name="span_model_trace_idx"),
            models.Index(fields=["kind", "start_time"], name="span_kind_start_idx"),
            models.Index(fields=["start_time"], name="span_start_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.name} {self.span_id}"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens
