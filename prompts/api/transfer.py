"""Export and import of prompts with their versions and labels (JSON or YAML)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from prompts import selectors, services
from prompts.api.common import TAG
from prompts.api.formats import TextYAMLParser, YAMLParser, YAMLRenderer
from prompts.api.serializers import PromptImportResultSerializer


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
