"""Admin: create a dataset (items inline, or import a file), an experiment with its variants inline, start or cancel
it, watch its progress, open its report."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from agent_platform.api.errors import PlatformError
from experiments import selectors, services
from experiments.evaluators import build_evaluators
from experiments.models import Dataset, DatasetItem, Experiment, ExperimentResult, HumanScore, Variant


class DatasetItemInline(admin.TabularInline):
    model = DatasetItem
    extra = 1
    fields = ("position", "input", "messages", "expected", "metadata")
    ordering = ("position",)
    show_change_link = True


class DatasetForm(forms.ModelForm):
    import_file = forms.FileField(
        required=False, help_text="Optional CSV or JSONL file to append (atomic: a file with a bad row is rejected)."
    )

    class Meta:
        model = Dataset
        fields = ("name", "version", "description", "owner", "team")

    def clean_import_file(self):
        upload = self.cleaned_data.get("import_file")
        if upload and not upload.name.lower().endswith((".csv", ".jsonl")):
            raise forms.ValidationError("The file must end in .csv or .jsonl.")
        return upload


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    form = DatasetForm
    list_display = ("name", "version", "item_total", "owner", "updated_at")
    search_fields = ("name", "description")
    inlines = [DatasetItemInline]
    actions = ["new_version"]

    @admin.display(description="items")
    def item_total(self, obj):
        return obj.items.count()

    def save_model(self, request, obj, form, change):
        if not change and obj.owner_id is None:
            obj.owner = request.user
        super().save_model(request, obj, form, change)
        upload = form.cleaned_data.get("import_file")
        if upload:
            fmt = "csv" if upload.name.lower().endswith(".csv") else "jsonl"
            try:
                count = services.dataset_import(dataset=obj, fmt=fmt, content=upload.read())
                messages.success(request, f"Imported {count} items.")
            except PlatformError as exc:
                rows = "; ".join(
                    f"row {r['row']} {r['field']}: {r['message']}" for r in exc.details.get("rows", [])[:10]
                )
                messages.error(request, f"{exc.code}: {exc.message} {rows}")

    @admin.action(description="Copy as a new version")
    def new_version(self, request, queryset):
        for dataset in queryset:
            copy = services.dataset_new_version(dataset=dataset)
            messages.success(request, f"Created {copy}.")


class VariantInline(admin.TabularInline):
    model = Variant
    extra = 2
    fields = ("position", "name", "prompt_name", "prompt_version", "prompt_label", "endpoint", "params")


class ExperimentForm(forms.ModelForm):
    class Meta:
        model = Experiment
        fields = ("name", "description", "dataset", "concurrency", "evaluators", "baseline", "owner", "team")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "baseline" in self.fields:
            qs = Variant.objects.filter(experiment=self.instance) if self.instance.pk else Variant.objects.none()
            self.fields["baseline"].queryset = qs
            self.fields["baseline"].help_text = "Compared against; default: the first variant."

    def clean_evaluators(self):
        value = self.cleaned_data.get("evaluators") or []
        try:
            build_evaluators(value)
        except PlatformError as exc:
            raise forms.ValidationError(f"{exc.details.get('field', 'evaluators')}: {exc.message}") from None
        return value


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    form = ExperimentForm
    list_display = ("name", "dataset", "status", "progress", "report_link", "created_at")
    list_filter = ("status",)
    search_fields = ("name",)
    inlines = [VariantInline]
    readonly_fields = ("status", "progress", "report_link", "started_at", "finished_at", "error_code", "error_message")
    actions = ["start_experiments", "cancel_experiments"]

    @admin.display(description="progress")
    def progress(self, obj):
        if not obj.pk:
            return "—"
        p = selectors.experiment_progress(experiment=obj)
        failed = f", {p['failed']} failed" if p["failed"] else ""
        return f"{p['finished']}/{p['total']} ({p['percent']}%){failed}, {p['running']} running"

    @admin.display(description="report")
    def report_link(self, obj):
        if not obj.pk:
            return "—"
        return format_html('<a href="{}">report</a>', reverse("experiments-detail", args=[obj.pk]))

    def save_model(self, request, obj, form, change):
        if not change and obj.owner_id is None:
            obj.owner = request.user
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        services.experiment_baseline_default(experiment=form.instance)

    @admin.action(description="Start (or resume) selected experiments")
    def start_experiments(self, request, queryset):
        for experiment in queryset:
            try:
                services.experiment_start(experiment=experiment)
                messages.success(request, f"{experiment}: started.")
            except PlatformError as exc:
                messages.error(request, f"{experiment}: {exc.code}: {exc.message}")

    @admin.action(description="Cancel selected experiments")
    def cancel_experiments(self, request, queryset):
        for experiment in queryset:
            try:
                services.experiment_cancel(experiment=experiment)
                messages.success(request, f"{experiment}: cancelled.")
            except PlatformError as exc:
                messages.error(request, f"{experiment}: {exc.code}: {exc.message}")


@admin.register(ExperimentResult)
class ExperimentResultAdmin(admin.ModelAdmin):
    list_display = ("id", "experiment", "variant", "item", "status", "error_code", "latency_ms", "cost")
    list_filter = ("status", "experiment")
    list_select_related = ("experiment", "variant", "item", "item__dataset")
    search_fields = ("output", "error_code", "trace_id")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(HumanScore)
class HumanScoreAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "value", "label", "result", "trace_id", "user", "created_at")
    list_filter = ("kind",)
    search_fields = ("trace_id", "label", "comment")
    raw_id_fields = ("result",)
