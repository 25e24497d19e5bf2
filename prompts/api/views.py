"""Prompts and their versions: list, create, read, update, delete, render, diff, roll back."""

from __future__ import annotations

from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from agent_platform.api.errors import PlatformError
from agent_platform.api.pagination import PagePagination
from prompts import selectors, services
from prompts.api.common import LABEL_PARAM, TAG, VERSION_PARAM, WRITE_RULE, int_param, prompt_body, team_for
from prompts.api.serializers import (
    DiffSerializer,
    PromptSerializer,
    PromptUpdateSerializer,
    PromptWriteSerializer,
    RenderedSerializer,
    RenderRequestSerializer,
    RollbackSerializer,
    VersionSerializer,
)


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
        data["team"] = team_for(data.pop("team", None))
        data.setdefault("change_note", "Created")
        prompt = services.prompt_create(user=request.user, **data)
        return Response(prompt_body(prompt), status=status.HTTP_201_CREATED)


class PromptDetailView(APIView):
    @extend_schema(tags=TAG, parameters=[LABEL_PARAM, VERSION_PARAM], responses=VersionSerializer)
    def get(self, request, name: str):
        version = selectors.get_prompt(
            name=name,
            label=request.query_params.get("label") or None,
            version=int_param(request, "version"),
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
            data["team"] = team_for(data["team"])
        note = data.pop("change_note", "")
        prompt = services.prompt_update(name=name, user=request.user, change_note=note, **data)
        return Response(prompt_body(prompt))

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
        v1, v2 = int_param(request, "from"), int_param(request, "to")
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
        return Response(prompt_body(prompt), status=status.HTTP_201_CREATED)
