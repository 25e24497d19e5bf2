"""Request and response shapes of the experiments API."""

from __future__ import annotations

from rest_framework import serializers

from experiments import selectors
from experiments.models import HumanScoreKind


class DatasetItemSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    position = serializers.IntegerField(read_only=True)
    input = serializers.JSONField(required=False, help_text="Template variables (object).")
    messages = serializers.JSONField(required=False, allow_null=True, help_text="OpenAI-format chat messages.")
    expected = serializers.JSONField(required=False, allow_null=True)
    metadata = serializers.JSONField(required=False)
    source_trace_id = serializers.CharField(read_only=True)
    source_span_id = serializers.CharField(read_only=True)


class DatasetSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=100)
    version = serializers.IntegerField(read_only=True)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    item_count = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


class DatasetCreateSerializer(DatasetSerializer):
    items = serializers.ListField(
        child=serializers.JSONField(), required=False, help_text="Items to add: {input, messages, expected, metadata}."
    )


class ItemsAddSerializer(serializers.Serializer):
    items = serializers.ListField(child=serializers.JSONField(), allow_empty=False)


class ImportSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=["csv", "jsonl"], required=False)
    file = serializers.FileField(required=False, help_text="The CSV or JSONL file (multipart).")
    content = serializers.CharField(required=False, trim_whitespace=False, help_text="Or the file's text (JSON body).")

    def validate(self, attrs):
        if not attrs.get("file") and not attrs.get("content"):
            raise serializers.ValidationError({"file": "Upload a file or give its content."})
        if not attrs.get("format"):
            name = getattr(attrs.get("file"), "name", "") or ""
            suffix = name.rsplit(".", 1)[-1].lower() if "." in name else ""
            if suffix not in ("csv", "jsonl"):
                raise serializers.ValidationError({"format": "Give format (csv or jsonl)."})
            attrs["format"] = suffix
        return attrs


class ImportResultSerializer(serializers.Serializer):
    imported = serializers.IntegerField()
    item_count = serializers.IntegerField()


class FromTracesSerializer(serializers.Serializer):
    spans = serializers.ListField(
        child=serializers.JSONField(),
        allow_empty=False,
        help_text='Each {"trace_id", "span_id"} of a recorded span, or {"input", "output"} given directly.',
    )


class VersionCreateSerializer(serializers.Serializer):
    description = serializers.CharField(required=False, allow_blank=True)


class VariantSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=64)
    prompt_name = serializers.CharField(required=False, allow_blank=True, default="")
    prompt_version = serializers.IntegerField(required=False, allow_null=True, min_value=1, default=None)
    prompt_label = serializers.CharField(required=False, allow_blank=True, default="")
    endpoint = serializers.CharField(max_length=200)
    params = serializers.DictField(required=False, default=dict)


class ProgressSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    pending = serializers.IntegerField()
    running = serializers.IntegerField()
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()
    finished = serializers.IntegerField()
    percent = serializers.FloatField()


class ExperimentSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    dataset = serializers.IntegerField(source="dataset_id", help_text="Dataset id (a specific version).")
    status = serializers.CharField(read_only=True)
    concurrency = serializers.IntegerField(required=False, default=8, min_value=1, max_value=256)
    evaluators = serializers.ListField(child=serializers.DictField(), required=False, default=list)
    variants = VariantSerializer(many=True)
    baseline = serializers.CharField(required=False, allow_null=True, default=None, help_text="Variant name.")
    error_code = serializers.CharField(read_only=True)
    error_message = serializers.CharField(read_only=True)
    started_at = serializers.DateTimeField(read_only=True)
    finished_at = serializers.DateTimeField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


class ExperimentDetailSerializer(ExperimentSerializer):
    progress = ProgressSerializer(read_only=True)


class ResultSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item_id = serializers.IntegerField()
    item_position = serializers.IntegerField(source="item.position")
    variant = serializers.CharField(source="variant.name")
    status = serializers.CharField()
    output = serializers.CharField()
    latency_ms = serializers.FloatField(allow_null=True)
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=20, decimal_places=10, allow_null=True)
    error_code = serializers.CharField()
    error_message = serializers.CharField()
    scores = serializers.JSONField()
    prompt_version = serializers.IntegerField(allow_null=True)
    trace_id = serializers.CharField()
    finished_at = serializers.DateTimeField(allow_null=True)


class HumanScoreSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    result = serializers.IntegerField(source="result_id", read_only=True, allow_null=True)
    trace_id = serializers.CharField(required=False, allow_blank=True, default="", max_length=32)
    span_id = serializers.CharField(required=False, allow_blank=True, default="", max_length=16)
    kind = serializers.ChoiceField(choices=HumanScoreKind.choices)
    value = serializers.FloatField(required=False, allow_null=True, default=None)
    label = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    user = serializers.IntegerField(source="user_id", read_only=True, allow_null=True)
    created_at = serializers.DateTimeField(read_only=True)


class EvaluatorInfoSerializer(serializers.Serializer):
    type = serializers.CharField()
    description = serializers.CharField()
    options = serializers.DictField()
    uses_llm = serializers.BooleanField()


def experiment_body(experiment, *, detail: bool = False) -> dict:
    variants = list(experiment.variants.all())
    data = {
        "id": experiment.id,
        "name": experiment.name,
        "description": experiment.description,
        "dataset": experiment.dataset_id,
        "status": experiment.status,
        "concurrency": experiment.concurrency,
        "evaluators": experiment.evaluators,
        "variants": VariantSerializer(variants, many=True).data,
        "baseline": experiment.baseline.name if experiment.baseline_id else None,
        "error_code": experiment.error_code,
        "error_message": experiment.error_message,
        "started_at": experiment.started_at,
        "finished_at": experiment.finished_at,
        "created_at": experiment.created_at,
    }
    if detail:
        data["progress"] = selectors.experiment_progress(experiment=experiment)
    return data


def dataset_body(dataset) -> dict:
    body = DatasetSerializer(dataset).data
    body["item_count"] = getattr(dataset, "item_count", None)
    if body["item_count"] is None:
        body["item_count"] = dataset.items.count()
    return body
