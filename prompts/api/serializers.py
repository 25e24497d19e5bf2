"""Request and response shapes of the prompt API."""

from __future__ import annotations

from rest_framework import serializers

from prompts.models import Prompt


class PromptSerializer(serializers.Serializer):
    name = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True)
    tags = serializers.ListField(child=serializers.CharField(), read_only=True)
    template_type = serializers.ChoiceField(choices=Prompt.TemplateType.choices, read_only=True)
    text = serializers.CharField(read_only=True)
    messages = serializers.JSONField(read_only=True)
    variables = serializers.JSONField(read_only=True)
    model_endpoint = serializers.CharField(read_only=True)
    params = serializers.JSONField(read_only=True)
    requires_approval = serializers.BooleanField(read_only=True)
    version = serializers.IntegerField(read_only=True, help_text="The latest version number.")
    labels = serializers.SerializerMethodField(help_text='{"label": version}, `latest` included.')
    team = serializers.IntegerField(source="team_id", read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def get_labels(self, prompt: Prompt) -> dict[str, int]:
        labels = {"latest": prompt.version}
        labels.update({label.name: label.version for label in prompt.labels.all()})
        return labels


class PromptWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True)
    tags = serializers.ListField(child=serializers.CharField(max_length=50), required=False)
    template_type = serializers.ChoiceField(choices=Prompt.TemplateType.choices, required=False)
    text = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    messages = serializers.JSONField(required=False, help_text='[{"role": "system", "content": "..."}]')
    variables = serializers.JSONField(
        required=False,
        help_text='[{"name", "type": string|integer|number|boolean|list|object, "required", "default"}]; '
        "omitted: inferred from the template (required strings).",
    )
    model_endpoint = serializers.CharField(required=False, allow_blank=True, max_length=200)
    params = serializers.DictField(required=False)
    requires_approval = serializers.BooleanField(required=False)
    team = serializers.IntegerField(required=False, allow_null=True)
    change_note = serializers.CharField(required=False, allow_blank=True)
    labels = serializers.ListField(
        child=serializers.CharField(max_length=50), required=False, help_text="Labels to point at version 1."
    )


class PromptUpdateSerializer(PromptWriteSerializer):
    # DRF's way to drop an inherited field
    name = None  # type: ignore[assignment]
    labels = None  # type: ignore[assignment]


class VersionSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.IntegerField()
    template_type = serializers.CharField()
    text = serializers.CharField()
    messages = serializers.JSONField()
    variables = serializers.JSONField()
    model_endpoint = serializers.CharField()
    params = serializers.JSONField()
    description = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    requires_approval = serializers.BooleanField()
    author = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField(allow_null=True)
    change_note = serializers.CharField()
    label = serializers.CharField(allow_null=True, help_text="The label this version was served for, if any.")  # type: ignore[assignment]  # a field named like a Field attribute
    ab_variant = serializers.CharField(allow_null=True)


class RenderRequestSerializer(serializers.Serializer):
    variables = serializers.DictField(required=False, default=dict)
    label = serializers.CharField(required=False, max_length=50)  # type: ignore[assignment]  # a field named like a Field attribute
    version = serializers.IntegerField(required=False, min_value=1)
    stickiness_key = serializers.CharField(required=False, max_length=200, help_text="For labels with an A/B split.")


class RenderedSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.IntegerField()
    label = serializers.CharField(allow_null=True)  # type: ignore[assignment]  # a field named like a Field attribute
    template_type = serializers.CharField()
    text = serializers.CharField(allow_null=True)
    messages = serializers.JSONField(allow_null=True)
    model_endpoint = serializers.CharField()
    params = serializers.JSONField()
    ab_variant = serializers.CharField(allow_null=True)


class DiffSerializer(serializers.Serializer):
    name = serializers.CharField()
    from_version = serializers.IntegerField()
    to_version = serializers.IntegerField()
    changed_fields = serializers.ListField(child=serializers.CharField())
    unified = serializers.CharField()
    text = serializers.CharField()
    messages = serializers.JSONField()
    fields = serializers.JSONField()  # type: ignore[assignment]  # a field named like a Field attribute


class RollbackSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1)
    change_note = serializers.CharField(required=False, allow_blank=True)


class LabelSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.IntegerField()
    protected = serializers.BooleanField()
    split = serializers.JSONField(allow_null=True)
    computed = serializers.BooleanField(help_text="`latest` is computed: the newest version.")
    updated_by = serializers.CharField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)


class LabelMoveRequestSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=50)  # type: ignore[assignment]  # a field named like a Field attribute
    version = serializers.IntegerField(min_value=1)
    note = serializers.CharField(required=False, allow_blank=True, default="")
    protected = serializers.BooleanField(required=False, allow_null=True, default=None)
    split = serializers.DictField(
        child=serializers.FloatField(min_value=0),
        required=False,
        allow_null=True,
        default=None,
        help_text='Live A/B split {"<version>": weight}; null/omitted: no split.',
    )


class LabelMoveSerializer(serializers.Serializer):
    label = serializers.CharField()  # type: ignore[assignment]  # a field named like a Field attribute
    from_version = serializers.IntegerField(allow_null=True)
    to_version = serializers.IntegerField(allow_null=True)
    split = serializers.JSONField(allow_null=True)
    moved_by = serializers.SerializerMethodField()
    moved_at = serializers.DateTimeField()
    note = serializers.CharField()

    def get_moved_by(self, move) -> str | None:
        return move.moved_by.get_username() if move.moved_by else None


class LabelsResponseSerializer(serializers.Serializer):
    labels = LabelSerializer(many=True)
    moves = LabelMoveSerializer(many=True)


class ReviewActionSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["draft", "submit", "approve", "reject"])
    version = serializers.IntegerField(min_value=1)
    note = serializers.CharField(required=False, allow_blank=True, default="")


class ReviewSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    state = serializers.CharField()
    requested_by = serializers.SerializerMethodField()
    reviewed_by = serializers.SerializerMethodField()
    note = serializers.CharField()
    decision_note = serializers.CharField()
    created_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)

    def get_requested_by(self, review) -> str | None:
        return review.requested_by.get_username() if review.requested_by else None

    def get_reviewed_by(self, review) -> str | None:
        return review.reviewed_by.get_username() if review.reviewed_by else None


class PromptImportResultSerializer(serializers.Serializer):
    created = serializers.ListField(child=serializers.CharField())
    updated = serializers.ListField(child=serializers.CharField())
    unchanged = serializers.ListField(child=serializers.CharField())
