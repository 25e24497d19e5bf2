"""A prompt's labels: list them, move one to a version, delete one."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from prompts import selectors, services
from prompts.api.common import TAG
from prompts.api.serializers import (
    LabelMoveRequestSerializer,
    LabelMoveSerializer,
    LabelSerializer,
    LabelsResponseSerializer,
)


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
