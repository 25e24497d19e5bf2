"""Prices, cost records, daily usage rollups, budgets and budget alerts.

Money is `Decimal` everywhere (`DecimalField`), never float. Prices are per million tokens.
Ids of users, API keys, teams, agents, runs, experiments, traces and spans are plain values: `costs` is a sink
and holds no ForeignKeys to the apps that produce the calls.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TypedDict

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from simple_history.models import HistoricalRecords


class _Money(TypedDict):
    """How an amount of money is stored (typed, so that `**MONEY` type-checks)."""

    max_digits: int
    decimal_places: int


MONEY: _Money = {"max_digits": 20, "decimal_places": 10}
WILDCARDS = set("*?[")


class Price(models.Model):
    """A price for a provider's model, effective from a moment on.

    `model` is an exact model name (`gpt-4o`, `openai/gpt-4o`) or a glob pattern in `fnmatch` syntax
    (`gpt-4o-*`, `mock/*`, `claude-3-5-sonnet-202?????`): `*` any run of characters, `?` one character, `[abc]`
    one of a set. An empty provider matches every provider. Matching a call: the row must be effective
    (`effective_from` ≤ call time); an exact name beats any pattern; a provider-specific row beats an any-provider
    row; among patterns the most specific (most literal characters) wins; then the latest `effective_from`.

    Cached input tokens are charged at `cached_input_per_million` (input price when empty), cache writes at
    `cache_write_per_million` (input price when empty), reasoning tokens at `reasoning_per_million` (output price
    when empty); `per_request` is added once per billed call. A failed attempt is billed by the tokens the vendor
    reported, and `per_request` only when `bills_failed_requests` says the vendor charges failed requests.
    """

    class Source(models.TextChoices):
        MANUAL = "manual", "manual (edited by hand; never overwritten by imports)"
        LITELLM = "litellm", "litellm bundled cost map"

    provider = models.CharField(max_length=64, blank=True, help_text="Empty = any provider.")
    model = models.CharField(max_length=200, help_text="Exact model name or fnmatch glob (e.g. gpt-4o-*).")
    input_per_million = models.DecimalField(**MONEY, default=Decimal(0))
    output_per_million = models.DecimalField(**MONEY, default=Decimal(0))
    cached_input_per_million = models.DecimalField(**MONEY, null=True, blank=True)
    cache_write_per_million = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="Cache-write (cache creation) input tokens; empty = input price."
    )
    reasoning_per_million = models.DecimalField(**MONEY, null=True, blank=True)
    per_request = models.DecimalField(**MONEY, default=Decimal(0))
    bills_failed_requests = models.BooleanField(
        default=False, help_text="The vendor charges the per-request price for failed requests too."
    )
    currency = models.CharField(max_length=3, default="USD")
    effective_from = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.MANUAL)
    notes = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["provider", "model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model", "effective_from", "source"], name="costs_price_unique_version"
            )
        ]
        indexes = [models.Index(fields=["provider", "model"])]

    def __str__(self) -> str:
        return f"{self.provider or '*'}:{self.model} from {self.effective_from:%Y-%m-%d}"

    @property
    def is_pattern(self) -> bool:
        return any(ch in WILDCARDS for ch in self.model)

    def clean(self) -> None:
        for name in (
            "input_per_million",
            "output_per_million",
            "cached_input_per_million",
            "cache_write_per_million",
            "reasoning_per_million",
        ):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValidationError({name: "A price cannot be negative."})
        if self.per_request is not None and self.per_request < 0:
            raise ValidationError({"per_request": "A price cannot be negative."})


class CostRecord(models.Model):
    """One LLM call attempt that reached the vendor (success or failure), priced with the row effective at call time.

    A failed attempt keeps its `error_code` (status "error") and costs what the vendor bills for it: its reported
    tokens, plus the per-request price only when the price row bills failed requests. `cost` is the sum of the
    per-kind costs (input, output, cached read, cache write, reasoning) and the per-request price.

    In a Celery worker an attempt is recorded before its request is sent, with status "started", and completed
    when the call ends: a "started" record that stays so is a request a killed worker sent (usage unknown).
    """

    STARTED = "started"

    attempt_id = models.CharField(max_length=64, unique=True)
    call_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now, help_text="When the call started (the pricing time).")
    trace_id = models.CharField(max_length=32, blank=True)
    span_id = models.CharField(max_length=16, blank=True)
    run_id = models.CharField(max_length=64, blank=True)
    agent_id = models.BigIntegerField(null=True, blank=True)
    agent_slug = models.CharField(max_length=100, blank=True)
    user_id = models.BigIntegerField(null=True, blank=True)
    api_key_id = models.BigIntegerField(null=True, blank=True)
    team_id = models.BigIntegerField(null=True, blank=True)
    experiment_id = models.BigIntegerField(null=True, blank=True)
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=200)
    endpoint = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, default="ok")
    error_code = models.CharField(max_length=64, blank=True)
    input_tokens = models.PositiveIntegerField(default=0, help_text="All input tokens (cached and cache writes too).")
    output_tokens = models.PositiveIntegerField(default=0, help_text="All output tokens (reasoning ones too).")
    cached_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.FloatField(default=0)
    price = models.ForeignKey(Price, on_delete=models.SET_NULL, null=True, blank=True, related_name="cost_records")
    cost = models.DecimalField(**MONEY, default=Decimal(0))
    input_cost = models.DecimalField(**MONEY, default=Decimal(0), help_text="Plain input tokens.")
    output_cost = models.DecimalField(**MONEY, default=Decimal(0), help_text="Plain output tokens.")
    cached_read_cost = models.DecimalField(**MONEY, default=Decimal(0))
    cache_write_cost = models.DecimalField(**MONEY, default=Decimal(0))
    reasoning_cost = models.DecimalField(**MONEY, default=Decimal(0))
    request_cost = models.DecimalField(**MONEY, default=Decimal(0), help_text="The per-request price, when billed.")
    currency = models.CharField(max_length=3, default="USD")
    unpriced = models.BooleanField(default=False, help_text="No price matched the model: cost is 0 until priced.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["created_at"]),
            models.Index(fields=["model", "created_at"]),
            models.Index(fields=["user_id", "created_at"]),
            models.Index(fields=["agent_id", "created_at"]),
            models.Index(fields=["api_key_id", "created_at"]),
            models.Index(fields=["unpriced", "created_at"]),
            models.Index(fields=["trace_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.model} {self.cost} {self.currency} @ {self.created_at:%Y-%m-%d %H:%M}"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class UsageDaily(models.Model):
    """Cost records summed per UTC day and (provider, model, agent, user, API key, team); rebuilt per day."""

    day = models.DateField()
    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=200)
    agent_id = models.BigIntegerField(null=True)
    user_id = models.BigIntegerField(null=True)
    api_key_id = models.BigIntegerField(null=True)
    team_id = models.BigIntegerField(null=True)
    calls = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    unpriced_calls = models.PositiveIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cached_tokens = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(**MONEY, default=Decimal(0))

    class Meta:
        indexes = [models.Index(fields=["day", "model"]), models.Index(fields=["day", "user_id"])]

    def __str__(self) -> str:
        return f"{self.day} {self.model}"


class UsageRollupDay(models.Model):
    """Marks a UTC day whose rollup rows are complete (reports read rollups only for such days)."""

    day = models.DateField(unique=True)
    built_at = models.DateTimeField(default=timezone.now)
    records = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return str(self.day)


def default_thresholds() -> list[int]:
    return [80, 100]


class Budget(models.Model):
    """A spending limit for a user, an API key, an agent or a team, per day, per month or in total.

    A hard budget refuses a call (`BUDGET_EXCEEDED`) when its spend plus reservations plus the call's estimate
    would pass the limit; a soft budget only alerts. `thresholds` are percentages of the limit at which an alert is
    recorded and sent (once per threshold per period).
    """

    class Scope(models.TextChoices):
        USER = "user"
        API_KEY = "api_key", "API key"
        AGENT = "agent"
        TEAM = "team"

    class Period(models.TextChoices):
        DAY = "day"
        MONTH = "month"
        TOTAL = "total"

    class Enforcement(models.TextChoices):
        SOFT = "soft", "soft (alert only)"
        HARD = "hard", "hard (refuse calls)"

    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=16, choices=Scope.choices)
    scope_id = models.BigIntegerField(help_text="Id of the user, API key, agent or team.")
    period = models.CharField(max_length=8, choices=Period.choices, default=Period.MONTH)
    limit = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, default="USD")
    enforcement = models.CharField(max_length=8, choices=Enforcement.choices, default=Enforcement.SOFT)
    thresholds = models.JSONField(default=default_thresholds, blank=True, help_text="Percentages, e.g. [80, 100].")
    period_start = models.DateTimeField(default=timezone.now)
    spent = models.DecimalField(**MONEY, default=Decimal(0))
    reserved = models.DecimalField(**MONEY, default=Decimal(0))
    alert_emails = models.TextField(blank=True, help_text="Comma-separated addresses.")
    webhook_url = models.URLField(blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords(excluded_fields=["spent", "reserved", "updated_at", "period_start"])

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["scope", "scope_id"])]
        constraints = [models.CheckConstraint(condition=models.Q(limit__gte=0), name="costs_budget_limit_gte_0")]

    def __str__(self) -> str:
        return f"{self.name} ({self.scope} {self.scope_id}, {self.period}, {self.limit} {self.currency})"

    @property
    def is_hard(self) -> bool:
        return self.enforcement == self.Enforcement.HARD

    @property
    def used(self) -> Decimal:
        return self.spent + self.reserved

    @property
    def percent_used(self) -> float:
        return float(self.used / self.limit * 100) if self.limit else 100.0

    def clean(self) -> None:
        if not isinstance(self.thresholds, list) or not all(
            isinstance(t, int | float) and 0 < t <= 1000 for t in self.thresholds
        ):
            raise ValidationError({"thresholds": "A list of percentages between 0 and 1000, e.g. [80, 100]."})


class BudgetReservation(models.Model):
    """The estimate held on a hard budget for one call attempt until the attempt is settled or released."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="reservations")
    attempt_id = models.CharField(max_length=64)
    amount = models.DecimalField(**MONEY)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["budget", "attempt_id"], name="costs_reservation_unique_attempt")
        ]
        indexes = [models.Index(fields=["attempt_id"]), models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"{self.attempt_id}: {self.amount}"


class BudgetAlert(models.Model):
    """A threshold crossed by a budget in one period; recorded once, then sent by e-mail and webhook."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts")
    period_start = models.DateTimeField()
    threshold = models.PositiveIntegerField()
    spent = models.DecimalField(**MONEY)
    limit = models.DecimalField(**MONEY)
    created_at = models.DateTimeField(default=timezone.now)
    email_sent = models.BooleanField(default=False)
    webhook_status = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "period_start", "threshold"], name="costs_alert_once_per_threshold"
            )
        ]

    def __str__(self) -> str:
        return f"{self.budget.name}: {self.threshold}%"
