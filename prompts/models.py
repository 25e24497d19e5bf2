"""The prompt store: prompts with a full version history, labels that point at versions, label moves, reviews.

Versions are django-simple-history records of `Prompt`: every save (through `prompts.services`) increments
`Prompt.version` and writes one historical row carrying that number, the author (`history_user`), the time
(`history_date`) and the change note (`history_change_reason`). Nothing rewrites history: a rollback is a new save.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone
from simple_history.models import HistoricalRecords

PROMPT_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
LABEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,49}$"

prompt_name_validator = RegexValidator(
    PROMPT_NAME_PATTERN, "Use 1-100 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit."
)
label_name_validator = RegexValidator(
    LABEL_NAME_PATTERN, "Use 1-50 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit."
)


class Prompt(models.Model):
    class TemplateType(models.TextChoices):
        TEXT = "text", "Text"
        CHAT = "chat", "Chat (list of messages)"

    name = models.CharField(max_length=100, unique=True, validators=[prompt_name_validator])
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True, help_text="A list of strings.")
    template_type = models.CharField(max_length=8, choices=TemplateType.choices, default=TemplateType.TEXT)
    text = models.TextField(blank=True, help_text="The Jinja2 template of a text prompt.")
    messages = models.JSONField(
        default=list, blank=True, help_text='Chat prompts: [{"role": "system", "content": "..."}, ...]'
    )
    variables = models.JSONField(
        default=list,
        blank=True,
        help_text='[{"name": "topic", "type": "string", "required": true, "default": null, "description": ""}]',
    )
    model_endpoint = models.CharField(
        max_length=200, blank=True, help_text="Name of the LLM-layer endpoint this prompt is meant for."
    )
    params = models.JSONField(default=dict, blank=True, help_text='Default model parameters, e.g. {"temperature": 0.2}')
    requires_approval = models.BooleanField(
        default=False, help_text="Protected labels may only move to versions with an approved review."
    )
    team = models.ForeignKey("accounts.Team", on_delete=models.SET_NULL, null=True, blank=True, related_name="prompts")
    version = models.PositiveIntegerField(default=0, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords(
        excluded_fields=["created_at", "updated_at"],
        history_change_reason_field=models.TextField(null=True, blank=True),
    )
    # Read by simple-history when the next save writes a history record (its documented way to pass them).
    _change_reason: str
    _history_user: Any

    class Meta:
        ordering = ["name"]
        permissions = [
            ("move_protected_label", "Can move a protected prompt label"),
            ("review_prompt", "Can approve or reject prompt reviews"),
        ]

    def __str__(self) -> str:
        return self.name


class PromptLabel(models.Model):
    """A named pointer (`production`, `staging`, ...) at one version; optionally a traffic split between versions."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="labels")
    name = models.CharField(max_length=50, validators=[label_name_validator])
    version = models.PositiveIntegerField()
    split = models.JSONField(
        null=True,
        blank=True,
        help_text='Live A/B split: {"<version>": weight, ...}. Empty: the label serves `version` only.',
    )
    protected = models.BooleanField(default=False)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["prompt__name", "name"]
        constraints = [models.UniqueConstraint(fields=["prompt", "name"], name="prompts_label_unique_per_prompt")]

    def __str__(self) -> str:
        return f"{self.prompt.name}@{self.name} → v{self.version}"


class LabelMove(models.Model):
    """Every label change (create, move, split change, delete), with who and when: the point-in-time record."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="label_moves")
    label = models.CharField(max_length=50)
    from_version = models.PositiveIntegerField(null=True, blank=True)
    to_version = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: the label was removed.")
    split = models.JSONField(null=True, blank=True)
    moved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    moved_at = models.DateTimeField(default=timezone.now)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-moved_at", "-id"]
        indexes = [models.Index(fields=["prompt", "label", "moved_at"], name="prompts_labelmove_pit")]

    def __str__(self) -> str:
        return f"{self.label}: v{self.from_version} → v{self.to_version}"


class PromptReview(models.Model):
    """An approval request for one version: draft → in_review → approved | rejected."""

    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        IN_REVIEW = "in_review", "In review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="reviews")
    version = models.PositiveIntegerField()
    state = models.CharField(max_length=12, choices=State.choices, default=State.DRAFT)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    note = models.TextField(blank=True)
    decision_note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["prompt", "version", "state"], name="prompts_review_lookup")]

    def __str__(self) -> str:
        return f"{self.prompt.name} v{self.version}: {self.state}"
