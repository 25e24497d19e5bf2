"""Reviews of a prompt version (approval of production prompts)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from prompts import selectors, services
from prompts.api.common import TAG, VERSION_PARAM, int_param
from prompts.api.serializers import ReviewActionSerializer, ReviewSerializer


class PromptReviewsView(APIView):
    @extend_schema(tags=TAG, parameters=[VERSION_PARAM], responses=ReviewSerializer(many=True))
    def get(self, request, name: str):
        reviews = selectors.review_list(name=name, version=int_param(request, "version"), user=request.user)
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
