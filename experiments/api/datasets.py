"""Datasets: list, create, read, delete, items, import, export, from traces, versions."""

from __future__ import annotations

from django.db.models import ProtectedError
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from agent_platform.api.errors import PlatformError
from agent_platform.api.pagination import PagePagination
from experiments import selectors, services
from experiments.api.serializers import (
    DatasetCreateSerializer,
    DatasetItemSerializer,
    DatasetSerializer,
    FromTracesSerializer,
    ImportResultSerializer,
    ImportSerializer,
    ItemsAddSerializer,
    VersionCreateSerializer,
    dataset_body,
)


class DatasetListView(APIView):
    pagination_class = PagePagination

    @extend_schema(
        responses=DatasetSerializer(many=True),
        parameters=[OpenApiParameter("name", str, description="Only datasets with this name (all versions).")],
    )
    def get(self, request):
        qs = selectors.datasets_visible_to(request.user)
        if request.query_params.get("name"):
            qs = qs.filter(name=request.query_params["name"])
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response([dataset_body(d) for d in page])

    @extend_schema(request=DatasetCreateSerializer, responses={201: DatasetSerializer})
    def post(self, request):
        serializer = DatasetCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        dataset = services.dataset_create(
            name=data["name"], description=data.get("description", ""), owner=request.user, items=data.get("items")
        )
        return Response(dataset_body(dataset), status=status.HTTP_201_CREATED)


class DatasetDetailView(APIView):
    @extend_schema(responses=DatasetSerializer)
    def get(self, request, dataset_id: int):
        return Response(dataset_body(selectors.dataset_get(user=request.user, dataset_id=dataset_id)))

    @extend_schema(responses={204: None})
    def delete(self, request, dataset_id: int):
        dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
        try:
            services.dataset_delete(dataset=dataset)
        except ProtectedError:
            raise PlatformError(
                "The dataset is used by an experiment; delete the experiment first.", code="CONFLICT", field="dataset"
            ) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class DatasetItemsView(APIView):
    pagination_class = PagePagination

    @extend_schema(responses=DatasetItemSerializer(many=True))
    def get(self, request, dataset_id: int):
        dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(dataset.items.order_by("position"), request, view=self)
        return paginator.get_paginated_response(DatasetItemSerializer(page, many=True).data)

    @extend_schema(request=ItemsAddSerializer, responses={201: DatasetItemSerializer(many=True)})
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
        serializer = ItemsAddSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        items = services.dataset_items_add(dataset=dataset, items=serializer.validated_data["items"])
        return Response(DatasetItemSerializer(items, many=True).data, status=status.HTTP_201_CREATED)


class DatasetImportView(APIView):
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(
        request={"multipart/form-data": ImportSerializer, "application/json": ImportSerializer},
        responses={201: ImportResultSerializer},
        description="Import a CSV or JSONL file. Atomic: any invalid row rejects the whole file with "
        "DATASET_INVALID and details.rows = [{row, field, message}] for every bad row.",
    )
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
        serializer = ImportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        content = data["file"].read() if data.get("file") else data["content"]
        imported = services.dataset_import(dataset=dataset, fmt=data["format"], content=content)
        return Response({"imported": imported, "item_count": dataset.items.count()}, status=status.HTTP_201_CREATED)


class DatasetExportView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("file_format", str, enum=["jsonl", "csv"], description="Default jsonl.")],
        responses={(200, "application/x-ndjson"): OpenApiTypes.STR, (200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request, dataset_id: int):
        dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
        fmt = request.query_params.get("file_format", "jsonl")
        body = selectors.dataset_export(dataset=dataset, fmt=fmt)
        content_type = "text/csv" if fmt == "csv" else "application/x-ndjson"
        response = HttpResponse(body, content_type=f"{content_type}; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{dataset.name}-v{dataset.version}.{fmt}"'
        return response


class DatasetFromTracesView(APIView):
    @extend_schema(request=FromTracesSerializer, responses={201: DatasetItemSerializer(many=True)})
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
        serializer = FromTracesSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        items = services.dataset_items_from_spans(
            dataset=dataset, spans=serializer.validated_data["spans"], user=request.user
        )
        return Response(DatasetItemSerializer(items, many=True).data, status=status.HTTP_201_CREATED)


class DatasetVersionView(APIView):
    @extend_schema(request=VersionCreateSerializer, responses={201: DatasetSerializer})
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
        serializer = VersionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        copy = services.dataset_new_version(dataset=dataset, description=serializer.validated_data.get("description"))
        return Response(dataset_body(copy), status=status.HTTP_201_CREATED)
