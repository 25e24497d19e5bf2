"""REST API of the prompt store (`/api/v1/prompts/...`). Thin: shape checks here, everything else in services."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import BaseParser, JSONParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from agent_platform.api.errors import PlatformError
from agent_platform.api.pagination import PagePagination
from prompts import selectors, services
from prompts.models import Prompt

TAG = ["prompts"]


# --- YAML in and out (export/import) -----------------------------------------------------------------------------


class YAMLRenderer(BaseRenderer):
    media_type = "application/yaml"
    format = "yaml"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Mapping[str, Any] | None = None
    ) -> bytes:
        if data is None:
            return b""
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False).encode()


class YAMLParser(BaseParser):
    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        from rest_framework.exceptions import ParseError

        try:
            return yaml.safe_load(stream.read().decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ParseError(f"YAML parse error: {exc}") from None


class TextYAMLParser(YAMLParser):
    media_type = "text/yaml"


# --- serializers --------------------------------------------------------------------------------------------------


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


# --- helpers ---------------------------------------------------------------------------------------------------


def _int_param(request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise PlatformError(f"{name} must be an integer.", code="VALIDATION_ERROR", field=name) from None
    if value < 1:
        raise PlatformError(f"{name} must be at least 1.", code="VALIDATION_ERROR", field=name)
    return value


def _team_for(request, team_id: int | None):
    if team_id is None:
        return None
    team = request.user.teams.filter(pk=team_id).first()
    if team is None and request.user.is_staff:
        from agent_platform.accounts.models import Team

        team = Team.objects.filter(pk=team_id).first()
    if team is None:
        raise PlatformError("team: no such team among yours.", code="VALIDATION_ERROR", field="team")
    return team


def _prompt_body(prompt: Prompt) -> dict[str, Any]:
    prompt = selectors.prompt_list(user=None).get(pk=prompt.pk)
    return PromptSerializer(prompt).data


WRITE_RULE = (
    "Changing a prompt (new version, metadata, team, approval setting, labels, reviews, rollback, delete) is for its "
    "owner, members of its team (a team's prompt) and staff: a shared prompt only its owner and staff may change. "
    "Others get 403 POLICY_DENIED; a prompt the caller may not read is 404 PROMPT_NOT_FOUND."
)
LABEL_PARAM = OpenApiParameter("label", str, description="Serve this label (default: production, else latest).")
VERSION_PARAM = OpenApiParameter("version", int, description="Serve this version.")


# --- views ---------------------------------------------------------------------------------------------------------


class PromptListView(APIView):
    pagination_class = PagePagination

    @extend_schema(
        tags=TAG,
        parameters=[OpenApiParameter("search", str), OpenApiParameter("tag", str)],
        responses=PromptSerializer(many=True),
    )
    def get(self, request):
        qs = selectors.prompt_list(
            user=request.user, search=request.query_params.get("search"), tag=request.query_params.get("tag")
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(PromptSerializer(page, many=True).data)

    @extend_schema(tags=TAG, request=PromptWriteSerializer, responses={201: PromptSerializer})
    def post(self, request):
        serializer = PromptWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        data["team"] = _team_for(request, data.pop("team", None))
        data.setdefault("change_note", "Created")
        prompt = services.prompt_create(user=request.user, **data)
        return Response(_prompt_body(prompt), status=status.HTTP_201_CREATED)


class PromptDetailView(APIView):
    @extend_schema(tags=TAG, parameters=[LABEL_PARAM, VERSION_PARAM], responses=VersionSerializer)
    def get(self, request, name: str):
        version = selectors.get_prompt(
            name=name,
            label=request.query_params.get("label") or None,
            version=_int_param(request, "version"),
            user=request.user,
        )
        return Response(VersionSerializer(version).data)

    @extend_schema(
        tags=TAG,
        request=PromptUpdateSerializer,
        responses=PromptSerializer,
        description=WRITE_RULE,
    )
    def patch(self, request, name: str):
        serializer = PromptUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if "team" in data:
            data["team"] = _team_for(request, data["team"])
        note = data.pop("change_note", "")
        prompt = services.prompt_update(name=name, user=request.user, change_note=note, **data)
        return Response(_prompt_body(prompt))

    @extend_schema(tags=TAG, request=PromptUpdateSerializer, responses=PromptSerializer)
    def put(self, request, name: str):
        return self.patch(request, name)

    @extend_schema(tags=TAG, responses={204: None}, description=WRITE_RULE)
    def delete(self, request, name: str):
        services.prompt_delete(name=name, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PromptVersionsView(APIView):
    pagination_class = PagePagination

    @extend_schema(tags=TAG, responses=VersionSerializer(many=True))
    def get(self, request, name: str):
        versions = selectors.list_versions(name=name, user=request.user)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(versions, request, view=self)
        return paginator.get_paginated_response(VersionSerializer(page, many=True).data)


class PromptVersionDetailView(APIView):
    @extend_schema(tags=TAG, responses=VersionSerializer)
    def get(self, request, name: str, version: int):
        return Response(VersionSerializer(selectors.get_prompt(name=name, version=version, user=request.user)).data)


class PromptAtView(APIView):
    @extend_schema(
        tags=TAG,
        parameters=[
            OpenApiParameter("when", OpenApiTypes.DATETIME, required=True, description="ISO 8601 time."),
            OpenApiParameter("label", str, description="Default: production (else latest)."),
        ],
        responses=VersionSerializer,
        summary="What a label served at a point in time",
    )
    def get(self, request, name: str):
        raw = request.query_params.get("when", "")
        when = parse_datetime(raw.replace(" ", "+")) if raw else None
        if when is None or when.tzinfo is None:
            raise PlatformError(
                "when must be an ISO 8601 date-time with a time zone.", code="VALIDATION_ERROR", field="when"
            )
        version = selectors.get_prompt_at(
            name=name, label=request.query_params.get("label") or None, when=when, user=request.user
        )
        return Response(VersionSerializer(version).data)


class PromptRenderView(APIView):
    @extend_schema(tags=TAG, request=RenderRequestSerializer, responses=RenderedSerializer)
    def post(self, request, name: str):
        serializer = RenderRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        rendered = selectors.render_prompt(
            name,
            data.get("variables") or {},
            label=data.get("label"),
            version=data.get("version"),
            stickiness_key=data.get("stickiness_key"),
            user=request.user,
        )
        return Response(RenderedSerializer(rendered).data)


class PromptDiffView(APIView):
    @extend_schema(
        tags=TAG,
        parameters=[
            OpenApiParameter("from", int, required=True, description="Older version."),
            OpenApiParameter("to", int, required=True, description="Newer version."),
        ],
        responses=DiffSerializer,
    )
    def get(self, request, name: str):
        v1, v2 = _int_param(request, "from"), _int_param(request, "to")
        if v1 is None or v2 is None:
            field = "from" if v1 is None else "to"
            raise PlatformError(f"{field} is required.", code="VALIDATION_ERROR", field=field)
        return Response(DiffSerializer(selectors.compare_versions(name=name, v1=v1, v2=v2, user=request.user)).data)


class PromptRollbackView(APIView):
    @extend_schema(tags=TAG, request=RollbackSerializer, responses={201: PromptSerializer})
    def post(self, request, name: str):
        serializer = RollbackSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        prompt = services.prompt_rollback(
            name=name,
            version=serializer.validated_data["version"],
            user=request.user,
            change_note=serializer.validated_data.get("change_note", ""),
        )
        return Response(_prompt_body(prompt), status=status.HTTP_201_CREATED)


class PromptLabelsView(APIView):
    def _body(self, request, name: str) -> dict[str, Any]:
        labels = selectors.label_list(name=name, user=request.user)
        moves = selectors.label_moves(name=name, user=request.user)[:100]
        return {
            "labels": LabelSerializer(labels, many=True).data,
            "moves": LabelMoveSerializer(moves, many=True).data,
        }

    @extend_schema(tags=TAG, responses=LabelsResponseSerializer)
    def get(self, request, name: str):
        return Response(self._body(request, name))

    @extend_schema(
        tags=TAG,
        request=LabelMoveRequestSerializer,
        responses=LabelsResponseSerializer,
        description="Move (or create) a label (needs the right to change the prompt: its owner, its team, staff; "
        "else POLICY_DENIED, 403). Protected labels need `prompts.move_protected_label` "
        "(LABEL_PROTECTED, 403) and, where the prompt requires approval, an approved review of the target "
        "version (APPROVAL_REQUIRED, 409).",
    )
    def post(self, request, name: str):
        serializer = LabelMoveRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        services.label_move(
            name=name,
            label=data["label"],
            version=data["version"],
            user=request.user,
            note=data["note"],
            protected=data["protected"],
            split=data["split"],
        )
        return Response(self._body(request, name))


class PromptLabelDetailView(APIView):
    @extend_schema(tags=TAG, responses=LabelMoveSerializer(many=True), summary="A label's move history")
    def get(self, request, name: str, label: str):
        return Response(
            LabelMoveSerializer(selectors.label_moves(name=name, label=label, user=request.user), many=True).data
        )

    @extend_schema(tags=TAG, responses={204: None})
    def delete(self, request, name: str, label: str):
        services.label_delete(name=name, label=label, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PromptReviewsView(APIView):
    @extend_schema(tags=TAG, parameters=[VERSION_PARAM], responses=ReviewSerializer(many=True))
    def get(self, request, name: str):
        reviews = selectors.review_list(name=name, version=_int_param(request, "version"), user=request.user)
        return Response(ReviewSerializer(reviews, many=True).data)

    @extend_schema(
        tags=TAG,
        request=ReviewActionSerializer,
        responses={200: ReviewSerializer},
        description="draft → submit (in_review) → approve | reject. Approving and rejecting need "
        "`prompts.review_prompt`.",
    )
    def post(self, request, name: str):
        serializer = ReviewActionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        action = {
            "draft": services.review_create,
            "submit": services.review_submit,
            "approve": services.review_approve,
            "reject": services.review_reject,
        }[data["action"]]
        review = action(name=name, version=data["version"], user=request.user, note=data["note"])
        return Response(ReviewSerializer(review).data)


class PromptExportView(APIView):
    renderer_classes = [JSONRenderer, YAMLRenderer]

    @extend_schema(
        tags=TAG,
        parameters=[
            OpenApiParameter("format", str, enum=["json", "yaml"], description="Default json."),
            OpenApiParameter("name", str, many=True, description="Only these prompts (repeatable)."),
        ],
        responses=inline_serializer("PromptExport", {"prompts": serializers.JSONField()}),
        summary="Export prompts (current versions) as JSON or YAML",
    )
    def get(self, request):
        qs = selectors.prompt_list(user=request.user)
        names = request.query_params.getlist("name")
        if names:
            qs = qs.filter(name__in=names)
        body = {"prompts": [services.prompt_export_data(p) for p in qs]}
        response = Response(body)
        suffix = (
            "yaml"
            if getattr(request, "accepted_renderer", None) and request.accepted_renderer.format == "yaml"
            else "json"
        )
        response["Content-Disposition"] = f'attachment; filename="prompts.{suffix}"'
        return response


class PromptImportView(APIView):
    parser_classes = [JSONParser, YAMLParser, TextYAMLParser]

    @extend_schema(
        tags=TAG,
        request=inline_serializer("PromptImport", {"prompts": serializers.JSONField()}),
        responses=PromptImportResultSerializer,
        summary="Import prompts from an export document (JSON or YAML body); all or nothing",
    )
    def post(self, request):
        result = services.prompts_import(data=request.data, user=request.user)
        return Response(PromptImportResultSerializer(result).data)
