"""Datasets, experiments, variants, results and human scores.

Results are one row per (variant, item): the row is created pending when the experiment starts, claimed by a
runner with a conditional update, and finished once. A resumed run only executes rows that are not finished, so
no item is executed (or billed) twice once its result is stored.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q


class Dataset(models.Model):
    """A named, versioned collection of items. A new version is a copy (`dataset_new_version`)."""

    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField(default=1)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="datasets"
    )
    team = models.ForeignKey("accounts.Team", on_delete=models.SET_NULL, null=True, blank=True, related_name="datasets")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name", "version"], name="experiments_dataset_owner_name_version")
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class DatasetItem(models.Model):
    """One test case: input variables (for the variant's prompt) and/or chat messages, an optional expected
    output, free metadata, and where it came from (a trace span) if it was taken from live traffic."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()
    input = models.JSONField(default=dict, blank=True, help_text="Template variables for the variant's prompt.")
    messages = models.JSONField(null=True, blank=True, help_text="Chat messages appended after the prompt.")
    expected = models.JSONField(null=True, blank=True, help_text="Expected output (usually a string).")
    metadata = models.JSONField(default=dict, blank=True)
    source_trace_id = models.CharField(max_length=32, blank=True)
    source_span_id = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset", "position"]
        constraints = [models.UniqueConstraint(fields=["dataset", "position"], name="experiments_item_position")]

    def __str__(self) -> str:
        return f"{self.dataset} #{self.position}"


class ExperimentStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"
    STOPPED_BUDGET = "stopped_budget", "Stopped: budget exceeded"


ACTIVE_STATUSES = (ExperimentStatus.QUEUED, ExperimentStatus.RUNNING)


class Experiment(models.Model):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="experiments")
    status = models.CharField(max_length=20, choices=ExperimentStatus.choices, default=ExperimentStatus.DRAFT)
    concurrency = models.PositiveIntegerField(
        default=8,
        validators=[MinValueValidator(1), MaxValueValidator(256)],
        help_text="At most this many item executions of this experiment are in flight at once.",
    )
    evaluators = models.JSONField(
        default=list, blank=True, help_text='List of {"type": ..., "name": ..., options}; see the evaluator registry.'
    )
    baseline = models.ForeignKey(
        "Variant", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", help_text="Compared against."
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="experiments"
    )
    team = models.ForeignKey(
        "accounts.Team", on_delete=models.SET_NULL, null=True, blank=True, related_name="experiments"
    )
    run_token = models.CharField(max_length=32, blank=True, editable=False)
    heartbeat_at = models.DateTimeField(null=True, blank=True, editable=False)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class Variant(models.Model):
    """One arm of an experiment: a prompt (name + version or label) × a model endpoint × parameters."""

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="variants")
    name = models.CharField(max_length=64)
    position = models.PositiveIntegerField(default=0)
    prompt_name = models.CharField(max_length=200, blank=True, help_text="Prompt store name; empty: messages only.")
    prompt_version = models.PositiveIntegerField(null=True, blank=True)
    prompt_label = models.CharField(max_length=64, blank=True)
    endpoint = models.CharField(max_length=200, help_text="Model endpoint name (or mock/<anything>).")
    params = models.JSONField(default=dict, blank=True, help_text="Call parameters: temperature, max_tokens, ...")

    class Meta:
        ordering = ["experiment", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["experiment", "name"], name="experiments_variant_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def prompt_ref(self) -> str:
        if not self.prompt_name:
            return "(item messages)"
        if self.prompt_version:
            return f"{self.prompt_name}@v{self.prompt_version}"
        return f"{self.prompt_name}@{self.prompt_label or 'production'}"


class ResultStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


FINISHED_RESULT_STATUSES = (ResultStatus.COMPLETED, ResultStatus.FAILED)


class ExperimentResult(models.Model):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="results")
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="results")
    item = models.ForeignKey(DatasetItem, on_delete=models.CASCADE, related_name="results")
    status = models.CharField(max_length=16, choices=ResultStatus.choices, default=ResultStatus.PENDING)
    output = models.TextField(blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=20, decimal_places=10, null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    scores = models.JSONField(default=dict, blank=True)
    prompt_version = models.PositiveIntegerField(null=True, blank=True, help_text="The prompt version actually used.")
    trace_id = models.CharField(max_length=32, blank=True)
    span_id = models.CharField(max_length=16, blank=True)
    call_id = models.CharField(max_length=64, blank=True)
    claim_token = models.CharField(max_length=32, blank=True, editable=False)
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    attempts = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["item__position", "variant__position"]
        constraints = [models.UniqueConstraint(fields=["variant", "item"], name="experiments_result_variant_item")]
        indexes = [models.Index(fields=["experiment", "status"], name="experiments_result_exp_status")]

    def __str__(self) -> str:
        return f"{self.variant} × item {self.item_id}: {self.status}"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class HumanScoreKind(models.TextChoices):
    THUMBS = "thumbs", "Thumbs up/down"
    RATING = "rating", "Rating 1-5"
    LABEL = "label", "Label"


class HumanScore(models.Model):
    """A person's judgement of one experiment result or of one live trace (thumbs, 1-5, or a label)."""

    result = models.ForeignKey(
        ExperimentResult, on_delete=models.CASCADE, null=True, blank=True, related_name="human_scores"
    )
    trace_id = models.CharField(max_length=32, blank=True, db_index=True)
    span_id = models.CharField(max_length=16, blank=True)
    kind = models.CharField(max_length=10, choices=HumanScoreKind.choices)
    value = models.FloatField(null=True, blank=True, help_text="thumbs: 1 up / 0 down; rating: 1-5.")
    label = models.CharField(max_length=100, blank=True)
    comment = models.TextField(blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="human_scores"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(result__isnull=False) | ~Q(trace_id=""), name="experiments_humanscore_has_target"
            )
        ]

    def __str__(self) -> str:
        target = f"result {self.result_id}" if self.result_id else f"trace {self.trace_id}"
        return f"{self.kind} on {target}"
