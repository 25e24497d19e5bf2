"""Admin for the prompt store: where prompt engineers work.

Every write goes through `prompts.services` (the form validates with the same code the API uses). Extra pages
on a prompt: versions (history with a diff between any two), rollback and label moves (each with a confirmation
page), a render preview with sample variables, and the review workflow buttons (submit, approve, reject).
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from agent_platform.api.errors import PlatformError
from prompts import selectors, services, validation
from prompts.models import LabelMove, Prompt, PromptReview

CONTENT_FORM_FIELDS = [
    "description",
    "tags",
    "template_type",
    "text",
    "messages",
    "variables",
    "model_endpoint",
    "params",
    "requires_approval",
]


def _form_field_of(error: PlatformError, fields: list[str]) -> str | None:
    raw = str(error.details.get("field") or "")
    top = raw.split("[", 1)[0].split(".", 1)[0]
    if top in fields:
        return top
    if error.code == "PROMPT_TEMPLATE_INVALID":
        return "messages" if "message_index" in error.details else "text"
    if error.code == "PROMPT_VARIABLE_MISSING":
        return "variables"
    return None


class PromptAdminForm(forms.ModelForm):
    change_note = forms.CharField(
        required=False, widget=forms.TextInput(attrs={"size": 80}), help_text="What changed in this version."
    )

    class Meta:
        model = Prompt
        fields = ["name", *CONTENT_FORM_FIELDS, "team"]
        widgets = {
            "text": forms.Textarea(attrs={"rows": 14, "cols": 100, "style": "font-family: monospace"}),
            "messages": forms.Textarea(attrs={"rows": 10, "cols": 100, "style": "font-family: monospace"}),
            "variables": forms.Textarea(attrs={"rows": 6, "cols": 100, "style": "font-family: monospace"}),
        }

    def clean(self):
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            if not self.instance.pk:
                validation.validate_name(data.get("name"))
            validation.validate_content(
                template_type=data.get("template_type") or "text",
                text=data.get("text") or "",
                messages=data.get("messages") or [],
                variables=data.get("variables") or [],
                variables_given=bool(data.get("variables")),
            )
        except PlatformError as error:
            field = _form_field_of(error, list(self.fields))
            self.add_error(field if field in self.fields else None, f"{error.code}: {error.message}")
        return data


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    form = PromptAdminForm
    list_display = ["name", "template_type", "latest_version", "label_list", "requires_approval", "updated_at"]
    list_filter = ["template_type", "requires_approval", "team"]
    search_fields = ["name", "description"]
    change_form_template = "admin/prompts/prompt/change_form.html"

    # --- list ---------------------------------------------------------------------------------------------------

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("labels")

    @admin.display(description="latest", ordering="version")
    def latest_version(self, obj: Prompt) -> str:
        return f"v{obj.version}"

    @admin.display(description="labels")
    def label_list(self, obj: Prompt) -> str:
        labels = sorted(obj.labels.all(), key=lambda label: label.name)
        if not labels:
            return "–"
        return format_html_join(
            " ",
            '<span style="white-space:nowrap">{}{} → v{}</span>',
            ((label.name, " 🔒" if label.protected else "", label.version) for label in labels),
        )

    # --- form ------------------------------------------------------------------------------------------------------

    def get_fields(self, request, obj=None):
        fields = ["name", *CONTENT_FORM_FIELDS, "team", "change_note"]
        return fields if obj is None else ["name", "version", *CONTENT_FORM_FIELDS, "team", "change_note"]

    def get_readonly_fields(self, request, obj=None):
        return ["name", "version"] if obj is not None else []

    def save_model(self, request, obj, form, change):
        data = {f: form.cleaned_data.get(f) for f in CONTENT_FORM_FIELDS}
        data["tags"] = data["tags"] or []
        data["params"] = data["params"] or {}
        data["messages"] = data["messages"] or []
        note = form.cleaned_data.get("change_note") or ""
        variables = data.pop("variables") or None
        if change:
            if variables is not None:
                data["variables"] = variables
            prompt = services.prompt_update(
                name=obj.name, user=request.user, change_note=note, team=form.cleaned_data.get("team"), **data
            )
        else:
            prompt = services.prompt_create(
                name=form.cleaned_data["name"],
                user=request.user,
                change_note=note or "Created",
                variables=variables,
                team=form.cleaned_data.get("team"),
                **data,
            )
        obj.pk, obj.version = prompt.pk, prompt.version

    def save_related(self, request, form, formsets, change):
        """Nothing to save: the service wrote everything."""

    def delete_model(self, request, obj):
        services.prompt_delete(name=obj.name, user=request.user)

    def delete_queryset(self, request, queryset):
        for prompt in list(queryset):
            services.prompt_delete(name=prompt.name, user=request.user)

    # --- extra pages -------------------------------------------------------------------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/versions/", wrap(self.versions_view), name="prompts_prompt_versions"),
            path("<int:pk>/rollback/<int:version>/", wrap(self.rollback_view), name="prompts_prompt_rollback"),
            path("<int:pk>/labels/", wrap(self.label_move_view), name="prompts_prompt_labels"),
            path("<int:pk>/preview/", wrap(self.preview_view), name="prompts_prompt_preview"),
            path("<int:pk>/review/", wrap(self.review_view), name="prompts_prompt_review"),
            *super().get_urls(),
        ]

    def _prompt(self, request: HttpRequest, pk: int, *, change: bool = False) -> Prompt:
        prompt = get_object_or_404(Prompt, pk=pk)
        allowed = self.has_change_permission(request, prompt) if change else self.has_view_permission(request, prompt)
        if not allowed:
            raise PermissionDenied
        return prompt

    def _context(self, request: HttpRequest, prompt: Prompt, title: str, **extra: Any) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": prompt,
            "prompt": prompt,
            "title": title,
            "has_view_permission": True,
            **extra,
        }

    def _back(self, prompt: Prompt, page: str = "versions") -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse(f"admin:prompts_prompt_{page}", args=[prompt.pk]))

    def versions_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        prompt = self._prompt(request, pk)
        versions = selectors.list_versions(name=prompt.name)
        labels = selectors.label_list(name=prompt.name)
        by_version: dict[int, list[str]] = {}
        for label in labels:
            by_version.setdefault(label.version, []).append(label.name)
        reviews: dict[int, str] = {}
        for review in selectors.review_list(name=prompt.name).order_by("created_at", "id"):
            reviews[review.version] = review.state
        rows = [{"v": v, "labels": by_version.get(v.version, []), "review": reviews.get(v.version)} for v in versions]
        diff = None
        diff_from = request.GET.get("from")
        diff_to = request.GET.get("to")
        if diff_from and diff_to:
            try:
                diff = selectors.compare_versions(name=prompt.name, v1=int(diff_from), v2=int(diff_to))
            except (PlatformError, ValueError) as error:
                messages.error(request, str(error))
        moves = selectors.label_moves(name=prompt.name)[:50]
        return TemplateResponse(
            request,
            "admin/prompts/prompt/versions.html",
            self._context(
                request,
                prompt,
                f"Versions of {prompt.name}",
                rows=rows,
                labels=labels,
                diff=diff,
                diff_from=diff_from or (versions[1].version if len(versions) > 1 else 1),
                diff_to=diff_to or prompt.version,
                moves=moves,
                can_change=self.has_change_permission(request, prompt),
            ),
        )

    def rollback_view(self, request: HttpRequest, pk: int, version: int) -> HttpResponse:
        prompt = self._prompt(request, pk, change=True)
        try:
            diff = selectors.compare_versions(name=prompt.name, v1=prompt.version, v2=version)
        except PlatformError as error:
            messages.error(request, error.message)
            return self._back(prompt)
        if request.method == "POST":
            try:
                updated = services.prompt_rollback(
                    name=prompt.name, version=version, user=request.user, change_note=request.POST.get("note", "")
                )
            except PlatformError as error:
                messages.error(request, f"{error.code}: {error.message}")
            else:
                messages.success(request, f"Rolled back: v{updated.version} has the content of v{version}.")
            return self._back(prompt)
        return TemplateResponse(
            request,
            "admin/prompts/prompt/confirm_rollback.html",
            self._context(request, prompt, f"Roll back {prompt.name} to v{version}?", version=version, diff=diff),
        )

    def label_move_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        prompt = self._prompt(request, pk, change=True)
        data = request.POST if request.method == "POST" else request.GET
        label = (data.get("label") or "").strip()
        version_raw = data.get("version") or str(prompt.version)
        note = data.get("note", "")
        protected_raw = data.get("protected", "")
        protected = {"yes": True, "no": False}.get(protected_raw)
        context = self._context(
            request,
            prompt,
            f"Move a label of {prompt.name}",
            labels=selectors.label_list(name=prompt.name),
            versions=[v.version for v in selectors.list_versions(name=prompt.name)],
            label=label,
            version=version_raw,
            note=note,
            protected=protected_raw,
        )
        if request.method == "POST" and label:
            try:
                version = int(version_raw)
            except ValueError:
                messages.error(request, "version must be a number")
                return TemplateResponse(request, "admin/prompts/prompt/label_move.html", context)
            if request.POST.get("confirm") == "yes":
                try:
                    services.label_move(
                        name=prompt.name,
                        label=label,
                        version=version,
                        user=request.user,
                        note=note,
                        protected=protected,
                    )
                except PlatformError as error:
                    messages.error(request, f"{error.code}: {error.message}")
                    return TemplateResponse(request, "admin/prompts/prompt/label_move.html", context)
                messages.success(request, f"Label '{label}' now points at v{version}.")
                return self._back(prompt)
            current = next((x for x in context["labels"] if x.name == label), None)
            context.update(
                confirming=True,
                current=current,
                approved=selectors.version_is_approved(prompt=prompt, version=version),
                title=f"Move '{label}' of {prompt.name} to v{version}?",
            )
        return TemplateResponse(request, "admin/prompts/prompt/label_move.html", context)

    def preview_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        prompt = self._prompt(request, pk)
        data = request.POST if request.method == "POST" else request.GET
        version_raw = data.get("version") or str(prompt.version)
        sample = {v["name"]: v.get("default", f"<{v['name']}>") for v in prompt.variables}
        sample = {k: v for k, v in sample.items()}
        variables_raw = data.get("variables") or json.dumps(sample, indent=2)
        result = error = None
        if request.method == "POST":
            try:
                variables = json.loads(variables_raw)
                pv = selectors.get_prompt(name=prompt.name, version=int(version_raw))
                result = selectors.render_version(pv, variables)
            except json.JSONDecodeError as exc:
                error = f"Variables are not valid JSON: {exc}"
            except ValueError:
                error = "version must be a number"
            except PlatformError as exc:
                error = f"{exc.code}: {exc.message}"
        return TemplateResponse(
            request,
            "admin/prompts/prompt/preview.html",
            self._context(
                request,
                prompt,
                f"Preview {prompt.name}",
                versions=[v.version for v in selectors.list_versions(name=prompt.name)],
                version=version_raw,
                variables=variables_raw,
                result=result,
                error=error,
            ),
        )

    def review_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        prompt = self._prompt(request, pk, change=True)
        if request.method != "POST":
            return self._back(prompt)
        action = request.POST.get("action")
        handler = {
            "submit": services.review_submit,
            "approve": services.review_approve,
            "reject": services.review_reject,
        }.get(action or "")
        try:
            version = int(request.POST.get("version", ""))
            if handler is None:
                raise PlatformError("Unknown review action.", code="VALIDATION_ERROR", field="action")
            review = handler(name=prompt.name, version=version, user=request.user, note=request.POST.get("note", ""))
        except ValueError:
            messages.error(request, "version must be a number")
        except PlatformError as error:
            messages.error(request, f"{error.code}: {error.message}")
        else:
            messages.success(request, f"Review of v{review.version}: {review.get_state_display()}.")
        return self._back(prompt)


@admin.register(LabelMove)
class LabelMoveAdmin(admin.ModelAdmin):
    """The audit trail of label moves (read-only)."""

    list_display = ["prompt", "label", "from_version", "to_version", "moved_by", "moved_at", "note"]
    list_filter = ["label"]
    search_fields = ["prompt__name", "label"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PromptReview)
class PromptReviewAdmin(admin.ModelAdmin):
    """Reviews (read-only here; the buttons are on the prompt's Versions page)."""

    list_display = ["prompt", "version", "state", "requested_by", "reviewed_by", "created_at", "decided_at", "link"]
    list_filter = ["state"]
    search_fields = ["prompt__name"]

    @admin.display(description="")
    def link(self, obj: PromptReview) -> str:
        return format_html('<a href="{}">versions</a>', reverse("admin:prompts_prompt_versions", args=[obj.prompt_id]))

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
