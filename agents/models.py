"""Agents: definitions, conversations and their messages, runs and the events a run emits."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from simple_history.models import HistoricalRecords

from agent_platform.accounts.models import Team


class AgentMode(models.TextChoices):
    TOOLS = "tools", "Tool-calling loop"
    PLAN = "plan", "Plan, then execute steps"


class AgentDefinition(models.Model):
    """What an agent is: its model, system prompt, tools, limits and policy. Versioned by simple-history."""

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=100, blank=True, db_index=True)
    model_endpoint = models.CharField(
        max_length=200, help_text="Name of a model endpoint (admin-managed), or mock/<anything> for the mock model."
    )
    system_prompt_name = models.CharField(
        max_length=200, blank=True, help_text="A prompt in the prompt store; rendered with the label below."
    )
    system_prompt_label = models.CharField(max_length=100, blank=True, default="production")
    system_prompt_text = models.TextField(blank=True, help_text="Inline system prompt, used without a stored prompt.")
    parameters = models.JSONField(default=dict, blank=True, help_text="Model parameters (temperature, max_tokens...).")
    tools = models.JSONField(default=list, blank=True, help_text="Names of the tools this agent may call.")
    memory = models.JSONField(
        default=dict, blank=True, help_text='Memory settings: {"max_context_tokens": int, "max_messages": int}.'
    )
    mode = models.CharField(max_length=10, choices=AgentMode.choices, default=AgentMode.TOOLS)
    max_iterations = models.PositiveIntegerField(default=10, validators=[MinValueValidator(1), MaxValueValidator(100)])
    max_total_tokens = models.PositiveIntegerField(default=100_000, validators=[MinValueValidator(1)])
    max_wall_seconds = models.PositiveIntegerField(default=300, validators=[MinValueValidator(1)])
    pii_mask = models.BooleanField(default=False, help_text="Mask personal data in text sent to the model.")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="agents"
    )
    team = models.ForeignKey(Team, on_delete=models.SET_NULL, null=True, blank=True, related_name="agents")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords(excluded_fields=["created_at", "updated_at"])

    class Meta:
        ordering = ["slug"]
        indexes = [models.Index(fields=["category", "slug"])]

    def __str__(self) -> str:
        return self.slug


class Conversation(models.Model):
    """A chat session with an agent; its messages are the agent's short-term memory."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(AgentDefinition, on_delete=models.CASCADE, related_name="conversations")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["user", "agent", "-updated_at"])]

    def __str__(self) -> str:
        return f"{self.agent_id}:{self.id}"


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system"
        USER = "user"
        ASSISTANT = "assistant"
        TOOL = "tool"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    tool_calls = models.JSONField(default=list, blank=True)
    tool_call_id = models.CharField(max_length=100, blank=True)
    name = models.CharField(max_length=100, blank=True)
    run = models.ForeignKey("Run", on_delete=models.SET_NULL, null=True, blank=True, related_name="messages")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"

    def as_llm_message(self) -> dict:
        message: dict = {"role": self.role, "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        if self.tool_call_id:
            message["tool_call_id"] = self.tool_call_id
        if self.name:
            message["name"] = self.name
        return message


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class Run(models.Model):
    """One execution of an agent on one input."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(AgentDefinition, on_delete=models.CASCADE, related_name="runs")
    conversation = models.ForeignKey(
        Conversation, on_delete=models.SET_NULL, null=True, blank=True, related_name="runs"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    api_key_id = models.BigIntegerField(null=True, blank=True)
    input = models.TextField()
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    output = models.TextField(blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    llm_calls = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, null=True, blank=True)
    trace_id = models.CharField(max_length=32, blank=True, db_index=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    # The dispatch outbox: when the run's task was last handed to the broker (set in the transaction that queues
    # the run, cleared when the send fails). A queued run whose send failed or is older than the relay's window is
    # sent again by the relay (agents.services.runs_dispatch_stale).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    prompt_name = models.CharField(max_length=200, blank=True)
    prompt_version = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"]),
            models.Index(fields=["status", "dispatched_at"], name="agents_run_dispatch_outbox"),
        ]

    def __str__(self) -> str:
        return f"run {self.id} ({self.status})"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def duration_ms(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds() * 1000
        return None


class RunEvent(models.Model):
    """An event a run emitted, by sequence number, so a client that missed some can fetch them."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=20)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="agents_runevent_run_seq_unique")]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.seq} {self.type}"

    def as_dict(self) -> dict:
        return {"run_id": str(self.run_id), "seq": self.seq, "type": self.type, "data": self.data}
